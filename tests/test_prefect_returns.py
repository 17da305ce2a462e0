"""Issue 16: what a flow returns and the states users make, as Prefect 3.8 does.

Ported from Prefect's `tests/test_flows.py` (`TestFlowCall`, `TestFlowStateRules`'s
returned-state cases) and `tests/test_states.py` (states made by hand), on every runner.
"""

from __future__ import annotations

import pytest

from procflow import flow, task
from procflow.states import Cancelled, Completed, Crashed, Failed, State, StateType


@task
def one():
    return 1


@task
def double(x):
    return 2 * x


@task
def fail():
    raise ValueError("Test")


def on(runner, fn):
    return flow(task_runner=runner)(fn)


def test_a_returned_future_gives_its_state(runner):
    """`return t.submit(1)` makes the call return `Completed()`, whose `.result()` is 1."""
    returned = on(runner, lambda: one.submit())()
    assert isinstance(returned, State) and repr(returned) == "Completed()"
    assert returned.result() == 1


def test_a_returned_map_gives_a_list_of_states(runner):
    returned = on(runner, lambda: double.map([1, 2, 3]))()
    assert [type(state) for state in returned] == [State] * 3
    assert [state.result() for state in returned] == [2, 4, 6]


def test_flow_state_reflects_returned_task_run_state(runner):
    """Prefect's test of the same name: the task run's state is the data of the flow's."""
    def body():
        return fail(return_state=True)

    flow_state = on(runner, body)(return_state=True)
    assert flow_state.is_failed()
    task_run_state = flow_state.result(raise_on_failure=False)
    assert isinstance(task_run_state, State) and task_run_state.is_failed()
    with pytest.raises(ValueError, match="Test"):
        flow_state.result()


def test_a_failed_flow_raises_its_first_failed_returned_run(runner):
    def body():
        return [one.submit(), fail.submit()]

    with pytest.raises(ValueError, match="Test"):
        on(runner, body)()
    state = on(runner, body)(return_state=True)
    assert repr(state) == "Failed('1/2 states failed.')"
    first, second = state.result(raise_on_failure=False)
    assert first.is_completed() and second.is_failed()


def test_a_mix_of_states_and_data_is_data(runner):
    """SPEC §1: `(None, failed_state)` is data: `Completed`."""
    def body():
        return None, fail(return_state=True)

    state = on(runner, body)(return_state=True)
    assert repr(state) == "Completed()"
    none, failed = state.result()
    assert none is None and failed.is_failed()


def test_any_cancelled_state_makes_the_flow_cancelled_even_beside_a_failed_one(runner):
    def body():
        return [Completed(), Failed(message="no"), Cancelled()]

    state = on(runner, body)(return_state=True)
    assert state.is_cancelled() and state.message == "1/3 states cancelled."


def test_states_made_by_hand_take_their_name_from_the_type():
    assert State(type=StateType.CANCELLED).name == "Cancelled"
    assert repr(State(type=StateType.COMPLETED)) == "Completed()"
    assert (repr(Crashed()), repr(Failed()), repr(Cancelled())) == ("Crashed()", "Failed()", "Cancelled()")
    assert Failed(data=ValueError("x")).result(raise_on_failure=False).args == ("x",)
    assert Failed(message="why").message == "why"
    with pytest.raises(Exception, match="Run failed|The run failed"):
        Failed().result()


@pytest.mark.parametrize("made, hook", [(lambda: State(type=StateType.CANCELLED), "on_cancellation"),
                                        (lambda: Crashed(), "on_crashed")])
def test_a_flow_returning_a_cancelled_or_crashed_state_ends_in_it_and_runs_its_hook(made, hook, runner):
    called = []

    def body():
        return made()

    subject = flow(task_runner=runner, **{hook: [lambda flow_, run, state: called.append(state.type)]})(body)
    state = subject(return_state=True)
    assert state.type is made().type
    assert called == [made().type]


# -- more of issue 16: states as arguments, subflows, cache on direct calls, log_prints, small APIs

def test_a_state_from_a_direct_call_is_replaced_by_its_result_and_maps_over_it(runner):
    """Prefect: `total(upstream(return_state=True))` gets the list; `.map(state)` maps its result."""
    def body():
        listed = up_list(return_state=True)
        return total(listed), [future.result() for future in double.map(listed)], total.submit(listed).result()

    assert on(runner, body)() == (6, [2, 4, 6], 6)


def test_a_subflow_waits_for_wait_for_and_gets_results_not_futures(runner):
    seen = []

    @flow
    def child(x):
        seen.append(type(x).__name__)
        return x + 1

    def body():
        future = double.submit(5)
        return child(future), child(2, wait_for=[future])

    assert on(runner, body)() == (11, 3)
    assert seen == ["int", "int"]


def test_cache_key_fn_serves_direct_calls_and_submits_alike(runner, tmp_path):
    """Prefect: a direct call consults the cache too; the key's context has task_run.flow_run_id."""
    marks = tmp_path / "runs"
    marks.mkdir()

    @task(cache_key_fn=lambda context, parameters: f"{context.task_run.flow_run_id}-{parameters['x']}")
    def costly(x, where):
        (where / f"{x}-{len(list(where.iterdir()))}").touch()  # a mark per execution, in any process
        return x * 10

    def body():
        return costly(1, marks), costly(1, marks), costly.submit(1, marks).result(), costly(2, marks)

    assert on(runner, body)() == (10, 10, 10, 20)
    assert sorted(path.name.split("-")[0] for path in marks.iterdir()) == ["1", "2"], "x=1 ran once"
    states = [run.state.name for run in on_last_run().task_runs]
    assert states == ["Completed", "Cached", "Cached", "Completed"]


def test_log_prints_false_on_a_task_or_subflow_opts_out_of_the_flows(runner, capsys):
    @task(log_prints=False)
    def quiet():
        print("printed-quietly")

    @flow(log_prints=False)
    def quiet_child():
        print("child-printed-quietly")

    @flow
    def inheriting_child():
        print("child-logged")

    def body():
        quiet()
        quiet_child()
        inheriting_child()

    flow(task_runner=runner, log_prints=True)(body)()
    out = capsys.readouterr().out
    assert "printed-quietly" in out and "child-printed-quietly" in out, "they went to stdout, not the log"
    assert "child-logged" not in out, "an inheriting subflow logs its prints"


def test_prefect_small_apis():
    from procflow import quote
    from procflow.tasks import exponential_backoff

    assert quote([1]).unquote() == [1]
    def plain():
        return 1

    assert task(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=10))(plain).retry_delay_seconds \
        == [10, 20, 40]
    assert task(timeout_seconds=5)(plain).with_options(timeout_seconds=0).timeout_seconds is None

    def documented():
        """First line.

            Indented more.
        """

    assert flow(documented).description == "First line.\n\nIndented more."  # inspect.getdoc, as Prefect
    assert task(documented).description == "First line.\n\nIndented more."


@task
def up_list():
    return [1, 2, 3]


@task
def total(values):
    return sum(values)


def on_last_run():
    from procflow import last_flow_run

    return last_flow_run()


class Multiplier:
    """Prefect's `test_flow_supports_class_methods`, `..._static_methods` and
    `test_with_options_preserves_classmethod_context`."""

    @classmethod
    def factor(cls):
        return 1

    @flow
    @classmethod
    def process(cls, x: int):
        return x * cls.factor()

    @classmethod
    @flow
    def other_order(cls):
        return cls.__name__

    @flow
    @staticmethod
    def static():
        return "static"

    @task
    @classmethod
    def scaled(cls, x):
        return x * cls.factor()

    @task
    @staticmethod
    def plus_one(x):
        return x + 1


class Doubler(Multiplier):
    @classmethod
    def factor(cls):
        return 2


def test_flows_and_tasks_on_classmethods_and_staticmethods(runner):
    assert (Multiplier.process(5), Doubler.process(5), Doubler.process.with_options()(5)) == (5, 10, 10)
    assert Doubler.other_order() == "Doubler" and Doubler().static() == "static"

    def body():
        return (Doubler.scaled(3), Doubler.scaled.submit(4).result(), Doubler().scaled(5),
                Multiplier.plus_one(1), Multiplier.plus_one.submit(2).result())

    assert on(runner, body)() == (6, 8, 10, 2, 3)


def test_runtime_flow_run_ids_and_tags():
    from procflow import tags
    from procflow.runtime import flow_run

    @flow
    def child():
        return flow_run.id, flow_run.parent_flow_run_id, flow_run.root_flow_run_id

    @flow
    def parent():
        with tags("nightly"):
            inner, tagged = child(), flow_run.tags
        return flow_run.id, inner, tagged, flow_run.scheduled_start_time

    mine, (child_id, child_parent, child_root), tagged, started = parent()
    assert child_parent == mine == child_root and child_id != mine and len(mine) == 36
    assert tagged == ["nightly"] and started.tzinfo is not None
    assert flow_run.id is None and flow_run.parent_flow_run_id is None


@task
def big_image():
    import numpy as np

    return np.arange(1 << 18, dtype="float64")  # 2 MiB: shared memory on the process runner


@task
def centered_sum(image):
    image -= image.mean()  # works under Prefect on every runner (issue 16)
    return float(abs(image).sum())


@task
def plain_sum(image):
    return float(image.sum())


def test_an_input_changed_in_place_stays_that_runs_own(runner):
    def body():
        image = big_image.submit()
        centered = centered_sum.submit(image)
        return centered.result(), plain_sum.submit(image, wait_for=[centered]).result()

    centered, untouched = on(runner, body)()
    n = 1 << 18
    assert centered == pytest.approx(sum(abs(i - (n - 1) / 2) for i in range(n)))
    if runner.name == "process":  # threads (and Dask within a worker) hand over the object, as Prefect's do
        assert untouched == float(sum(range(n))), "the write reached the segment other runs read"


def test_prefects_context_and_state_helpers_used_by_users_test_suites(runner):
    from procflow.context import FlowRunContext, TaskRunContext
    from procflow.states import StateGroup, raise_state_exception
    from procflow.testing.utilities import prefect_test_harness
    from procflow.utilities.callables import get_call_parameters

    @task
    def inside(x):
        context = TaskRunContext.get()
        return context.task_run.name, context.parameters

    def body():
        return FlowRunContext.get().flow_run.name, inside(3)

    with prefect_test_harness():
        from procflow import last_flow_run

        assert last_flow_run() is None, "the harness starts with fresh records"
        flow_name, (task_name, parameters) = on(runner, body)()
        assert flow_name == last_flow_run().name and task_name == "inside-0" and parameters == {"x": 3}
    assert FlowRunContext.get() is None and TaskRunContext.get() is None
    group = StateGroup([Completed(), Failed(message="x"), Crashed(), Cancelled()])
    assert (group.fail_count, group.any_cancelled(), group.all_completed(), group.all_final()) == (2, True, False, True)
    assert raise_state_exception(Completed()) is None
    with pytest.raises(ValueError, match="boom"):
        raise_state_exception(Failed(ValueError("boom")))

    def signature(a, b=2, *rest, c, **extra):
        return a

    assert get_call_parameters(signature, (1,), {"c": 3}) == {"a": 1, "b": 2, "rest": (), "c": 3, "extra": {}}
    assert get_call_parameters(signature, (1,), {"c": 3}, apply_defaults=False) == {"a": 1, "c": 3}
    with pytest.raises(TypeError, match="signature"):
        get_call_parameters(signature, (), {})


@task
def sleep_then(seconds, value):
    import time

    time.sleep(seconds)
    return value


def test_as_completed_timeout_says_how_many_of_all_are_unfinished():
    """Prefect's text: '1 (of 3) futures unfinished'."""
    from procflow.futures import as_completed
    from procflow.task_runners import ThreadPoolTaskRunner

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=3))
    def body():
        futures = [sleep_then.submit(0, 1), sleep_then.submit(0, 2), sleep_then.submit(3, 3)]
        seen = []
        with pytest.raises(TimeoutError) as raised:
            for future in as_completed(futures, timeout=1.5):
                seen.append(future.result())
        return sorted(seen), str(raised.value)

    seen, message = body()
    assert seen == [1, 2]
    assert message == "1 (of 3) futures unfinished"


def test_a_failed_state_without_raising_gives_its_data_as_prefect_does():
    @flow
    def returns_failed():
        return State(type=StateType.FAILED, message="Test returned state", data="hello!")

    state = returns_failed(return_state=True)
    assert state.is_failed() and state.message == "Test returned state"
    assert state.result(raise_on_failure=False) == "hello!"
    with pytest.raises(Exception, match="hello!"):  # a text becomes the message of a FailedRun
        state.result()
    assert isinstance(Failed(message="no data").result(raise_on_failure=False), Exception)


def test_a_flow_ending_paused_raises_paused_run_and_bad_names_are_refused():
    from procflow.exceptions import InvalidNameError, PausedRun
    from procflow.states import Paused

    @flow
    def pauses():
        return Paused()

    with pytest.raises(PausedRun, match="result is not available"):
        pauses()
    assert pauses(return_state=True).is_paused()
    for name in ("my/flow", "my%flow", "my<flow", "my>flow", "my&flow"):
        with pytest.raises(InvalidNameError, match="contains an invalid character"):
            flow(name=name)(lambda: 1)
    assert flow(lambda: 1).name == "unknown-lambda"
    with pytest.raises(TypeError, match="Expected string for flow parameter 'name'; got function instead. "
                                        "Perhaps you meant to call it?"):
        flow(name=lambda: "x")(lambda: 1)


def test_settings_give_defaults_to_what_is_made_and_run_inside_them(monkeypatch, log_lines):
    from procflow.settings import (PREFECT_LOGGING_LOG_PRINTS, PREFECT_TASK_DEFAULT_RETRIES,
                                   temporary_settings)

    with temporary_settings(updates={PREFECT_TASK_DEFAULT_RETRIES: "2"}):
        assert task(lambda: 1).retries == 2
    assert task(lambda: 1).retries == 0
    monkeypatch.setenv("PROCFLOW_TASK_DEFAULT_RETRIES", "3")
    assert task(lambda: 1).retries == 3

    @flow
    def talks():
        print("said in the flow")

    with temporary_settings({PREFECT_LOGGING_LOG_PRINTS: True}):
        talks()
    talks()
    assert sum("said in the flow" in line for line in log_lines) == 1


@task(tags=["stage-1"])
def my_tags():
    from procflow.runtime import task_run

    return sorted(task_run.tags)


def test_runtime_task_run_tags_are_the_tasks_and_the_context_ones(runner):
    from procflow import tags

    @flow(task_runner=runner)
    def body():
        with tags("nightly"):
            submitted = my_tags.submit()
            direct = my_tags()
        return submitted.result(), direct, my_tags.submit().result()

    assert body() == (["nightly", "stage-1"], ["nightly", "stage-1"], ["stage-1"])
    from procflow.runtime import task_run
    assert task_run.tags == []


@task
def fails_here():
    raise ValueError("Fail task!")


def test_a_subflow_whose_upstream_failed_does_not_run_and_is_not_ready(runner):
    ran = []  # subflows run in the flow's process

    @flow
    def child(y):
        ran.append(y)
        return y

    @flow(task_runner=runner)
    def parent():
        failed = fails_here.submit()
        waited = child(2, wait_for=[failed], return_state=True)
        given = child(failed, return_state=True)
        from procflow.annotations import allow_failure

        allowed = child(3, wait_for=[allow_failure(failed)])
        return None, waited, given, allowed

    _, waited, given, allowed = parent()
    for state in (waited, given):
        assert state.is_pending() and state.name == "NotReady"
        assert "fails_here-0" in state.message
    assert allowed == 3
    assert ran == [3]  # only the allow_failure call ran


@task
def returns_cancelled():
    return Cancelled()


def test_flow_hooks_run_with_the_flow_run_current_and_runner_classes_become_instances(runner):
    from procflow.context import get_run_context
    from procflow.exceptions import CancelledRun
    from procflow.task_runners import ThreadPoolTaskRunner

    seen = []

    def hook(flow_object, flow_run, state):
        seen.append((state.name, get_run_context().flow_run.name == flow_run.name))

    @flow(task_runner=runner, on_completion=[hook], on_running=[hook])
    def body():
        return returns_cancelled.submit()

    state = body(return_state=True)
    assert state.is_cancelled() and state.message == "1/1 states cancelled."
    with pytest.raises(CancelledRun):
        state.result(raise_on_failure=False).result()
    assert seen == [("Running", True)]  # a cancelled flow run does not complete

    @flow(task_runner=ThreadPoolTaskRunner, on_completion=[hook])
    def plain():
        return 1

    assert isinstance(plain.task_runner, ThreadPoolTaskRunner)
    assert plain() == 1 and seen[-1] == ("Completed", True)


def test_a_run_name_template_set_after_decorating_is_checked_when_called():
    @flow
    def my_flow():
        pass

    class NotATemplate:
        def format(*args, **kwargs):
            pass

    my_flow.flow_run_name = NotATemplate()
    with pytest.raises(TypeError, match="Expected string or callable for 'flow_run_name'; got NotATemplate instead."):
        my_flow()


def test_a_tasks_tags_are_its_own_set():
    tagged = task(tags=["tag1", "tag2"])(lambda: 1)
    copied = tagged.with_options(name="copy")
    tagged.tags.add("tag3")
    assert tagged.tags == {"tag1", "tag2", "tag3"}
    assert copied.tags == {"tag1", "tag2"}


def test_resolve_futures_to_states_and_results_at_any_depth(runner):
    import dataclasses

    from procflow.futures import FutureList, resolve_futures_to_results, resolve_futures_to_states

    @dataclasses.dataclass
    class Holder:
        value: object
        nested: list

    @flow(task_runner=runner)
    def body():
        one, two = double.submit(1), double.map([2, 3])
        expression = {"a": one, "b": [two], "c": Holder(one, [two[0]]), "d": 5}
        states = resolve_futures_to_states(expression)
        results = resolve_futures_to_results(expression)
        assert type(states["b"][0]) is list and not isinstance(states["b"][0], FutureList)
        return (states["a"].result(), [s.result() for s in states["b"][0]], states["c"].value.is_completed(),
                results, resolve_futures_to_results([1, 2]))

    a, b, completed, results, plain = body()
    assert (a, b, completed, plain) == (2, [4, 6], True, [1, 2])
    assert results["a"] == 2 and results["b"] == [[4, 6]] and results["c"].nested == [4] and results["d"] == 5


def test_a_flows_default_version_is_a_hash_of_its_source_file():
    from procflow.utilities.hashing import file_hash

    @flow
    def versioned():
        return 1

    assert versioned.version == file_hash(__file__)
    assert flow(version="2")(versioned.fn).version == "2"
    assert flow(print).version is None  # no source file: no version
