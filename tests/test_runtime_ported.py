"""Issue 16: `procflow.runtime` as Prefect 3.8's tests/runtime/ use it: attributes read at access,
overridden by `PREFECT__RUNTIME__...` variables, and run contexts a test enters by hand."""

from __future__ import annotations

import datetime

import pytest

from procflow import flow, tags, task
from procflow.client.schemas import FlowRun, TaskRun
from procflow.context import FlowRunContext, TaskRunContext, get_run_context
from procflow.flows import Flow
from procflow.runtime import deployment, flow_run, task_run
from procflow.tasks import Task


def test_unknown_attributes_fail_and_dir_lists_the_known_ones():
    for module in (flow_run, task_run, deployment):
        with pytest.raises(AttributeError, match="beep"):
            getattr(module, "beep")  # noqa: B009
        assert "id" in dir(module) and "foo" not in dir(module)


@pytest.mark.parametrize("module, section", [(flow_run, "FLOW_RUN"), (task_run, "TASK_RUN"),
                                             (deployment, "DEPLOYMENT")])
def test_an_environment_variable_adds_or_overrides_an_attribute_cast_to_its_type(monkeypatch, module, section):
    monkeypatch.setenv(f"PREFECT__RUNTIME__{section}__NEW_KEY", "foobar")
    assert module.new_key == "foobar"
    for value, text, expected in [(True, "False", False), (10, "20", 20), (10.5, "20.5", 20.5), ("foo", "bar", "bar"),
                                  (datetime.datetime(2022, 1, 1, tzinfo=datetime.timezone.utc), "2023-05-13 20:00:00",
                                   datetime.datetime(2023, 5, 13, 20, tzinfo=datetime.timezone.utc))]:
        monkeypatch.setitem(module.FIELDS, "mocked", lambda value=value: value)
        monkeypatch.setenv(f"PREFECT__RUNTIME__{section}__MOCKED", text)
        assert module.mocked == expected and type(module.mocked) is type(expected)
    monkeypatch.setitem(module.FIELDS, "mocked", lambda: [1, 2])
    with pytest.raises(ValueError, match="cannot be mocked"):
        getattr(module, "mocked")  # noqa: B009
    monkeypatch.setenv(f"PROCFLOW__RUNTIME__{section}__NEW_KEY", "ours")  # procflow's own prefix wins
    assert module.new_key == "ours"


def test_outside_a_run_every_attribute_is_empty(monkeypatch):
    assert (flow_run.id, flow_run.name, flow_run.flow_name, flow_run.parameters, flow_run.tags, flow_run.run_count,
            flow_run.parent_flow_run_id, flow_run.root_flow_run_id, flow_run.job_variables) == \
        (None, None, None, {}, [], 0, None, None, None)
    assert isinstance(flow_run.scheduled_start_time, datetime.datetime)
    assert (task_run.id, task_run.name, task_run.task_name, task_run.parameters, task_run.tags,
            task_run.run_count) == (None, None, None, {}, [], 0)
    assert (deployment.id, deployment.name, deployment.parameters, deployment.version) == (None, None, {}, None)
    monkeypatch.setenv("PREFECT__FLOW_RUN_ID", "foo")
    assert flow_run.id == "foo" and deployment.flow_run_id == "foo"


def test_a_context_entered_by_hand_is_what_runtime_reads():
    with FlowRunContext.model_construct(flow_run=FlowRun.model_construct(id="foo", run_count=10, name="bar"),
                                        flow=Flow(fn=lambda: None, name="named"), parameters={"x": 1}):
        assert (flow_run.id, flow_run.run_count, flow_run.name, flow_run.flow_name, flow_run.parameters) == \
            ("foo", 10, "bar", "named", {"x": 1})
        assert isinstance(get_run_context(), FlowRunContext)
    assert flow_run.run_count == 0
    with FlowRunContext.model_construct(flow_run=FlowRun.model_construct(job_variables={"foo": "bar"})):
        assert flow_run.job_variables == {"foo": "bar"}
    with TaskRunContext.model_construct(task_run=TaskRun.model_construct(flow_run_id="foo", id="t", name="n"),
                                        task=Task(fn=lambda: None, name="tn"), parameters={"y": 2}):
        assert (flow_run.id, task_run.id, task_run.name, task_run.task_name, task_run.parameters) == \
            ("foo", "t", "n", "tn", {"y": 2})
    assert task_run.id is None


def test_inside_real_runs_the_ids_names_tags_and_parents_are_the_runs():
    @task(tags=["t1"])
    def inner():
        return task_run.name, task_run.tags, task_run.run_count, flow_run.name

    @flow
    def child():
        return flow_run.id, flow_run.parent_flow_run_id, flow_run.root_flow_run_id

    @flow(flow_run_name="outer-run")
    def outer():
        return flow_run.id, flow_run.tags, flow_run.flow_version, child(), inner()

    with tags("a", "b"):
        outer_id, outer_tags, version, (child_id, parent_id, root_id), inner_seen = outer()
    assert child_id != outer_id and parent_id == outer_id and root_id == outer_id
    assert set(outer_tags) == {"a", "b"} and version == outer.version
    name, inner_tags, run_count, inner_flow_run = inner_seen
    assert name == "inner-0" and set(inner_tags) == {"a", "b", "t1"} and run_count == 1
    assert inner_flow_run == "outer-run"
