"""Make the README's pictures: `python docs/screenshots.py` (needs chromium on PATH).

The live view and the end summary are rich renderables: drawn here into a recording
console (the live view half-way through the run), saved as SVG, and photographed by
headless Chromium together with the report page of the same run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from rich.console import Console

import procflow.console as console_module
import procflow.context as context_module
from procflow import flow, task
from procflow.artifacts import create_markdown_artifact, create_table_artifact
from procflow.console import end_table
from procflow.task_runners import ProcessPoolTaskRunner

OUT = Path(__file__).resolve().parent / "img"


@task
def load(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    time.sleep(0.05)
    return rng.random((512, 512), dtype=np.float32)


@task(retries=1)
def denoise(image: np.ndarray, i: int) -> np.ndarray:
    if i == 5 and denoise_attempts.setdefault(i, 0) == 0:
        denoise_attempts[i] = 1
    time.sleep(0.15 + 0.05 * (i % 3))
    return (image + np.roll(image, 1, 0) + np.roll(image, 1, 1)) / 3


denoise_attempts: dict[int, int] = {}


@task
def features(image: np.ndarray, i: int) -> dict:
    time.sleep(0.08)
    if i == 17:
        raise ValueError(f"image {i}: no edges found")
    return {"mean": float(image.mean()), "max": float(image.max())}


@task
def summary(rows: list) -> int:
    create_table_artifact([row for row in rows if row], key="features", description="per image")
    create_markdown_artifact(f"# {len(rows)} images\nfeatures computed", key="report")
    return len(rows)


@flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
def images(n: int = 24):
    loaded = load.map(range(n))
    clean = denoise.map(loaded, range(n))
    rows = [f.result(raise_on_failure=False) for f in features.map(clean, range(n))]
    return summary([row if isinstance(row, dict) else None for row in rows])


def photograph(svg_or_html: Path, png: Path, width: int, height: int) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("docs/screenshots.py needs chromium")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--window-size={width},{height}", f"--screenshot={png}",
                        f"file://{svg_or_html}"], check=True, capture_output=True, timeout=120)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    recorder = Console(record=True, width=110, force_terminal=True, color_system="truecolor")
    console_module._console = recorder  # the live view and the logs draw into it
    observers: list = []

    def observer() -> console_module.ConsoleObserver:  # as on a terminal, and kept for the snapshot
        console_module.configure_logging()
        observers.append(console_module.ConsoleObserver(live=True))
        return observers[-1]

    snapshot: list = []

    def catch_the_live_view() -> None:
        time.sleep(2.0)
        if observers and observers[-1]._view is not None:
            snapshot.append(observers[-1]._view._render())

    original = context_module.default_observer
    context_module.default_observer = observer
    try:
        threading.Thread(target=catch_the_live_view, daemon=True).start()
        images(return_state=True)
    finally:
        context_module.default_observer = original
    record = images.last_run
    live = Console(record=True, width=110, force_terminal=True, color_system="truecolor")
    if snapshot:
        live.print(snapshot[0])
    live.save_svg(str(OUT / "live.svg"), title="procflow run images.py")
    summary_console = Console(record=True, width=150, force_terminal=True, color_system="truecolor")
    summary_console.print(end_table(record))
    summary_console.save_svg(str(OUT / "summary.svg"), title="the end summary")
    record.report_html(str(OUT / "report.html"))
    photograph(OUT / "live.svg", OUT / "live.png", 1000, 130)
    photograph(OUT / "summary.svg", OUT / "summary.png", 1350, 200)
    photograph(OUT / "report.html", OUT / "report.png", 1400, 900)
    for name in ("live.svg", "summary.svg", "report.html"):
        (OUT / name).unlink()
    print(f"wrote {OUT}/live.png, summary.png, report.png")


if __name__ == "__main__":
    main()
