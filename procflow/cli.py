"""`procflow run SCRIPT.py[:FLOW] ...`, `procflow cache ...` (`cache_cli.py`) and `procflow bench`.

Exit codes: 0 the flow completed, 1 it failed, 130 interrupted (Ctrl-C, SIGTERM),
2 a bad command line (missing script, no flow in it, several flows and none named).
Flow parameters come after `--` as `--name value`, converted as the flow's annotations
say (`typed_parameters`).
"""

from __future__ import annotations

import argparse
import atexit
import csv
import inspect
import json
import os
import signal
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any


from . import cache_cli
from .entrypoints import load_script
from .exceptions import ScriptError
from .interrupts import INTERRUPTED, interrupt_once, second_interrupt_exits_at_once
from .flows import Flow, last_flow_run
from .execution import task_traceback
from .records import FlowRun
from .states import State
from .runners.processes import ProcessPoolTaskRunner
from .runners.threads import SequentialTaskRunner, ThreadPoolTaskRunner


class UsageError(Exception):
    """A bad command line: exit code 2."""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    flow_args: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, flow_args = argv[:split], argv[split + 1:]
    options = parser.parse_args(argv)
    try:
        if options.command == "run":
            return run(options, flow_args)
        if options.command == "cache":
            return cache_cli.run(options)
        return bench(options)
    except UsageError as error:
        print(f"procflow: error: {error}", file=sys.stderr)
        return 2


def _at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="procflow", description="Run Prefect-style flows on local worker processes.")
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run a flow from a script",
                                     description="Run a flow from a script; flow parameters go after -- "
                                                 "as --name value.")
    run_parser.add_argument("target", metavar="SCRIPT.py[:FLOW]")
    run_parser.add_argument("--runner", choices=("process", "thread", "sequential", "dask"), default="process")
    run_parser.add_argument("--workers", type=_at_least_one, default=None, help="worker processes or threads")
    run_parser.add_argument("--address", default=None, help="Dask scheduler address, tcp://HOST:PORT")
    run_parser.add_argument("--graph", default=None, metavar="OUT.(dot|mmd|json|svg)")
    run_parser.add_argument("--timeline", default=None, metavar="OUT.html")
    run_parser.add_argument("--stats", default=None, metavar="OUT.(json|csv)")
    run_parser.add_argument("--report", default=None, metavar="OUT.html",
                            help="one self-contained page: summary, timeline, dependency graph, artifacts")
    run_parser.add_argument("--trace", default=None, metavar="OUT.json",
                            help="Chrome's Trace Event Format, for Perfetto or chrome://tracing")
    run_parser.add_argument("--json", action="store_true", help="print the flow's return value as JSON")
    cache_cli.add_parser(commands)
    bench_parser = commands.add_parser("bench", help="run the benchmarks in benchmarks/")
    bench_parser.add_argument("--quick", action="store_true", help="smaller workloads, fewer repeats")
    bench_parser.add_argument("--only", default="", metavar="NAMES",
                              help="comma-separated parts of workload names (e.g. chain,fan-out)")
    bench_parser.add_argument("--without", default="", metavar="PEERS",
                              help="peers to leave out, comma-separated: dask, ray (each cluster takes seconds "
                                   "to start)")
    bench_parser.add_argument("--workloads", action="store_true",
                              help="the three real batch workloads against joblib, concurrent.futures and Dask "
                                   "(benchmarks/real_workloads.py; --quick: one round)")
    bench_parser.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                              help="JSON lines instead of the table; with FILE: the table, and the rows "
                                   "appended to FILE (not with --workloads)")
    return parser


def run(options: argparse.Namespace, flow_args: list[str]) -> int:
    for path, suffixes in ((options.graph, (".dot", ".mmd", ".json", ".svg")), (options.timeline, (".html",)),
                           (options.stats, (".json", ".csv")), (options.report, (".html",)),
                           (options.trace, (".json",))):
        if path is not None and not path.endswith(suffixes):
            raise UsageError(f"{path!r}: the file name must end in {' or '.join(suffixes)}")
    if options.address and options.runner != "dask":
        raise UsageError("--address goes with --runner dask")
    chosen = load_flow(options.target)
    runner = make_runner(options.runner, options.workers, options.address)
    parameters = typed_parameters(chosen.fn, parse_flow_args(flow_args))
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt_once)  # again: the script may have set its own
    try:
        state, yielded = _called(chosen.with_options(task_runner=runner), parameters)
    except KeyboardInterrupt:
        _end_after_interrupt()
        return INTERRUPTED
    except TypeError as error:
        raise UsageError(str(error)) from None
    flow_run = last_flow_run()
    assert flow_run is not None
    write_outputs(flow_run, options)
    if state.is_completed():
        print_result(state.result(raise_on_failure=False) if yielded is None else yielded, options.json)
        return 0
    raised = state.data
    if isinstance(raised, BaseException) and raised.__traceback__ is not None:  # the user's frames, not ours
        print(task_traceback(raised).rstrip(), file=sys.stderr)
    print(f"procflow: flow run {flow_run.name!r} ended {state!r}", file=sys.stderr)
    return 1


def _called(chosen: Flow[..., Any], parameters: dict[str, Any]) -> tuple[State, list[Any] | None]:
    """The flow run's final state, and for a generator flow the values it yielded, in order
    (what `procflow run` prints when it completes)."""
    if not chosen.isgenerator:
        return chosen(return_state=True, **parameters), None
    yielded: list[Any] = []
    before = last_flow_run()
    try:
        if chosen.isasync:
            import asyncio

            async def drain() -> None:
                yielded.extend([value async for value in chosen(**parameters)])

            asyncio.run(drain())
        else:
            yielded.extend(chosen(**parameters))
    except Exception:
        if last_flow_run() is before:  # refused before it ran (its arguments): the caller reports it
            raise
    flow_run = last_flow_run()  # the failure is its state, reported by the caller
    assert flow_run is not None
    return flow_run.state, yielded


def print_result(value: Any, as_json: bool) -> None:
    """The flow's return value on stdout (the Monte-Carlo price was thrown away): as JSON with
    `--json` (States as their names, other objects as their repr), else as `print` shows it;
    nothing for None, unless as JSON."""
    if as_json:
        print(json.dumps(value, default=_jsonable))
    elif value is not None:
        print(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, State):
        return {"state": value.name, "type": value.type.value, "message": value.message}
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        return tolist()
    return repr(value)


def _end_after_interrupt() -> None:
    """The flow run has cancelled its runs, stopped its workers and freed its memory; exit now.

    The exit functions run (procflow's, loky's, logging's, the user's), then `os._exit`:
    neither a task thread blocked in C code (a thread runner cannot interrupt it) nor the
    teardown of a million cancelled runs' records may hold the exit. Further Ctrl-Cs are
    ignored (`interrupts.interrupt_once`), or end it at once while the exit functions run.
    """
    with second_interrupt_exits_at_once():
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(INTERRUPTED)


def load_flow(target: str) -> Flow[..., Any]:
    """The only flow in the script, or the one named after a colon."""
    path, _, name = target.partition(":") if not os.path.exists(target) else (target, "", "")
    script = Path(path)
    if not script.is_file():
        raise UsageError(f"no such script: {path}")
    try:
        module = load_script(path)  # pickled by value: workers cannot import a script run by path
    except ScriptError as error:
        raise error.user_exc from None  # the script's own error and traceback, as `python script.py` shows it
    if name:
        by_attribute: Any = module
        for part in name.split("."):  # `script.py:Class.method` names a flow defined in a class
            by_attribute = getattr(by_attribute, part, None)
        if isinstance(by_attribute, Flow):
            return by_attribute
    flows = {value.name: value for value in vars(module).values() if isinstance(value, Flow)}
    if not flows:
        raise UsageError(f"{path} defines no @flow")
    if name:
        if name in flows:
            return flows[name]
        raise UsageError(f"{path} has no flow named {name!r}; flows: {', '.join(sorted(flows))}")
    if len(flows) > 1:
        raise UsageError(f"{path} defines several flows ({', '.join(sorted(flows))}): name one, {path}:FLOW")
    return next(iter(flows.values()))


def make_runner(kind: str, workers: int | None, address: str | None) -> Any:
    if kind == "process":
        return ProcessPoolTaskRunner(max_workers=workers)
    if kind == "thread":
        return ThreadPoolTaskRunner(max_workers=workers)
    if kind == "sequential":
        return SequentialTaskRunner()
    try:
        from .dask import DaskTaskRunner  # optional extra: dask[distributed]
    except ImportError as error:
        raise UsageError(f"--runner dask needs the dask extra: pip install 'procflow[dask]' ({error})") from None
    cluster_kwargs = {"n_workers": workers} if workers else None
    return DaskTaskRunner(address=address, cluster_kwargs=cluster_kwargs)


def parse_flow_args(words: list[str]) -> dict[str, str]:
    """`--name value`, `--name=value`, or a bare `--flag` (true), as text."""
    parameters: dict[str, str] = {}
    index = 0
    while index < len(words):
        word = words[index]
        if not word.startswith("--") or len(word) == 2:
            raise UsageError(f"flow parameters go as --name value; got {word!r}")
        key = word[2:].replace("-", "_")
        if "=" in key:
            key, value = key.split("=", 1)
            index += 1
        elif index + 1 < len(words) and not words[index + 1].startswith("--"):
            value = words[index + 1]
            index += 2
        else:
            value, index = "true", index + 1
        parameters[key] = value
    return parameters


_BOOLEANS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}


def typed_parameters(fn: Any, texts: dict[str, str]) -> dict[str, Any]:
    """Each value as the flow's annotation asks (str, int, float, bool); unannotated or
    other types: JSON when it parses (numbers, lists, objects), else the text."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - an annotation that does not resolve: guess from the text
        hints = {}
    parameters = inspect.signature(fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    values: dict[str, Any] = {}
    for name, text in texts.items():
        if name not in parameters and not takes_any:
            raise UsageError(f"--{name}: the flow has no parameter {name!r}; its parameters: "
                             f"{', '.join(parameters) or 'none'}")
        kind = hints.get(name)
        try:
            if kind is str:
                values[name] = text
            elif kind is bool:
                values[name] = _BOOLEANS[text.lower()]
            elif kind is int or kind is float:
                values[name] = kind(text)
            else:
                values[name] = _parse_value(text)
        except (KeyError, ValueError):
            raise UsageError(f"--{name}: expected {getattr(kind, '__name__', kind)}, got {text!r}") from None
    return values


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def write_outputs(flow_run: FlowRun, options: argparse.Namespace) -> None:
    if options.graph:
        flow_run.graph.save(options.graph)
    if options.timeline:
        flow_run.timeline_html(options.timeline)
    if options.report:
        flow_run.report_html(options.report)
    if options.trace:
        with open(options.trace, "w", encoding="utf-8") as out:
            json.dump(flow_run.to_chrome_trace(), out)
    if options.stats:
        rows = flow_run.summary()
        with open(options.stats, "w", newline="", encoding="utf-8") as out:
            if options.stats.endswith(".json"):
                json.dump({"flow_run": flow_run.name, "state": repr(flow_run.state), "tasks": rows}, out, indent=1)
            else:
                writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["task"])
                writer.writeheader()
                writer.writerows(rows)


def bench(options: argparse.Namespace) -> int:
    harness = find_benchmarks()
    if options.workloads:
        command = [sys.executable, str(harness.parent / "real_workloads.py"), "--rounds",
                   "1" if options.quick else "3"]
    else:
        command = [sys.executable, str(harness)] + (["--quick"] if options.quick else [])
    if options.only:
        command += ["--only", options.only]
    if options.without:
        if options.workloads:
            raise UsageError("procflow bench --workloads runs every peer: --without is for the micro-benchmarks")
        command += ["--without", options.without]
    if options.json == "-":
        command += ["--json"]
    elif options.json:
        if options.workloads:
            raise UsageError("procflow bench --workloads --json takes no FILE: its JSON lines go to stdout")
        command += ["--json", options.json]
    return subprocess.call(command)


def find_benchmarks() -> Path:
    for root in (Path.cwd(), Path(__file__).resolve().parent.parent):
        harness = root / "benchmarks" / "harness.py"
        if harness.is_file():
            return harness
    raise UsageError("benchmarks/harness.py not found: run `procflow bench` from a procflow checkout")
