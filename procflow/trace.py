"""A flow run in Chrome's Trace Event Format, for Perfetto and chrome://tracing.

One process (the flow run), one thread per worker, one complete event ("X") per run that
started, its time moving data as a slice of its own just before it; a dependency is a flow
event pair ("s" at the end of the upstream slice, "f" bound to the start of the dependent).
Timestamps are microseconds from the flow run's start.
"""

from __future__ import annotations

from typing import Any

PID = 1


def chrome_trace(flow_run: Any) -> dict[str, Any]:
    runs = [run for run in flow_run.task_runs if run.start_time is not None]
    origin = min([flow_run.start_time, *(run.start_time - run.outside_run_seconds for run in runs)])
    workers = sorted({str(run.worker) for run in runs})
    track = {worker: index + 1 for index, worker in enumerate(workers)}

    def micros(seconds: float) -> float:
        return float(round((seconds - origin) * 1e6, 3))

    events: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": PID, "tid": 0, "args": {"name": f"flow run '{flow_run.name}'"}}]
    events += [{"name": "thread_name", "ph": "M", "pid": PID, "tid": tid, "args": {"name": f"worker {worker}"}}
               for worker, tid in track.items()]
    by_id = {}
    for run in runs:
        tid = track[str(run.worker)]
        start, end = micros(run.start_time), micros(run.end_time or run.start_time)
        by_id[run.id] = (tid, start, end)
        if run.loading_seconds > 0:
            events.append({"name": f"{run.name} (loading task code)", "cat": "loading", "ph": "X", "pid": PID,
                           "tid": tid, "ts": micros(run.start_time - run.outside_run_seconds),
                           "dur": round(run.loading_seconds * 1e6, 3)})
        if run.transfer_seconds > 0:
            events.append({"name": f"{run.name} (moving data)", "cat": "transfer", "ph": "X", "pid": PID,
                           "tid": tid, "ts": micros(run.start_time - run.transfer_seconds),
                           "dur": round(run.transfer_seconds * 1e6, 3)})
        events.append({"name": run.name, "cat": run.task_name, "ph": "X", "pid": PID, "tid": tid, "ts": start,
                       "dur": max(0.0, round(end - start, 3)),
                       "args": {"state": run.state.name, "attempts": run.attempts, "result_bytes": run.result_bytes,
                                "task": run.task_name}})
    flow_id = 0
    for run in runs:
        for upstream_id, kind in run.upstream:
            if upstream_id not in by_id:
                continue
            flow_id += 1
            up_tid, up_start, up_end = by_id[upstream_id]
            tid, start, _ = by_id[run.id]
            events.append({"name": kind, "cat": "dependency", "ph": "s", "id": flow_id, "pid": PID, "tid": up_tid,
                           "ts": max(up_start, up_end - 0.001)})
            events.append({"name": kind, "cat": "dependency", "ph": "f", "bp": "e", "id": flow_id, "pid": PID,
                           "tid": tid, "ts": start})
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"flow_run": flow_run.name, "state": repr(flow_run.state)}}
