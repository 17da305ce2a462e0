"""One self-contained report page of a flow run: summary, timeline, dependency graph, artifacts.

No network and no library: it opens from `file://`. The timeline is drawn on a canvas
(10 000 runs redraw in milliseconds, where one DOM element per bar would not), with a
time axis, a row per worker, bars coloured by task name, the queued and data-moving parts
of each run drawn before its bar, failed / crashed / retried / cached runs marked, a hover
with the run's details, zoom (wheel, or drag a range) and pan (shift-drag, arrow keys).
The graph is laid out here, in layers by depth, as an SVG that fits the page width;
maps are folded as in `graph.py`, and a graph of more than `GRAPH_NODES` nodes is folded
by task name. `#selftest` in the address makes the page hover its first bar and write
what it saw into `#selftest` (the browser tests read it with `--dump-dom`).
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from typing import Any

from .graph import STATE_COLOURS, _collapse
from .run_summary import PART_TITLES, PARTS, RunSummary, human_bytes, human_seconds, summarise

GRAPH_NODES = 300
PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#edc948", "#76b7b2", "#ff9da7", "#9c755f",
           "#86bcb6", "#d37295", "#a0cbe8", "#ffbe7d", "#8cd17d", "#bab0ac", "#e15759", "#499894"]
NODE_W, NODE_H, GAP_X, GAP_Y = 190, 46, 70, 18


def write_report(flow_run: Any, path: str) -> str:
    summary = summarise(flow_run)
    title = f"Flow run '{flow_run.name}'"
    data = {"timeline": _timeline(flow_run), "title": title}
    page = (_PAGE.replace("__TITLE__", html.escape(title))
            .replace("__SUMMARY__", _summary_html(summary))
            .replace("__GRAPH__", _graph_svg(flow_run.task_runs))
            .replace("__ARTIFACTS__", _artifacts_html(flow_run.artifacts))
            .replace("__DATA__", json.dumps(data, separators=(",", ":")).replace("</", "<\\/")))
    with open(path, "w", encoding="utf-8") as out:
        out.write(page)
    return path


# -- the timeline's data --------------------------------------------------------------

def _timeline(flow_run: Any) -> dict[str, Any]:
    runs = [run for run in flow_run.task_runs if run.start_time is not None]
    origin = min([flow_run.start_time, *(run.ready_time or run.start_time for run in runs)])
    workers = sorted({str(run.worker) for run in runs})
    row_of = {worker: index for index, worker in enumerate(workers)}
    tasks = list(dict.fromkeys(run.task_name for run in flow_run.task_runs))
    task_of = {name: index for index, name in enumerate(tasks)}
    rows = []
    for run in runs:
        state = run.state
        error = ""
        if not state.is_completed():
            error = (state.message or "").strip().splitlines()[0][:300] if state.message else state.name
        ready = run.ready_time if run.ready_time is not None else run.start_time
        rows.append([row_of[str(run.worker)], round(ready - origin, 6), round(run.start_time - origin, 6),
                     round(run.outside_run_seconds, 6),
                     round((run.end_time or run.start_time) - origin, 6),
                     task_of[run.task_name], state.name, state.type.value, run.attempts, run.result_bytes,
                     run.name, error, round(run.loading_seconds, 6)])
    end = max([(flow_run.end_time or 0.0) - origin, *(row[4] for row in rows), 1e-6])
    return {"workers": workers, "tasks": tasks, "colours": [PALETTE[i % len(PALETTE)] for i in range(len(tasks))],
            "runs": rows, "end": end}


# -- the summary ------------------------------------------------------------------------

def _summary_html(summary: RunSummary) -> str:
    facts = [("state", summary.state), ("wall time", human_seconds(summary.wall_seconds)),
             ("workers", f"{summary.workers}, {summary.utilisation:.0%} busy"),
             ("results held at peak", human_bytes(summary.held_bytes_peak))]
    if summary.cached:
        facts.append(("cached", f"{summary.cached} runs, saving {human_seconds(summary.cache_saved_seconds)}"))
    head = "".join(f"<div class=fact><b>{html.escape(k)}</b> {html.escape(v)}</div>" for k, v in facts)
    columns = ["task", "runs", "completed", "not completed", "retried", "cached", "run total", "p50", "p95",
               *(PART_TITLES[part] for part in PARTS)]
    body = []
    for task in summary.tasks:
        cells = [task.task, task.count, task.completed, task.failed, task.retried, task.cached,
                 human_seconds(task.run_total), human_seconds(task.percentile(0.5)),
                 human_seconds(task.percentile(0.95)), *(f"{task.share(part):.0%}" for part in PARTS)]
        body.append("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in cells) + "</tr>")
    table = ("<table id=tasks><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>"
             + "".join(body) + "</table>")
    failures = ""
    if summary.failures:
        items = "".join(f"<li><b>{html.escape(f.run)}</b> {html.escape(f.state)}: {html.escape(f.first_line)}</li>"
                        for f in summary.failures)
        rest = summary.failure_counts()
        if rest:
            counted = ", ".join(f"{html.escape(kind)} ×{count}" for kind, count in rest)
            items += f"<li>and {summary.failure_total - len(summary.failures)} more: {counted}</li>"
        failures = f"<h3>Did not complete ({summary.failure_total})</h3><ul id=failures>{items}</ul>"
    return f"<div id=facts>{head}</div>{table}{failures}"


# -- the graph ----------------------------------------------------------------------------

def _graph_svg(task_runs: list[Any]) -> str:
    nodes, edges = _collapse(list(task_runs))
    if len(nodes) > GRAPH_NODES:
        nodes, edges = _by_task(nodes, edges)
    if not nodes:
        return "<p>No task runs.</p>"
    index = {node["id"]: node for node in nodes}
    depth = {node["id"]: 0 for node in nodes}
    for edge in sorted(edges, key=lambda e: e["target"]):  # upstream runs were made first
        if edge["source"] in depth and edge["target"] in depth and edge["source"] != edge["target"]:
            depth[edge["target"]] = max(depth[edge["target"]], depth[edge["source"]] + 1)
    for _ in range(len(nodes)):  # settle depths the order above missed (bounded)
        changed = False
        for edge in edges:
            s, t = edge["source"], edge["target"]
            if s in depth and t in depth and s != t and depth[t] <= depth[s] and depth[s] < len(nodes):
                depth[t], changed = depth[s] + 1, True
        if not changed:
            break
    layers: dict[int, list[int]] = defaultdict(list)
    for node in nodes:
        layers[depth[node["id"]]].append(node["id"])
    position = {}
    for layer, members in layers.items():
        for slot, node_id in enumerate(members):
            position[node_id] = (layer * (NODE_W + GAP_X) + 10, slot * (NODE_H + GAP_Y) + 10)
    width: float = (max(layers) + 1) * (NODE_W + GAP_X)
    height = max(len(members) for members in layers.values()) * (NODE_H + GAP_Y) + 20
    parts = [f'<svg id=graph viewBox="0 0 {width} {height}" width="100%" style="max-height:{min(height, 900)}px" '
             'role="img"><defs><marker id=arrow viewBox="0 0 10 10" refX=10 '
             'refY=5 markerWidth=7 markerHeight=7 orient=auto><path d="M0,0L10,5L0,10z" fill="#888"/></marker>'
             '</defs>']
    for edge in edges:
        if edge["source"] not in position or edge["target"] not in position:
            continue
        (left, top), (right, bottom) = position[edge["source"]], position[edge["target"]]
        x1, y1, x2, y2 = left + NODE_W, top + NODE_H / 2, right, bottom + NODE_H / 2
        dash = ' stroke-dasharray="5,4"' if edge["kind"] == "wait_for" else ""
        parts.append(f'<path class=edge d="M{x1},{y1} C{x1 + GAP_X / 2},{y1} {x2 - GAP_X / 2},{y2} {x2},{y2}" '
                     f'fill=none stroke="#888"{dash} marker-end="url(#arrow)"/>')
        if edge.get("bytes"):
            parts.append(f'<text class=size x="{(x1 + x2) / 2}" y="{(y1 + y2) / 2 - 4}" text-anchor=middle>'
                         f'{html.escape(human_bytes(edge["bytes"]))}</text>')
    for node_id, (x, y) in position.items():
        node = index[node_id]
        label = node["label"] if len(node["label"]) <= 28 else node["label"][:27] + "…"
        detail = human_seconds(node.get("seconds", 0.0))
        if node.get("result_bytes"):
            detail += " · " + human_bytes(node["result_bytes"])
        parts.append(f'<g class=node><title>{html.escape(node["label"])}</title>'
                     f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx=6 fill="{node["colour"]}"/>'
                     f'<text x="{x + 8}" y="{y + 18}" class=label>{html.escape(label)}</text>'
                     f'<text x="{x + 8}" y="{y + 36}" class=detail>{html.escape(detail)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def _by_task(nodes: list[dict[str, Any]],
             edges: list[dict[str, Any]]) -> tuple[list[dict[Any, Any]], list[dict[Any, Any]]]:
    """Too many nodes to read: one node per task name."""
    by_task: dict[str, dict[str, Any]] = {}
    task_of = {}
    for node in nodes:
        folded = by_task.setdefault(node["task"], {"id": len(by_task), "task": node["task"], "runs": 0,
                                                   "seconds": 0.0, "result_bytes": 0, "states": set()})
        folded["runs"] += node["runs"]
        folded["seconds"] += node.get("seconds", 0.0)
        folded["result_bytes"] += node.get("result_bytes", 0)
        folded["states"].add(node["state"].upper() if node["state"].upper() in STATE_COLOURS else "COMPLETED")
        task_of[node["id"]] = folded["id"]
    folded_nodes = []
    for folded in by_task.values():
        worst = next((s for s in ("CRASHED", "FAILED", "CANCELLED", "PENDING", "RUNNING") if s in folded["states"]),
                     "COMPLETED")
        folded_nodes.append({**folded, "states": None, "label": f"{folded['task']} ×{folded['runs']}",
                             "colour": STATE_COLOURS[worst]})
    folded_edges: dict[tuple[int, int, str], int] = {}
    for edge in edges:
        key = (task_of[edge["source"]], task_of[edge["target"]], edge["kind"])
        if key[0] != key[1]:
            folded_edges[key] = folded_edges.get(key, 0) + edge.get("bytes", 0)
    return folded_nodes, [{"source": s, "target": t, "kind": k, "bytes": b} for (s, t, k), b in folded_edges.items()]


# -- artifacts ----------------------------------------------------------------------------

def _artifacts_html(artifacts: list[dict[str, Any]]) -> str:
    if not artifacts:
        return ""
    items = []
    for artifact in artifacts:
        kind = artifact["type"]
        head = html.escape(" · ".join(str(part) for part in (artifact.get("key"), artifact.get("task_run"), kind)
                                      if part))
        if kind == "table":
            body = _table_html(artifact["data"])
        elif kind == "link":
            link = str(artifact["data"])
            text = artifact.get("link_text") or link
            body = f'<a href="{html.escape(link, quote=True)}">{html.escape(text)}</a>'
        elif kind == "progress":
            body = f'<progress max=100 value="{float(artifact["data"]):g}"></progress> {float(artifact["data"]):g}%'
        else:  # markdown: shown as written (no markdown library: the text stays readable)
            body = f"<pre>{html.escape(str(artifact['data']))}</pre>"
        description = artifact.get("description")
        note = f"<p>{html.escape(description)}</p>" if description else ""
        items.append(f"<div class=artifact><h4>{head}</h4>{note}{body}</div>")
    return "<h2>Artifacts</h2><div id=artifacts>" + "".join(items) + "</div>"


def _table_html(table: Any) -> str:
    if isinstance(table, dict):  # column -> values
        columns = list(table)
        rows = list(zip(*(table[column] for column in columns), strict=False))
    elif table and isinstance(table[0], dict):  # rows as dicts
        columns = list(dict.fromkeys(key for row in table for key in row))
        rows = [tuple(row.get(column, "") for column in columns) for row in table]
    else:  # rows as lists
        columns, rows = [], [tuple(row) for row in table]
    head = "<tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in columns) + "</tr>" if columns else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table class=artifact-table>{head}{body}</table>"


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font:13px system-ui,sans-serif;margin:16px;color:#222;max-width:1600px}
h1{font-size:20px;margin:0 0 8px}h2{font-size:16px;margin:22px 0 8px}
#facts{display:flex;flex-wrap:wrap;gap:6px 18px;margin-bottom:10px}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 7px;text-align:right;white-space:nowrap}
td:first-child,th:first-child{text-align:left}th{background:#f4f4f4}
#timeline-box{position:relative;border:1px solid #ddd}canvas{display:block;width:100%}
#tip{position:fixed;display:none;background:#222;color:#fff;padding:6px 9px;border-radius:4px;
pointer-events:none;white-space:pre;font:12px ui-monospace,monospace;z-index:9}
#legend span{display:inline-block;margin-right:14px}#legend i{display:inline-block;width:12px;height:12px;
margin-right:4px;vertical-align:-2px;border-radius:2px}
.hint{color:#666}.node text{fill:#fff;font-size:12px}.node .detail{font-size:11px;opacity:.9}
.size{font-size:11px;fill:#555}.artifact{border:1px solid #eee;padding:6px 10px;margin:6px 0}
.artifact h4{margin:0 0 6px}
</style></head><body>
<h1>__TITLE__</h1>
<section id=summary>__SUMMARY__</section>
<h2>Timeline</h2>
<div id=legend></div>
<p class=hint>Wheel or drag to zoom, shift-drag or arrow keys to pan, double-click to reset. Grey before a bar:
queued for a worker; dark: loading the task's code and moving data. Red outline: failed; black cross: crashed;
dot: retried; hatched: cached.</p>
<div id=timeline-box><canvas id=timeline></canvas></div><div id=tip></div>
<h2>Dependencies</h2>
__GRAPH__
__ARTIFACTS__
<pre id=selftest hidden></pre>
<script>
"use strict";
const DATA = __DATA__;
const T = DATA.timeline, runs = T.runs, errors = [];
window.addEventListener("error", e => errors.push(String(e.message)));
const canvas = document.getElementById("timeline"), tip = document.getElementById("tip");
const ctx = canvas.getContext("2d");
const ROW = 24, AXIS = 26, LABEL = 110;
let view = [0, T.end], drag = null;
const byRow = T.workers.map(() => []);
runs.forEach((r, i) => byRow[r[0]].push(i));
byRow.forEach(list => list.sort((a, b) => runs[a][2] - runs[b][2]));
document.getElementById("legend").innerHTML = T.tasks.map((t, i) =>
  '<span><i style="background:' + T.colours[i] + '"></i>' + t.replace(/[<&]/g, "") + '</span>').join("");
function size() {
  const ratio = window.devicePixelRatio || 1, w = canvas.parentElement.clientWidth;
  const h = AXIS + Math.max(1, T.workers.length) * ROW + 4;
  canvas.width = w * ratio; canvas.height = h * ratio; canvas.style.height = h + "px";
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0); return [w, h];
}
function xOf(t, w) { return LABEL + (t - view[0]) / (view[1] - view[0]) * (w - LABEL - 8); }
function tOf(x, w) { return view[0] + (x - LABEL) / (w - LABEL - 8) * (view[1] - view[0]); }
function ticks(span) {
  const raw = span / 8, p = Math.pow(10, Math.floor(Math.log10(raw)));
  return [1, 2, 5, 10].map(m => m * p).find(s => s >= raw);
}
function label(t) { const a = Math.abs(t); return a >= 1 ? t.toFixed(a >= 10 ? 1 : 2) + " s" :
  a >= 1e-3 ? (t * 1e3).toFixed(1) + " ms" : (t * 1e6).toFixed(0) + " µs"; }
function draw() {
  const [w, h] = size();
  ctx.clearRect(0, 0, w, h); ctx.font = "11px system-ui,sans-serif";
  const step = ticks(view[1] - view[0]);
  ctx.fillStyle = "#666"; ctx.strokeStyle = "#eee";
  for (let t = Math.ceil(view[0] / step) * step; t <= view[1]; t += step) {
    const x = xOf(t, w); ctx.beginPath(); ctx.moveTo(x, AXIS - 4); ctx.lineTo(x, h); ctx.stroke();
    ctx.fillText(label(t), x + 2, 14);
  }
  T.workers.forEach((name, row) => {
    ctx.fillStyle = "#333"; ctx.fillText("worker " + name, 4, AXIS + row * ROW + 15); });
  for (let row = 0; row < byRow.length; row++) {
    const y = AXIS + row * ROW + 3, hgt = ROW - 6;
    for (const i of byRow[row]) {
      const r = runs[i];
      if (r[4] < view[0] || r[1] > view[1]) continue;
      const xs = xOf(r[2], w), xe = Math.max(xs + 1, xOf(r[4], w));
      const xq = xOf(r[1], w), xt = xOf(r[2] - r[3], w);  // queued: a thin line under the row's bars
      if (xt - xq > 1) { ctx.fillStyle = "#c8c8c8"; ctx.fillRect(xq, y + hgt + 1, xt - xq, 2); }
      if (xs - xt > 0.5) { ctx.fillStyle = "#555"; ctx.fillRect(xt, y + 3, xs - xt, hgt - 6); }
      ctx.fillStyle = T.colours[r[5]]; ctx.fillRect(xs, y, xe - xs, hgt);
      if (r[6] === "Cached") { ctx.fillStyle = "rgba(255,255,255,.5)";
        for (let x = xs; x < xe; x += 6) ctx.fillRect(x, y, 2, hgt); }
      if (r[7] === "FAILED" || r[7] === "CANCELLED") { ctx.strokeStyle = r[7] === "FAILED" ? "#d00" : "#777";
        ctx.lineWidth = 2; ctx.strokeRect(xs + 1, y + 1, Math.max(1, xe - xs - 2), hgt - 2); ctx.lineWidth = 1; }
      if (r[7] === "CRASHED") { ctx.strokeStyle = "#000"; ctx.beginPath(); ctx.moveTo(xs, y); ctx.lineTo(xe, y + hgt);
        ctx.moveTo(xs, y + hgt); ctx.lineTo(xe, y); ctx.stroke(); }
      if (r[8] > 1) { ctx.fillStyle = "#000"; ctx.beginPath(); ctx.arc(xs + 4, y + 4, 2.5, 0, 7); ctx.fill(); }
    }
  }
  ctx.strokeStyle = "#eee";
}
function runAt(x, y) {
  const w = canvas.clientWidth, row = Math.floor((y - AXIS) / ROW);
  if (row < 0 || row >= byRow.length || x < LABEL) return null;
  const t = tOf(x, w), slack = 3 * (view[1] - view[0]) / w, list = byRow[row];
  let lo = 0, hi = list.length - 1, found = null;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (runs[list[mid]][2] <= t + slack) { found = mid; lo = mid + 1; } else hi = mid - 1;
  }
  for (let k = found; k !== null && k >= 0 && k > found - 50; k--) {
    const r = runs[list[k]]; if (r[2] - r[3] - slack <= t && t <= r[4] + slack) return r;
  }
  return null;
}
function bytes(n) { return n >= 1e9 ? (n / 1e9).toFixed(1) + " GB" : n >= 1e6 ? (n / 1e6).toFixed(1) + " MB" :
  n >= 1e3 ? (n / 1e3).toFixed(1) + " KB" : n + " B"; }
function details(r) {
  return [r[10] + "  (" + T.tasks[r[5]] + ")", "state     " + r[6], "worker    " + T.workers[r[0]],
    "start     " + label(r[2]), "duration  " + label(r[4] - r[2]), "loading   " + label(r[12]),
    "moving    " + label(r[3] - r[12]),
    "queued    " + label(Math.max(0, r[2] - r[3] - r[1])), "result    " + bytes(r[9]), "attempts  " + r[8]]
    .concat(r[11] ? ["error     " + r[11]] : []).join("\\n");
}
canvas.addEventListener("mousemove", e => {
  const box = canvas.getBoundingClientRect(), x = e.clientX - box.left, y = e.clientY - box.top;
  if (drag) { drag.x1 = x; if (drag.pan) { const dt = tOf(drag.x0, box.width) - tOf(x, box.width);
    view = [drag.view[0] + dt, drag.view[1] + dt]; draw(); } return; }
  const r = runAt(x, y);
  if (!r) { tip.style.display = "none"; return; }
  tip.textContent = details(r); tip.style.display = "block";
  tip.style.left = (e.clientX + 14) + "px"; tip.style.top = (e.clientY + 14) + "px";
});
canvas.addEventListener("mouseleave", () => { tip.style.display = "none"; });
canvas.addEventListener("wheel", e => {
  e.preventDefault(); const box = canvas.getBoundingClientRect(), t = tOf(e.clientX - box.left, box.width);
  const f = e.deltaY > 0 ? 1.25 : 0.8; view = [t - (t - view[0]) * f, t + (view[1] - t) * f]; draw();
}, {passive: false});
canvas.addEventListener("mousedown", e => { const x = e.clientX - canvas.getBoundingClientRect().left;
  drag = {x0: x, x1: x, pan: e.shiftKey, view: view.slice()}; });
window.addEventListener("mouseup", () => {
  if (drag && !drag.pan && Math.abs(drag.x1 - drag.x0) > 4) { const w = canvas.clientWidth;
    const a = tOf(Math.min(drag.x0, drag.x1), w), b = tOf(Math.max(drag.x0, drag.x1), w); view = [a, b]; draw(); }
  drag = null; });
canvas.addEventListener("dblclick", () => { view = [0, T.end]; draw(); });
window.addEventListener("keydown", e => { const span = view[1] - view[0];
  if (e.key === "ArrowLeft") { view = [view[0] - span / 5, view[1] - span / 5]; draw(); }
  if (e.key === "ArrowRight") { view = [view[0] + span / 5, view[1] + span / 5]; draw(); } });
window.addEventListener("resize", draw);
const began = performance.now(); draw(); const renderMs = performance.now() - began;
if (location.hash === "#selftest") {
  const out = {runs: runs.length, renderMs: renderMs, tooltip: "", errors: errors};
  if (runs.length) {
    const r = runs[0], box = canvas.getBoundingClientRect(), w = box.width;
    const x = (xOf(r[2], w) + Math.max(xOf(r[2], w) + 1, xOf(r[4], w))) / 2, y = AXIS + r[0] * ROW + ROW / 2;
    canvas.dispatchEvent(new MouseEvent("mousemove", {clientX: box.left + x, clientY: box.top + y}));
    out.tooltip = tip.style.display === "block" ? tip.textContent : "";
    const z = performance.now(); view = [0, T.end / 10]; draw(); view = [0, T.end]; draw();
    out.zoomMs = performance.now() - z;
  }
  const pre = document.getElementById("selftest"); pre.hidden = false; pre.textContent = JSON.stringify(out);
}
</script></body></html>
"""
