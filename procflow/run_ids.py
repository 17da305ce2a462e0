"""Task run ids: ints unique across processes, shown to Prefect code as UUIDs.

The engine keys its graph, its ledger and every message by an int id (cheap to hash and to
pickle). Prefect code reads a run's id as a UUID (`future.task_run_id`,
`TaskRunContext.get().task_run.id`) and uses it as a key that no other run shares, also one
in another process or another flow run (a file name, a database row). So the ids count up
from a random start (52 bits: ids stay exact in the report's JavaScript), and the UUID of an
id is made from it alone, the same wherever it is asked (a worker, a Dask worker), with no
table and no message to carry it.
"""

from __future__ import annotations

import itertools
import secrets
import uuid

_IDS = itertools.count(secrets.randbits(52) + 1)  # never 0: messages use 0 for "no run"
# A UUID's high 64 bits say it is procflow's ("procfl", then version 4 and "Ow"); the low 64
# bits are the RFC 4122 variant and the id.
_HIGH = 0x70726F63666C4F77 << 64
_VARIANT = 0b10 << 62


def next_run_id() -> int:
    return next(_IDS)


def task_run_uuid(run_id: int) -> uuid.UUID:
    """The UUID Prefect code sees for task run `run_id`."""
    return uuid.UUID(int=_HIGH | _VARIANT | run_id)

