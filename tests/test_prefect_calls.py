"""Issue 16, ported from Prefect 3.8's tests/test_flows.py and tests/test_tasks.py: parameters
checked by their annotations, tasks called outside a flow as task runs, `retry_condition_fn`,
`with_options` with Prefect's keywords, and the smaller attributes Prefect code reads."""

from __future__ import annotations

import inspect
import logging
import os
import time
from pathlib import Path

import numpy as np
import pydantic
import pytest

from procflow import Task, flow, task
from procflow.context import FlowRunContext, TaskRunContext, get_run_context
from procflow.exceptions import ParameterBindError, ParameterTypeError
from procflow.filesystems import LocalFileSystem
from procflow.flows import Flow
from procflow.futures import FutureList
from procflow.states import StateType
from procflow.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

RUNNERS = {"process": lambda: ProcessPoolTaskRunner(max_workers=2), "thread": lambda: ThreadPoolTaskRunner(4)}


class Point(pydantic.BaseModel):
    x: int
    y: int


# -- parameters --------------------------------------------------------------------------------

def test_a_flow_converts_its_arguments_by_their_annotations():
    @flow
    def total(x: int, ys: list[int], point: Point, scale: float = 1):
        return (x + sum(ys) + point.x + point.y) * scale, type(scale)

    # the default is converted too, as Prefect validates the defaults it applies
    assert total(x="1", ys=["2", "3"], point={"x": 4, "y": "5"}) == (15.0, float)
    assert total("1", [2], Point(x=0, y=0), scale=2) == (6.0, float)


def test_a_value_that_cannot_be_converted_fails_the_run_before_it_runs_and_its_failure_hooks_run():
    ran, hooked = [], []

    @flow(on_failure=[lambda flow, run, state: hooked.append(state.type)])
    def count(n: int):
        ran.append(n)

    state = count(n="many", return_state=True)
    assert state.type is StateType.FAILED and ran == [] and hooked == [StateType.FAILED]
    assert state.message.startswith("Validation of flow parameters failed with error:")
    with pytest.raises(ParameterTypeError, match=r"n: Input should be a valid integer"):
        state.result()
    with pytest.raises(ParameterTypeError):
        count(n="many")


def test_a_subflow_with_bad_arguments_fails_and_counts_in_its_parent():
    @flow
    def child(x: int):
        return x

    @flow
    def parent():
        return child("foo", return_state=True), child(1, return_state=True)

    state = parent(return_state=True)
    assert state.is_failed() and "1/2 states failed." in state.message
    bad, good = state.result(raise_on_failure=False)
    assert good.result() == 1
    with pytest.raises(ParameterTypeError):
        bad.result()


def test_validation_off_and_arrays_passed_as_the_same_object():
    @flow(validate_parameters=False)
    def raw(x: int):
        return x

    assert raw(x="foo") == "foo"
    assert raw.with_options(validate_parameters=True).should_validate_parameters is True

    array = np.arange(10)

    @flow
    def same(values: np.ndarray, label: str):
        return values is array, label

    assert same(array, "a") == (True, "a")


def test_serialize_parameters_gives_json_values_and_a_placeholder_for_the_rest():
    @flow
    def my_flow(x):
        return x

    class Cyclic:
        def __init__(self):
            self.me = self

    assert my_flow.serialize_parameters({"x": Cyclic()}) == {"x": "<Cyclic>"}
    assert my_flow.serialize_parameters({"x": {"a": (1, 2.5, None)}, "p": Point(x=1, y=2),
                                         "path": Path("/tmp")}) == {"x": {"a": [1, 2.5, None]},
                                                                    "p": {"x": 1, "y": 2}, "path": "/tmp"}


# -- a task called outside any flow -------------------------------------------------------------

def test_a_task_called_outside_a_flow_is_a_task_run_with_its_context_retries_and_hooks(caplog):
    attempts, hooked = [], []

    @task(retries=2, task_run_name="load-{x}", on_completion=[lambda t, run, state: hooked.append(run.name)])
    def load(x):
        attempts.append(TaskRunContext.get().task_run.run_count)
        if len(attempts) < 3:
            raise ValueError("not yet")
        return x * 2

    with caplog.at_level(logging.INFO):
        assert load(21) == 42
    assert attempts == [1, 2, 3] and hooked == ["load-21"]
    assert "Task run 'load-21' - Finished in state Completed()" in caplog.text
    assert "Created task run" not in caplog.text  # a standalone run logs its end only, as Prefect's

    state = load(1, return_state=True)
    assert state.is_completed() and state.result() == 2


def test_a_task_run_name_can_use_self_of_an_instance_method_outside_a_flow():
    class Foo:
        a = 10

        @task(task_run_name="{self.a}|{x}")
        def instance_method(self, x):
            return TaskRunContext.get()

    context = Foo().instance_method(x=5)
    assert context.task_run.name == "10|5"
    from procflow.runtime import flow_run

    @task
    def flow_run_name_outside():
        return flow_run.name

    assert flow_run_name_outside() is None  # no flow run, as in Prefect


def test_a_standalone_call_in_a_loop_keeps_no_records():
    from procflow.context import standalone_context

    @task
    def inc(x):
        return x + 1

    for i in range(200):
        assert inc(i) == i + 1
    assert len(standalone_context().flow_run.task_runs) == 0


# -- retry_condition_fn --------------------------------------------------------------------------

def _attempts_file(tmp_path: Path) -> Path:
    path = tmp_path / "attempts"
    path.write_text("")
    return path


@pytest.mark.parametrize("kind", sorted(RUNNERS))
def test_retry_condition_fn_decides_which_failures_are_retried(kind, tmp_path):
    log = _attempts_file(tmp_path)

    def only_value_errors(task, task_run, state):
        try:
            state.result()
        except ValueError:
            return True
        except Exception:
            return False
        return False

    @task(retries=5, retry_condition_fn=only_value_errors)
    def flaky(path, errors):
        with open(path, "a") as f:
            f.write(f"{os.getpid()}\n")
        attempt = len(Path(path).read_text().split())
        raise errors[min(attempt, len(errors)) - 1]

    @flow(task_runner=RUNNERS[kind]())
    def run_it(errors):
        return flaky.submit(str(log), errors, return_state=True)

    state = run_it([ValueError("again"), ValueError("again"), KeyError("stop")], return_state=True)
    assert state.is_failed()
    assert len(log.read_text().split()) == 3, "two ValueErrors retried, the KeyError not"

    log.write_text("")

    @flow
    def direct(errors):
        return flaky(str(log), errors, return_state=True)

    assert direct([KeyError("stop")], return_state=True).is_failed()
    assert len(log.read_text().split()) == 1


def test_a_retry_condition_that_raises_ends_the_retries_and_says_why(caplog):
    calls = []

    def broken(task, task_run, state):
        raise RuntimeError("condition bug")

    @task(retries=3, retry_condition_fn=broken)
    def fails():
        calls.append(1)
        raise ValueError("x")

    @flow
    def run_it():
        return fails(return_state=True)

    assert run_it(return_state=True).is_failed() and len(calls) == 1
    assert "retry_condition_fn raised RuntimeError: condition bug; not retrying" in caplog.text
    with pytest.raises(TypeError):
        task(retry_condition_fn="not a callable")(lambda: None)


# -- options and attributes ------------------------------------------------------------------------

def test_with_options_takes_the_decorators_keywords():
    task_keywords = set(inspect.signature(task).parameters) - {"__fn", "version"}
    assert task_keywords == set(inspect.signature(Task.with_options).parameters) - {"self"}
    flow_keywords = set(inspect.signature(flow).parameters) - {"_FlowDecorator__fn"}
    assert flow_keywords == set(inspect.signature(Flow.with_options).parameters) - {"self"}


def test_with_options_keeps_what_is_not_given_and_unsets_what_is_given_none(tmp_path):
    storage = LocalFileSystem(basepath=str(tmp_path))

    @task(result_storage=storage, result_storage_key="k", refresh_cache=True, retries=2, timeout_seconds=5,
          retry_jitter_factor=0.1)
    def initial():
        pass

    kept = initial.with_options(name="other")
    assert (kept.name, kept.result_storage, kept.result_storage_key, kept.retries, kept.timeout_seconds,
            kept.retry_jitter_factor) == ("other", storage, "k", 2, 5, 0.1)
    unset = initial.with_options(result_storage=None, result_storage_key=None, refresh_cache=None,
                                 timeout_seconds=0, retries=0)
    assert (unset.result_storage, unset.result_storage_key, unset.refresh_cache, unset.timeout_seconds,
            unset.retries) == (None, None, None, None, 0)


def test_source_code_is_the_functions_and_travels_with_the_task():
    import cloudpickle

    @task
    def my_task():
        return 42

    class Callable:
        def __call__(self):
            return 1

    assert "def my_task" in my_task.source_code and "return 42" in my_task.source_code
    assert cloudpickle.loads(cloudpickle.dumps(my_task)).source_code == my_task.source_code
    assert Task(fn=Callable()).source_code is None


def test_a_task_run_name_set_after_decorating_is_checked_when_it_runs():
    @task
    def my_task():
        pass

    @flow
    def my_flow():
        my_task()

    my_task.task_run_name = 42
    with pytest.raises(TypeError, match="Expected string or callable for 'task_run_name'; got int instead."):
        my_flow()


def test_a_hook_gets_the_very_state_a_direct_call_returns():
    seen = {}

    @task(on_completion=[lambda t, run, state: seen.setdefault("state", state)])
    def work():
        return 1

    @flow
    def run_it():
        return work(return_state=True)

    returned = run_it()
    assert returned is seen["state"]


def test_a_flows_hooks_see_its_flow_and_run_in_the_run_context(caplog):
    seen = []

    def hook(flow_object, flow_run, state):
        context = get_run_context()
        seen.append((context.flow is flow_object, context.flow_run is flow_run, context.flow_run.state is state))

    @flow(on_completion=[hook], flow_run_name="very-bespoke-name")
    def my_flow():
        return FlowRunContext.get().flow

    with caplog.at_level(logging.INFO):
        assert my_flow() is my_flow
    assert seen == [(True, True, True)]
    assert "Beginning flow run 'very-bespoke-name' for flow 'my-flow'" in caplog.text
    assert "Hook 'hook' finished running successfully" in caplog.text


def test_a_future_lists_timeout_bounds_reading_the_results_too():
    class SlowResult:
        def done(self):
            return True

        def wait(self, timeout=None):
            pass

        def result(self, timeout=None, raise_on_failure=True):
            time.sleep(0.5)
            return 42

    with pytest.raises(TimeoutError, match="Timed out waiting for all futures to complete within 0.1 seconds"):
        FutureList([SlowResult()]).result(timeout=0.1)


# -- subflow states, state details, hook lists ---------------------------------------------------

@task
def fails():
    raise ValueError("upstream failed")


@flow
def echo(y):
    return y


@pytest.mark.parametrize("kind", list(RUNNERS))
def test_a_returned_subflow_state_counts_as_a_runs_state(kind):
    """Prefect's TestSubflowWaitForTasks: the flow's result is the subflow's State itself;
    a subflow whose upstream failed does not run and is `NotReady`, failing its parent."""
    from procflow import allow_failure

    @flow(task_runner=RUNNERS[kind]())
    def tolerant():
        return echo(2, wait_for=[allow_failure(fails.submit())], return_state=True)

    @flow(task_runner=RUNNERS[kind]())
    def strict():
        return echo(2, wait_for=[fails.submit()], return_state=True)

    state = tolerant(return_state=True)
    assert state.is_completed() and state.message == "All states completed."
    subflow_state = state.result()
    assert subflow_state.result() == 2
    assert subflow_state.state_details.flow_run_id == echo.last_run.id
    assert state.state_details.flow_run_id == tolerant.last_run.id

    state = strict(return_state=True)
    assert state.is_failed() and state.message == "1/1 states failed."
    blocked = state.result(raise_on_failure=False)
    assert blocked.is_pending() and blocked.name == "NotReady"
    assert blocked.state_details.flow_run_id is not None


def test_a_state_made_by_hand_with_details_and_the_state_group():
    from procflow.states import Completed, StateGroup

    made = Completed(data="x", state_details={"task_run_id": "abc"})
    assert made.state_details.task_run_id == "abc" and made.state_details.flow_run_id is None
    assert Completed().state_details.flow_run_id is None
    group = StateGroup([made, Completed()])
    assert group.all_completed() and group.total_count == 2

    @flow
    def returns_it():
        return made  # a run's state (it names one): counted, and the result is the state itself

    state = returns_it(return_state=True)
    assert state.message == "All states completed." and state.result() is made


def test_the_hook_lists_are_attributes_and_reserved_validator_names_are_refused():
    def on_done(*_):
        pass

    made = flow(on_completion=[on_done])(lambda: None)
    assert made.on_completion_hooks == [on_done] and made.on_failure_hooks == []
    assert task(on_failure=[on_done])(lambda: None).on_failure_hooks == [on_done]
    with pytest.raises(ValueError, match="not compatible with `validate_parameters`"):
        flow(lambda v__args: None)
    assert flow(validate_parameters=False)(lambda v__args: v__args)(3) == 3


# -- Prefect's engine entry points, returned Failed states retried ------------------------------

def test_run_task_sync_and_run_flow_take_parameters_by_name():
    import asyncio

    from procflow.flow_engine import run_flow, run_flow_sync
    from procflow.task_engine import run_task_async, run_task_sync

    @task
    def join(a, *rest, sep="-", **extra):
        return sep.join([a, *rest, *extra])

    @task
    async def later(x):
        return x * 2

    @flow
    def doubled(x: int):
        return x * 2

    @flow
    async def doubled_async(x: int):
        return x * 2

    assert run_task_sync(join, parameters={"a": "x", "rest": ("y",), "sep": "+", "extra": {"z": 1}}) == "x+y+z"
    assert run_task_sync(join, parameters={"a": "x"}, return_type="state").result() == "x"
    assert asyncio.run(run_task_async(later, parameters={"x": 4})) == 8
    assert run_flow_sync(doubled, parameters={"x": "3"}) == 6  # validated: "3" becomes 3
    assert asyncio.run(run_flow(doubled_async, parameters={"x": 5})) == 10
    with pytest.raises(TypeError, match="no parameters named"):
        run_task_sync(join, parameters={"b": 1})


@pytest.mark.parametrize("kind", list(RUNNERS))
def test_a_returned_failed_state_is_retried_as_prefect_3_does(kind, tmp_path):
    """Prefect's test_task_retries_with_explicit_failed_state: attempts are counted in a file
    (the process runner's attempts run in other processes)."""
    from procflow.states import Failed

    counter = tmp_path / "attempts"

    @task(retries=3)
    def flaky():
        with open(counter, "a") as f:
            f.write("x")
        if len(counter.read_text()) == 2:
            return True
        return Failed(message="oops", data=ValueError("oops"))

    @flow(task_runner=RUNNERS[kind]())
    def submitted():
        return flaky.submit().result()

    assert submitted() is True and counter.read_text() == "xx"
    counter.unlink()

    @flow(task_runner=RUNNERS[kind]())
    def called():
        return flaky()

    assert called() is True and counter.read_text() == "xx"


def test_a_flow_runs_record_lists_each_task_run_once_in_the_order_made():
    """The records are one observer of the flow run (the console another): submitted, mapped and
    direct calls, and a subflow's runs in the subflow's record only."""

    @task
    def inc(x):
        return x + 1

    @flow
    def inner():
        return inc(10)

    @flow
    def outer():
        first = inc.submit(1)
        mapped = inc.map([2, 3])
        direct = inc(first)
        inner()
        return [first.result(), *[f.result() for f in mapped], direct]

    assert outer() == [2, 3, 4, 3]
    names = [run.name for run in outer.last_run.task_runs]
    assert names == ["inc-0", "inc-1", "inc-2", "inc-3"], names
    assert len({run.id for run in outer.last_run.task_runs}) == 4


def test_prefects_error_constructors_say_what_was_wrong_and_survive_pickling():
    import cloudpickle

    from procflow.exceptions import PrefectException, SignatureMismatchError

    def load(path, rows=10):  # (annotations are text in this module: Prefect's message shows them quoted)
        pass

    bind = ParameterBindError.from_bind_failure(load, TypeError("missing a required argument: 'path'"), (),
                                                {"limit": 3})
    assert str(bind) == ("Error binding parameters for function 'load': missing a required argument: 'path'.\n"
                         "Function 'load' has signature 'path, rows=10' but received args: () "
                         "and kwargs: ['limit'].")
    with pytest.raises(pydantic.ValidationError) as invalid:
        Point(x="one", y=[2])
    typed = ParameterTypeError.from_validation_error(invalid.value)
    assert str(typed).startswith("Flow run received invalid parameters:\n - x: Input should be a valid integer")
    assert "\n - y: Input should be a valid integer" in str(typed)
    mismatch = SignatureMismatchError.from_bad_params(["path"], ["file"])
    assert str(mismatch) == "Function expects parameters ['path'] but was provided with parameters ['file']"
    for error in (bind, typed, mismatch):
        assert isinstance(error, PrefectException) and str(cloudpickle.loads(cloudpickle.dumps(error))) == str(error)


def test_a_flows_parameter_schema_is_prefects_json_schema_with_docstring_descriptions():
    from procflow.utilities.callables import parameter_schema

    @flow
    def place(where: Point, label: str, samples: np.ndarray = None, repeat: int = 2):  # type: ignore[assignment]
        """Put a label somewhere.

        Args:
            where: the point
                to put it at
            label (str): what it says

        Returns:
            nothing
        """

    schema = parameter_schema(place).model_dump()
    assert schema["required"] == ["where", "label"] and schema["title"] == "Parameters"
    assert schema["properties"]["where"] == {"$ref": "#/definitions/Point", "description": "the point to put it at",
                                             "position": 0, "title": "where"}
    assert schema["definitions"]["Point"]["properties"]["x"]["type"] == "integer"
    assert schema["properties"]["label"] == {"description": "what it says", "position": 1, "title": "label",
                                             "type": "string"}
    assert schema["properties"]["samples"] == {"default": None, "position": 2, "title": "samples"}  # any value
    assert schema["properties"]["repeat"] == {"default": 2, "position": 3, "title": "repeat", "type": "integer"}
