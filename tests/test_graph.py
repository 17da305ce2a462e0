"""The flow run graph (DOT, Mermaid, JSON, SVG) and the timeline page in a real browser."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from procflow import allow_failure, flow, task
from procflow.graph import GraphvizMissing
from procflow.task_runners import ThreadPoolTaskRunner


@task
def source(x):
    return x


@task
def fail():
    raise RuntimeError("no")


@task
def sink(*values):
    return len(values)


@flow(task_runner=ThreadPoolTaskRunner)
def shaped():
    a = source.submit(1)
    b = source.submit(a)
    gate = source.submit(0)
    bad = fail.submit()
    mapped = source.map(range(30), wait_for=[gate])
    sink.submit(b, allow_failure(bad), wait_for=[gate])
    return mapped


def test_graph_has_one_arrow_per_dependency_with_kinds_and_state_colours():
    shaped(return_state=True)
    graph = shaped.last_run.graph
    data = json.loads(graph.to_json())
    labels = {node["label"]: node for node in data["nodes"]}
    assert set(labels) >= {"source-0", "source-1", "source-2", "fail-0", "sink-0"}
    mapped_node = [n for n in data["nodes"] if n["runs"] == 30]
    assert len(mapped_node) == 1 and mapped_node[0]["label"].startswith("source ×30 (30 Completed)")
    assert labels["fail-0"]["colour"] != labels["source-0"]["colour"]
    ids = {label: node["id"] for label, node in labels.items()}
    edges = {(e["source"], e["target"], e["kind"]) for e in data["edges"]}
    assert (ids["source-0"], ids["source-1"], "data") in edges
    assert (ids["fail-0"], ids["sink-0"], "data") in edges
    assert (ids["source-2"], ids["sink-0"], "wait_for") in edges
    assert (ids["source-2"], mapped_node[0]["id"], "wait_for") in edges  # 30 arrows become one
    dot = graph.to_dot()
    assert f"n{ids['source-2']} -> n{ids['sink-0']} [style=dashed];" in dot
    assert f"n{ids['source-0']} -> n{ids['source-1']};" in dot
    mermaid = graph.to_mermaid()
    assert f"n{ids['source-2']} -.-> n{ids['sink-0']}" in mermaid
    assert f"n{ids['source-0']} --> n{ids['source-1']}" in mermaid


def test_svg_through_graphviz(tmp_path):
    shaped(return_state=True)
    out = shaped.last_run.graph.to_svg(str(tmp_path / "graph.svg"))
    text = Path(out).read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text and ("sink-0" in text or "sink&#45;0" in text)


def test_svg_without_graphviz_names_the_package(monkeypatch, tmp_path):
    shaped(return_state=True)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(GraphvizMissing, match="graphviz"):
        shaped.last_run.graph.to_svg(str(tmp_path / "x.svg"))


def test_timeline_page_draws_one_bar_per_run_in_headless_chromium(tmp_path):
    shaped(return_state=True)
    page = shaped.last_run.timeline_html(str(tmp_path / "timeline.html"))
    html = Path(page).read_text()
    assert "http://" not in html and "https://" not in html, "self-contained: no network"
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium is installed by .ci/run"
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", f"file://{page}"],
        capture_output=True, text=True, timeout=120).stdout
    ran = [run for run in shaped.last_run.task_runs if run.start_time is not None]
    assert dom.count('class="bar"') == len(ran) == 35
    assert f"{len(ran)} runs over" in dom
