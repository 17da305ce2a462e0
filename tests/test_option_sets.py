"""A task's and a flow's options are one frozen, checked value (`option_sets.py`).

No processes: these run in milliseconds. What users see: `with_options` gives a copy checked as
the decorator checks, sharing nothing mutable with the original; Prefect's attributes read and
assign as before, and assigning one never changes another task made from the same options.
"""

from __future__ import annotations

import dataclasses

import pytest

from procflow import flow, task
from procflow.caching import NotSet
from procflow.option_sets import FlowOptions, TaskOptions


@task(retries=2, retry_delay_seconds=[1, 2], tags=["nightly"], timeout_seconds=30)
def double(x):
    return 2 * x


def hook(task_, run, state):
    pass


def test_the_options_are_frozen():
    assert isinstance(double.options, TaskOptions)
    with pytest.raises(dataclasses.FrozenInstanceError):
        double.options.retries = 5  # type: ignore[misc]


def test_with_options_checks_as_the_decorator_does_and_names_the_task():
    with pytest.raises(ValueError, match=r"task 'double': retries must be a whole number of at least 0, got -1"):
        double.with_options(retries=-1)
    with pytest.raises(TypeError, match=r"task 'renamed': timeout_seconds must be a number of seconds"):
        double.with_options(name="renamed", timeout_seconds="soon")


def test_with_options_keeps_what_it_is_not_given_and_changes_what_it_is():
    changed = double.with_options(retries=5, name="twice")
    assert (changed.name, changed.retries, changed.retry_delay_seconds, changed.timeout_seconds) == \
        ("twice", 5, [1, 2], 30)
    assert (double.name, double.retries) == ("double", 2)
    assert changed(4) == 8  # still the function it wraps


def test_none_unsets_an_option_prefect_marks_not_set_and_keeps_one_it_does_not():
    quiet = double.with_options(log_prints=True).with_options(log_prints=None)
    assert quiet.log_prints is None
    assert double.with_options(timeout_seconds=None).timeout_seconds == 30


def test_a_copy_shares_no_tags_or_hook_lists_with_the_original():
    copy = double.with_options(on_failure=[hook])
    copy.tags.add("copy-only")
    copy.on_failure_hooks.append(hook)
    assert double.tags == {"nightly"}
    assert double.on_failure_hooks == [] and copy.on_failure_hooks == [hook, hook]


def test_a_hook_added_by_decorator_is_in_the_options_the_engine_reads():
    @task
    def step():
        return 1

    @step.on_completion
    def done(task_, run, state):
        pass

    assert step.options.state_hooks["on_completion"] == [done] == step.options.on_completion


def test_assigning_an_attribute_replaces_the_field_unchecked_as_prefect_does():
    copy = double.with_options()
    before = copy.options
    copy.task_run_name = 12  # Prefect's attributes take anything; the run that uses it fails
    assert copy.task_run_name == 12 and before.task_run_name is None
    assert double.task_run_name is None


def test_a_bad_task_run_name_assigned_later_fails_the_run_with_prefects_text():
    @task
    def step():
        return 1

    @flow
    def pipeline():
        return step()

    step.task_run_name = 12
    with pytest.raises(TypeError, match="Expected string or callable for 'task_run_name'; got int instead"):
        pipeline()


def test_caching_options_are_resolved_again_by_with_options(tmp_path):
    stored = double.with_options(result_storage=tmp_path)
    assert stored.persist_result is True and stored.result_storage == tmp_path
    assert double.persist_result is None and double.result_storage is None
    assert stored.with_options(cache_policy=NotSet).result_storage == tmp_path


def test_flow_options_are_checked_by_with_options_too():
    @flow(retries=1)
    def nightly():
        return 1

    assert isinstance(nightly.options, FlowOptions) and nightly.name == "nightly"
    with pytest.raises(ValueError, match=r"flow 'nightly': retries must be a whole number"):
        nightly.with_options(retries=-3)
    later = nightly.with_options(retry_delay_seconds=4, result_storage=None)
    assert (later.retries, later.retry_delay_seconds, nightly.retry_delay_seconds) == (1, 4, 0)
    assert later() == 1 and later.last_run is not None and nightly.last_run is None


def test_a_task_made_from_a_flow_keeps_its_own_options():
    @flow(log_prints=False)
    def child():
        return "child"

    wrapped = task(child, retries=1)
    assert isinstance(wrapped.options, TaskOptions) and wrapped.retries == 1
    assert wrapped.fn is child and child.options.log_prints is False  # calling it runs the flow
    assert wrapped() == "child" and child.last_run is not None
