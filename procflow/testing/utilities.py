"""Prefect's `prefect.testing.utilities.prefect_test_harness`, for users' own test suites.

Prefect's harness starts a temporary server and database. procflow has neither: the
harness isolates what procflow keeps in the process instead, so tests written for
Prefect (`with prefect_test_harness(): ...`, often in a session fixture) run unchanged:
inside it, `last_flow_run()` starts empty, and on leaving it the previous last run comes
back and the freed shared-memory segments kept for reuse are released.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from .. import flows
from ..runners.processes import ProcessPoolTaskRunner


@contextlib.contextmanager
def prefect_test_harness(server_startup_timeout: int | None = 30) -> Iterator[None]:
    """A block in which procflow's process-wide records start fresh (no server to start:
    `server_startup_timeout` is accepted, as Prefect's, and has no effect)."""
    previous: Any = flows.last_flow_run()
    flows.set_last_flow_run(None)
    try:
        yield
    finally:
        flows.set_last_flow_run(previous)
        ProcessPoolTaskRunner.release_segments()
