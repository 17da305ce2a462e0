"""The package type-checks under `mypy --strict` (it ships py.typed, so users' editors rely on its
annotations; pyproject.toml names the two untyped libraries it subclasses or calls)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


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


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """One mypy run over the package and a user's script (mypy's start and its reading of the
    package are most of its time: once for both tests)."""
    folder = tmp_path_factory.mktemp("typing")
    (folder / "use.py").write_text(USE)
    command = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(folder / "cache"), "procflow",
               str(folder / "use.py")]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_mypy_finds_no_issues_in_the_package(checked):
    errors = [line for line in checked.stdout.splitlines() if ": error:" in line]
    assert not errors and not checked.stderr, checked.stdout + checked.stderr
    assert "Revealed type" in checked.stdout  # it did read the script too


def test_submit_keeps_the_functions_result_type_for_editors(checked):
    """`.submit()` of a task returning int is a TaskFuture[int]; of an `async def` task, the
    future of what the coroutine returns (Prefect's overloads, ParamSpec)."""
    done = checked
    revealed = [line.split("Revealed type is ")[1] for line in done.stdout.splitlines() if "Revealed type" in line]
    assert revealed == ['"procflow.task_future.TaskFuture[int]"', '"procflow.task_future.TaskFuture[bytes]"',
                        '"procflow.state_values.State"', '"int"'], done.stdout
