"""Prefect's artifacts (`prefect.artifacts`): kept with the flow run's record, shown in its report.

Prefect sends artifacts to its server; here each is a small dict in `FlowRun.artifacts`,
in the order made, and `FlowRun.report_html()` draws them. Made in the flow's own process
(the flow body, a direct task call, a thread of a runner that shares the flow's context)
it is appended at once; made in a worker process (or a runner thread without the flow's
context) it travels back with the run's log lines, at level `ARTIFACT`, and the engine
puts it in place (`receive`). A progress artifact is updated by its id the same way.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any
from uuid import UUID

from .current import current_flow, current_task_run
from .runlog import current_logger

ARTIFACT = 1  # the log level artifacts travel at: below DEBUG, so no handler ever prints one
_KEY = re.compile(r"^[a-z0-9-]+$")
detached: list[dict[str, Any]] = []  # made outside any run


def create_markdown_artifact(markdown: str, key: str | None = None, description: str | None = None) -> UUID:
    return _make("markdown", str(markdown), key, description)


def create_table_artifact(table: dict[str, list[Any]] | list[dict[str, Any]] | list[list[Any]],
                          key: str | None = None, description: str | None = None) -> UUID:
    if not isinstance(table, (dict, list)):
        raise TypeError(f"create_table_artifact: table must be a dict of columns or a list of rows, "
                        f"got {type(table).__name__}")
    return _make("table", table, key, description)


def create_link_artifact(link: str, link_text: str | None = None, key: str | None = None,
                         description: str | None = None) -> UUID:
    return _make("link", str(link), key, description, link_text=link_text)


def create_image_artifact(image_url: str, key: str | None = None, description: str | None = None) -> UUID:
    return _make("image", str(image_url), key, description)


def create_progress_artifact(progress: float, key: str | None = None, description: str | None = None) -> UUID:
    return _make("progress", _percent(progress), key, description)


def update_progress_artifact(artifact_id: UUID | str, progress: float, description: str | None = None) -> UUID:
    """Prefect's update: the artifact made with that id now shows `progress`."""
    change = {"update": str(artifact_id), "data": _percent(progress)}
    if description is not None:
        change["description"] = description
    _deliver(change)
    return artifact_id if isinstance(artifact_id, UUID) else UUID(str(artifact_id))


def receive(flow_run: Any, text: str) -> None:
    """An artifact (or an update) that came back with a run's log lines."""
    _apply(flow_run.artifacts, json.loads(text))


def _make(kind: str, data: Any, key: str | None, description: str | None, **extra: Any) -> UUID:
    if key is not None and not _KEY.match(key):
        raise ValueError(f"Artifact key {key!r} must only contain lowercase letters, numbers, and dashes.")
    artifact_id = uuid.uuid4()
    run = current_task_run.get()
    artifact = {"id": str(artifact_id), "type": kind, "key": key, "description": description, "data": data,
                "task_run": run.name if run is not None else None, "created": time.time(), **extra}
    json.dumps(artifact)  # what cannot travel back from a worker fails here, where it was made
    _deliver(artifact)
    return artifact_id


def _deliver(item: dict[str, Any]) -> None:
    context = current_flow.get()
    if context is not None:
        _apply(context.flow_run.artifacts, item)
        return
    logger = current_logger.get()
    if logger is not None:
        logger.log(ARTIFACT, json.dumps(item))
        return
    _apply(detached, item)


def _apply(artifacts: list[dict[str, Any]], item: dict[str, Any]) -> None:
    target = item.get("update")
    if target is None:
        artifacts.append(item)
        return
    for artifact in artifacts:
        if artifact["id"] == target:
            artifact["data"] = item["data"]
            if "description" in item:
                artifact["description"] = item["description"]
            return


def _percent(progress: float) -> float:
    value = float(progress)
    if not 0 <= value <= 100:
        raise ValueError(f"progress must be between 0 and 100, got {progress!r}")
    return value
