"""The package type-checks (it ships py.typed, so users' editors rely on its annotations)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_finds_no_issues_in_the_package():
    done = subprocess.run([sys.executable, "-m", "mypy", "procflow"], cwd=ROOT, capture_output=True, text=True,
                          timeout=110)
    assert done.returncode == 0, done.stdout + done.stderr
