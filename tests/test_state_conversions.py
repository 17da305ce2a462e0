"""Prefect's helpers that make states from values and errors (`procflow.states`,
`procflow._internal.states`), and states whose data is a record of a result store."""

import asyncio
import signal
from pathlib import Path

import pytest

from procflow._internal.states import (
    exception_to_crashed_state_sync,
    exception_to_failed_state_sync,
    return_value_to_state_sync,
)
from procflow.exceptions import TerminationSignal
from procflow.results import ResultRecord, ResultStore
from procflow.states import (
    Cancelled,
    Completed,
    Failed,
    Pending,
    Running,
    get_state_exception,
    return_value_to_state,
)


@pytest.fixture
def store(tmp_path):
    return ResultStore(result_storage=tmp_path / "store")


def test_a_plain_value_becomes_completed_with_a_record_that_is_written_only_when_asked(store):
    kept = return_value_to_state_sync({"rows": 3}, store)
    assert kept.is_completed() and isinstance(kept.data, ResultRecord)
    assert kept.result() == {"rows": 3}
    assert not Path(kept.data.metadata.storage_key).exists()

    written = return_value_to_state_sync([1, 2], store, key="totals", write_result=True)
    assert Path(written.data.metadata.storage_key) == store.directory / "totals"
    assert store.read("totals").result == [1, 2]


def test_states_given_back_are_aggregated_with_prefects_messages(store):
    assert return_value_to_state_sync([Completed(), Completed()], store).message == "All states completed."
    failed = return_value_to_state_sync([Completed(), Failed(message="x"), Failed(message="y")], store)
    assert failed.is_failed() and failed.message == "2/3 states failed."
    assert len(failed.result(raise_on_failure=False)) == 3
    unfinished = return_value_to_state_sync([Completed(), Running(), Pending()], store)
    assert unfinished.is_failed() and unfinished.message == "2/3 states are not final."
    cancelled = return_value_to_state_sync([Completed(), Cancelled()], store)
    assert cancelled.is_cancelled() and cancelled.message == "1/2 states cancelled."


def test_a_state_made_by_hand_is_kept_and_a_generator_becomes_a_list(store):
    made = Completed(data="hello")
    assert return_value_to_state_sync(made, store) is made
    assert made.result() == "hello" and isinstance(made.data, ResultRecord)

    def numbers():
        yield from (1, 2, 3)

    assert return_value_to_state_sync(numbers(), store).result() == [1, 2, 3]
    assert asyncio.run(return_value_to_state("awaited", store)).result() == "awaited"


def test_an_error_becomes_a_failed_state_that_is_not_retried():
    with pytest.raises(ValueError, match="no active exception"):
        exception_to_failed_state_sync()
    try:
        raise RuntimeError("disk full")
    except RuntimeError:
        state = exception_to_failed_state_sync(message="While loading:")
    assert state.is_failed() and state.message == "While loading: RuntimeError: disk full"
    assert state.state_details.retriable is False
    assert isinstance(state.data, RuntimeError)


@pytest.mark.parametrize(("error", "words"), [
    (KeyboardInterrupt(), "aborted by an interrupt signal"),
    (SystemExit(1), "aborted by Python system exit call"),
    (TerminationSignal(signal.SIGTERM), "aborted by a termination signal"),
    (ValueError("bad row"), "interrupted by an unexpected exception: ValueError: bad row"),
])
def test_an_error_from_outside_the_code_becomes_crashed_with_what_happened(error, words):
    state = exception_to_crashed_state_sync(error)
    assert state.is_crashed() and words in state.message and state.data is error


def test_a_failed_state_whose_error_is_in_the_store_raises_it_when_read_back(store):
    record = store.create_result_record(ValueError("persisted error"))
    store.persist_result_record(record)
    state = Failed(data=record.metadata)  # only where the error is, as a state from elsewhere

    error = get_state_exception(state)
    assert isinstance(error, ValueError) and str(error) == "persisted error"
    with pytest.raises(ValueError, match="persisted error"):
        state.result()

    crashed = exception_to_crashed_state_sync(KeyError("gone"), result_store=store)
    assert isinstance(crashed.result(raise_on_failure=False), KeyError)


def test_a_record_read_back_by_its_path_is_only_loaded_from_this_users_private_directory(store, tmp_path):
    import os
    import shutil

    from procflow.results import ResultRecordMetadata

    record = store.create_result_record({"ok": 1}, key="k")
    store.persist_result_record(record)
    assert Completed(data=ResultRecordMetadata(storage_key=record.metadata.storage_key)).result() == {"ok": 1}

    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # anyone could have planted this pickle
    shutil.copy(record.metadata.storage_key, shared / "k")
    with pytest.raises(ValueError, match="No result record found"):
        Completed(data=ResultRecordMetadata(storage_key=str(shared / "k"))).result()

    missing = tmp_path / "not" / "there" / "k"
    with pytest.raises(ValueError, match="No result record found"):
        Completed(data=ResultRecordMetadata(storage_key=str(missing))).result()
    assert not (tmp_path / "not").exists()  # reading makes no directory
