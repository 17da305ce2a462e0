"""Pictures of a flow run: the dependency graph (DOT, Mermaid, JSON, SVG) and a timeline page.

Reads task-run records only (duck-typed), so it sits below `records`. A `.map()` with
more than `GROUP_ABOVE` children is drawn as one node with counts per state, so a
10 000-child map stays readable.
"""

from __future__ import annotations

import html
import json
import shutil
import subprocess
from collections import Counter
from typing import Any, Iterable

from .run_summary import GROUP_ABOVE, human_bytes, human_seconds


STATE_COLOURS = {
    "COMPLETED": "#2e9e5b",
    "FAILED": "#d64541",
    "CRASHED": "#8e44ad",
    "CANCELLED": "#7f8c8d",
    "PENDING": "#e0a800",
    "RUNNING": "#2f80ed",
}


class GraphvizMissing(RuntimeError):
    """`to_svg` needs Graphviz's `dot` program."""


class FlowRunGraph:
    """Task runs as nodes, one arrow per dependency; `wait_for` arrows are dashed."""

    def __init__(self, task_runs: Iterable[Any]) -> None:
        self.nodes, self.edges = _collapse(list(task_runs))

    def to_json(self) -> str:
        return json.dumps({"nodes": self.nodes, "edges": self.edges}, indent=1)

    def to_dot(self) -> str:
        """Top to bottom (a long pipeline would scroll sideways at LR); run time and result
        size under each name, the bytes that moved on each data arrow."""
        lines = ["digraph flow_run {", "  rankdir=TB;", '  node [shape=box, style="rounded,filled", fontcolor=white];']
        for node in self.nodes:
            label = (node["label"] + "\\n" + _node_detail(node)).replace('"', r"\"")
            lines.append(f'  n{node["id"]} [label="{label}", fillcolor="{node["colour"]}"];')
        for edge in self.edges:
            attributes = ["style=dashed"] if edge["kind"] == "wait_for" else []
            if edge.get("bytes"):
                attributes.append(f'label="{human_bytes(edge["bytes"])}", fontsize=10')
            style = f" [{', '.join(attributes)}]" if attributes else ""
            lines.append(f"  n{edge['source']} -> n{edge['target']}{style};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def to_mermaid(self) -> str:
        lines = ["flowchart LR"]
        for node in self.nodes:
            label = node["label"].replace('"', "'")
            lines.append(f'  n{node["id"]}["{label}"]')
            lines.append(f"  style n{node['id']} fill:{node['colour']},color:#fff")
        for edge in self.edges:
            arrow = "-.->" if edge["kind"] == "wait_for" else "-->"
            lines.append(f"  n{edge['source']} {arrow} n{edge['target']}")
        return "\n".join(lines) + "\n"

    def to_svg(self, path: str) -> str:
        dot = shutil.which("dot")
        if dot is None:
            raise GraphvizMissing(
                "FlowRunGraph.to_svg needs Graphviz's 'dot' program, which is not installed: "
                "install the 'graphviz' system package (apt-get install graphviz, brew install graphviz)."
            )
        subprocess.run([dot, "-Tsvg", "-o", path], input=self.to_dot(), text=True, check=True)
        return path

    def save(self, path: str) -> str:
        """Write by extension: .dot, .mmd, .json or .svg."""
        if path.endswith(".svg"):
            return self.to_svg(path)
        writers = {".dot": self.to_dot, ".mmd": self.to_mermaid, ".json": self.to_json}
        for suffix, writer in writers.items():
            if path.endswith(suffix):
                with open(path, "w", encoding="utf-8") as out:
                    out.write(writer())
                return path
        raise ValueError(f"unknown graph format for {path!r}: use .dot, .mmd, .json or .svg")


def _collapse(runs: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Nodes and edges, one node per large map group; node ids are run ids or group ids."""
    group_sizes = Counter(run.map_group for run in runs if run.map_group is not None)
    big_groups = {group for group, size in group_sizes.items() if size > GROUP_ABOVE}
    node_of: dict[int, int] = {}
    nodes: list[dict[str, Any]] = []
    group_members: dict[int, list[Any]] = {}
    for run in runs:
        if run.map_group in big_groups:
            group_members.setdefault(run.map_group, []).append(run)
            continue
        node_of[run.id] = run.id
        state = run.state.type.value
        nodes.append(
            {"id": run.id, "label": run.name, "task": run.task_name, "state": run.state.name,
             "colour": STATE_COLOURS[state], "runs": 1, "seconds": run.timings["running"],
             "result_bytes": run.result_bytes}
        )
    for members in group_members.values():
        node_id = members[0].id
        counts = Counter(run.state.name for run in members)
        worst = _worst_state(run.state.type.value for run in members)
        summary = ", ".join(f"{count} {name}" for name, count in sorted(counts.items()))
        nodes.append(
            {"id": node_id, "label": f"{members[0].task_name} ×{len(members)} ({summary})",
             "task": members[0].task_name, "state": worst, "colour": STATE_COLOURS[worst],
             "runs": len(members), "seconds": sum(run.timings["running"] for run in members),
             "result_bytes": sum(run.result_bytes for run in members)}
        )
        for run in members:
            node_of[run.id] = node_id
    edges: dict[tuple[int, int, str], int] = {}  # -> the bytes that went along it (data edges)
    size_of = {run.id: run.result_bytes for run in runs}
    for run in runs:
        for upstream_id, kind in run.upstream:
            if upstream_id in node_of:
                key = (node_of[upstream_id], node_of[run.id], kind)
                edges[key] = edges.get(key, 0) + (size_of.get(upstream_id, 0) if kind == "data" else 0)
    return nodes, [{"source": s, "target": t, "kind": k, "bytes": b} for (s, t, k), b in edges.items()]


def _node_detail(node: dict[str, Any]) -> str:
    text = human_seconds(node.get("seconds", 0.0))
    return text + (f" · {human_bytes(node['result_bytes'])}" if node.get("result_bytes") else "")


def _worst_state(types: Iterable[str]) -> str:
    order = ["CRASHED", "FAILED", "CANCELLED", "PENDING", "RUNNING", "COMPLETED"]
    present = set(types)
    return next(t for t in order if t in present)


def write_timeline_html(flow_run: Any, path: str) -> str:
    """One self-contained page: a row per worker, a bar per run, hover for details."""
    runs = [run for run in flow_run.task_runs if run.start_time is not None]
    origin = min((run.start_time for run in runs), default=flow_run.start_time)
    workers = sorted({str(run.worker) for run in runs})
    bars = [
        {
            "row": workers.index(str(run.worker)),
            "start": run.start_time - origin,
            "end": (run.end_time or run.start_time) - origin,
            "name": run.name,
            "state": run.state.name,
            "colour": STATE_COLOURS[run.state.type.value],
        }
        for run in runs
    ]
    page = _TIMELINE_TEMPLATE.replace("__TITLE__", html.escape(f"Flow run '{flow_run.name}'"))
    page = page.replace("__DATA__", json.dumps({"workers": workers, "bars": bars}).replace("</", "<\\/"))
    with open(path, "w", encoding="utf-8") as out:
        out.write(page)
    return path


_TIMELINE_TEMPLATE = """<!doctype html>
<html><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font:13px system-ui,sans-serif;margin:16px;color:#222}
.row{position:relative;height:26px;border-bottom:1px solid #eee}
.label{position:absolute;left:0;width:150px;top:5px;overflow:hidden;white-space:nowrap}
.lane{position:absolute;left:160px;right:10px;top:3px;bottom:3px}
.bar{position:absolute;top:0;bottom:0;min-width:2px;border-radius:2px;opacity:.9}
#tip{position:fixed;display:none;background:#222;color:#fff;padding:4px 8px;border-radius:4px;pointer-events:none}
</style></head><body>
<h2>__TITLE__</h2><div id="axis"></div><div id="rows"></div><div id="tip"></div>
<script>
const data = __DATA__;
const end = Math.max(1e-9, ...data.bars.map(b => b.end));
const rows = document.getElementById('rows'), tip = document.getElementById('tip');
document.getElementById('axis').textContent = data.bars.length + ' runs over ' + end.toFixed(3) + ' s';
const lanes = data.workers.map(w => {
  const row = document.createElement('div'); row.className = 'row';
  row.innerHTML = '<div class="label">worker ' + w + '</div><div class="lane"></div>';
  rows.appendChild(row); return row.querySelector('.lane');
});
for (const b of data.bars) {
  const bar = document.createElement('div'); bar.className = 'bar';
  bar.style.left = (100 * b.start / end) + '%';
  bar.style.width = (100 * (b.end - b.start) / end) + '%';
  bar.style.background = b.colour;
  bar.dataset.info = b.name + ' · ' + b.state + ' · ' + b.start.toFixed(4) + 's → ' + b.end.toFixed(4) + 's';
  bar.addEventListener('mousemove', e => {
    tip.style.display = 'block'; tip.style.left = (e.clientX + 12) + 'px';
    tip.style.top = (e.clientY + 12) + 'px'; tip.textContent = bar.dataset.info; });
  bar.addEventListener('mouseleave', () => { tip.style.display = 'none'; });
  lanes[b.row].appendChild(bar);
}
</script></body></html>
"""
