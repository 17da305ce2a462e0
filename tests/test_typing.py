"""The package type-checks (it ships py.typed, so users' editors rely on its annotations)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_finds_no_issues_in_the_package():
    done = subprocess.run([sys.executable, "-m", "mypy", "procflow"], cwd=ROOT, capture_output=True, text=True,
                          timeout=110)
    assert done.returncode == 0, done.stdout + done.stderr


USE = '''
from procflow import task


@task
def add(x: int, y: int) -> int:
    return x + y


@task
async def fetch(url: str) -> bytes:
    return b""


reveal_type(add.submit(1, 2))
reveal_type(fetch.submit("u"))
reveal_type(add.submit(1, 2, return_state=True))
reveal_type(add(1, 2))
'''


def test_submit_keeps_the_functions_result_type_for_editors(tmp_path):
    """`.submit()` of a task returning int is a TaskFuture[int]; of an `async def` task, the
    future of what the coroutine returns (Prefect's overloads, ParamSpec)."""
    (tmp_path / "use.py").write_text(USE)
    command = [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), str(tmp_path / "use.py")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    revealed = [line.split("Revealed type is ")[1] for line in done.stdout.splitlines() if "Revealed type" in line]
    assert revealed == ['"procflow.task_future.TaskFuture[int]"', '"procflow.task_future.TaskFuture[bytes]"',
                        '"procflow.states.State"', '"int"'], done.stdout
