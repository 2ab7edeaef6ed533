"""A captured delivery replayed later runs the handler at most once within the window (issue 20, item 3):
per replica across restarts of the server without Azure Storage, across replicas and restarts with it."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from azure.data.tables import TableClient
from sdk_runtime.dispatch import DeliveredIds
from sdk_runtime.queueing import StorageSettings

from tools.azurite import Azurite

from .conftest import AppFactory, Recorder, event, post, reply_of, runtime_settings, signed
from .test_server import ServerFactory, serve  # noqa: F401  (the fixture: gunicorn with the rendered config)


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_replay_after_a_restart_of_the_server_is_not_handled_again(
    serve: ServerFactory,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """gunicorn with the rendered gunicorn.conf.py, stopped and started again: the same delivery, with a
    fresh delivery time, is acknowledged as a duplicate and its handler does not run again."""
    monkeypatch.delenv("WEBHOOK_DELIVERED_IDS_DIR", raising=False)
    data = event()
    first = serve()
    assert first.post_event(data) == 202
    wait_for(lambda: first.done() == [data["id"]])
    first.stop()
    second = serve()
    assert second.post_event(data) == 200  # signed() gives the replay a fresh X-Unique-Created-At
    assert second.post_event(event()) == 202  # and new events are still handled
    wait_for(lambda: len(second.done()) == 2)
    assert second.done().count(data["id"]) == 1
    second.stop()


def test_the_record_is_kept_on_a_restart_and_pruned_by_age(tmp_path: Path) -> None:
    directory = tmp_path / "ids"
    before = DeliveredIds(60, str(directory))
    assert before.first_time("evt_old")
    [old] = directory.iterdir()
    os.utime(old, (time.time() - 120, time.time() - 120))  # recorded two minutes ago, beyond the ttl
    assert before.first_time("evt_recent")
    restarted = DeliveredIds(60, str(directory))
    assert not restarted.first_time("evt_recent")
    assert restarted.first_time("evt_old")


def test_a_record_directory_someone_else_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "ids"
    shared.mkdir()
    shared.chmod(shared.stat().st_mode | stat.S_IWOTH)
    with pytest.raises(RuntimeError, match="owned by this user and writable by it alone"):
        DeliveredIds(60, str(shared))


@pytest.mark.slow
def test_with_azure_storage_a_replay_of_a_done_delivery_is_refused_after_a_restart(
    azurite: Azurite, make_app: AppFactory, recorder: Recorder
) -> None:
    """The table of done deliveries, shared by every replica: a replica started after the delivery was
    handled and recorded `done` (a restart, or another replica) takes the replay off the queue unrun."""
    settings = runtime_settings(
        storage=StorageSettings(connection_string=azurite.connection_string, queue="replays", table="replays")
    )
    data = event()
    first = make_app(settings, recorder)
    assert post(first.test_client(), *signed(data)).status_code == 202
    assert [e.id for e in recorder.wait_for(1)] == [data["id"]]
    first.extensions["webhook"].pool.drain(time.monotonic() + 10)  # the replica stops
    table = TableClient.from_connection_string(azurite.connection_string, "replays")
    wait_for(lambda: [e["State"] for e in table.list_entities()] == ["done"])
    restarted = make_app(settings, recorder)
    response = post(restarted.test_client(), *signed(data))  # the replay, with a fresh delivery time
    assert (response.status_code, reply_of(response)["status"]) == (202, "accepted")
    new = event()
    assert post(restarted.test_client(), *signed(new)).status_code == 202
    assert [e.id for e in recorder.wait_for(2)] == [data["id"], new["id"]]
    recorder.wait_for(3, timeout=1)
    assert len(recorder.events) == 2, "the replay ran the handler again"
