"""Flows named by an entrypoint (`script.py:name`, `script.py:Class.method`, `module.name`), as
Prefect's deployment tools load them, and loaded from a script whose imports are missing here."""

from __future__ import annotations

import logging
import sys
import textwrap

import pytest

from procflow.exceptions import MissingFlowError, PrefectException, ScriptError
from procflow.flows import (
    Flow,
    is_entrypoint_async,
    load_flow_arguments_from_entrypoint,
    load_flow_from_entrypoint,
    load_function_and_convert_to_flow,
    safe_load_flow_from_entrypoint,
)


def script(tmp_path, source, name="flows.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


DOGS = """
    from procflow import flow, task

    @task
    def bark(times):
        return "woof!" * times

    @flow
    def dog(times: int = 1):
        return bark.submit(times).result()

    class Kennel:
        @flow
        @staticmethod
        def puppy():
            return "yip"

        @flow
        @classmethod
        def elder(cls):
            return cls.__name__

    def plain():
        return "not a flow"
"""


def test_a_flow_a_method_flow_and_a_module_flow_load_and_run(tmp_path, monkeypatch):
    path = script(tmp_path, DOGS)
    dog = load_flow_from_entrypoint(f"{path}:dog")
    assert isinstance(dog, Flow) and dog(times=2) == "woof!woof!"  # its task ran in a worker process
    assert load_flow_from_entrypoint(f"{path}:Kennel.puppy")() == "yip"
    assert load_flow_from_entrypoint(f"{path}:Kennel.elder")() == "Kennel"
    script(tmp_path, DOGS, name="kennel_module.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_flow_from_entrypoint("kennel_module.dog")(times=1) == "woof!"
    sys.modules.pop("kennel_module", None)


def test_what_is_missing_or_not_a_flow_is_refused_by_name(tmp_path):
    path = script(tmp_path, DOGS)
    with pytest.raises(MissingFlowError, match="'cat' not found in"):
        load_flow_from_entrypoint(f"{path}:cat")
    with pytest.raises(MissingFlowError, match="'plain' is not a flow"):
        load_flow_from_entrypoint(f"{path}:plain")
    converted = load_function_and_convert_to_flow(f"{path}:plain")
    assert isinstance(converted, Flow) and converted.log_prints is True and converted() == "not a flow"
    with pytest.raises(RuntimeError, match="'cat' not found"):
        load_function_and_convert_to_flow(f"{path}:cat")


MISSING_IMPORTS = """
    import os
    from procflow import flow
    from not_installed_here import Frame, DEFAULT_ROWS, make_name

    open(os.environ["MARKER"], "w").close()  # a statement safe loading never runs
    version = "2.1"

    @flow(name=f"nightly-{version}", description="Loads the night's rows")
    def nightly(frame: Frame, rows: int = DEFAULT_ROWS, *, label: str = "x"):
        return frame, rows, label

    @flow(name=make_name())
    def unnamed():
        pass

    if __name__ == "__main__":
        open(os.environ["MARKER"], "w").close()
"""


def test_a_script_whose_imports_are_missing_gives_a_flow_made_from_its_source(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    monkeypatch.setenv("MARKER", str(marker))
    path = script(tmp_path, MISSING_IMPORTS)
    with pytest.raises(ScriptError, match="encountered an exception: ModuleNotFoundError") as refused:
        load_flow_from_entrypoint(f"{path}:nightly", use_placeholder_flow=False)
    assert isinstance(refused.value, PrefectException) and isinstance(refused.value.user_exc, ImportError)
    marker.unlink(missing_ok=True)  # that load ran the script up to its failing import only
    loaded = load_flow_from_entrypoint(f"{path}:nightly")
    assert (loaded.name, loaded.description) == ("nightly-2.1", "Loads the night's rows")
    assert loaded("frame") == ("frame", None, "x")  # the default that needs the missing import is None
    assert safe_load_flow_from_entrypoint(f"{path}:unnamed") is None  # its decorator needs the import
    assert not marker.exists()  # neither the top-level call nor the __main__ block ran
    with pytest.raises(ValueError, match="Could not find object 'absent'"):
        safe_load_flow_from_entrypoint(f"{path}:absent")


def test_flow_arguments_are_read_from_the_source(tmp_path, caplog):
    path = script(tmp_path, MISSING_IMPORTS)
    assert load_flow_arguments_from_entrypoint(f"{path}:nightly") == {
        "name": "nightly-2.1", "description": "Loads the night's rows"}
    with caplog.at_level(logging.INFO, logger="procflow.entrypoints"):
        assert load_flow_arguments_from_entrypoint(f"{path}:unnamed") == {"name": "unnamed"}
    assert "Failed to parse @flow argument: `name=make_name()`" in caplog.text
    async_script = script(tmp_path, "from procflow import flow\n@flow\nasync def later_job():\n    pass\n", "a.py")
    assert load_flow_arguments_from_entrypoint(f"{async_script}:later_job") == {"name": "later-job"}
    assert is_entrypoint_async(f"{async_script}:later_job") and not is_entrypoint_async(f"{path}:nightly")
