"""Task runs that succeed or fail together: `with transaction():` (Prefect's transactions).

A nightly load extracts four partitions into staging files, then loads them. The extracts'
results persist (a rerun would take them from the cache) but only once the whole group
commits: when the load fails, each extract's rollback hook removes its staging file, newest
first, and no result is stored, so the next run extracts again instead of trusting a half
done night. The flow runs twice here: first with a load that fails, then with one that works.

    python examples/05_transactions.py [--workdir DIR]
"""

import argparse
import tempfile
from pathlib import Path

from procflow import flow, task, unmapped
from procflow.transactions import get_transaction, transaction


def nightly_load(workdir: Path):
    staging, results = workdir / "staging", workdir / "results"
    staging.mkdir(exist_ok=True)

    @task(persist_result=True, result_storage=results, result_storage_key="{parameters[day]}-part-{parameters[part]}")
    def extract(day: str, part: int) -> int:
        staged = staging / f"{day}-{part}.csv"
        rows = [f"{part},{i},{i * part}" for i in range(1000)]
        staged.write_text("\n".join(rows))
        get_transaction().set("staged", str(staged))  # for the hooks, in the flow's process
        return len(rows)

    @extract.on_rollback
    def remove_staged(txn):
        Path(txn.get("staged")).unlink()

    @task
    def load(counts: list[int], warehouse_up: bool) -> int:
        if not warehouse_up:
            raise RuntimeError("the warehouse refused the load")
        return sum(counts)

    @flow
    def nightly(day: str, warehouse_up: bool) -> int:
        with transaction():
            counts = extract.map(unmapped(day), range(4))
            return load.submit(counts, warehouse_up).result()

    return nightly, staging, results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, default=None, help="where staging files and results go")
    workdir = parser.parse_args().workdir or Path(tempfile.mkdtemp(prefix="procflow-nightly-"))
    nightly, staging, results = nightly_load(workdir)
    for attempt, warehouse_up in (("first", False), ("second", True)):
        state = nightly("2026-12-07", warehouse_up, return_state=True)
        ran = sum(run.task_name == "extract" and run.state.name == "Completed" for run in nightly.last_run.task_runs)
        outcome = f"loaded {state.result()} rows" if state.is_completed() else f"failed ({state.message})"
        print(f"{attempt} run: {outcome}; {ran} extracts ran; staging files left: {len(list(staging.iterdir()))}; "
              f"results stored: {len(list(results.glob('*')))}")


if __name__ == "__main__":
    main()
