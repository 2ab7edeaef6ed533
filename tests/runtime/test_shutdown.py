"""No chat left blocked: when the replica stops, every acknowledged event's message ends completed, with its
answer or with an apology, whether its handler was running or still waiting for a thread.

In-process here (the pool's drain, as the gunicorn worker calls it after SIGTERM); through gunicorn and a
real SIGTERM in test_server.py.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sdk_runtime.answering import OpenChats
from sdk_runtime.chat import SHUTDOWN_APOLOGY
from sdk_runtime.events import parse_event
from sdk_runtime.testing import FakePlatform, Recorded

from .conftest import AppFactory, TeamPackage, event, post, runtime_settings, signed
from .test_answering import EXAMPLE_HANDLER, EXAMPLE_SETTINGS

STREAM = "/integrated/chat/stream-completions"


def chat_event(number: int) -> dict[str, Any]:
    data = event()
    data["payload"]["assistantMessage"]["id"] = f"msg_assistant_{number}"
    return data


def completions(platform: FakePlatform) -> dict[str, Recorded]:
    """Assistant message id -> the call that completed it."""
    done: dict[str, Recorded] = {}
    for call in platform.api_calls():
        body = call.body if isinstance(call.body, dict) else {}
        if call.method == "PATCH" and body.get("completedAt") and body.get("stoppedStreamingAt"):
            assert call.path.rsplit("/", 1)[-1] not in done, "a message was completed twice"
            done[call.path.rsplit("/", 1)[-1]] = call
    return done


def test_at_shutdown_running_and_waiting_events_get_an_apology_and_the_waiting_one_never_starts(
    make_app: AppFactory, platform: FakePlatform, team_package: TeamPackage, capsys: pytest.CaptureFixture[str]
) -> None:
    platform.delays[STREAM] = 3.0  # a model answer that outlasts the drain below
    settings = runtime_settings(
        api_key="key_1", app_id="app_1", platform_url=platform.url, handler_threads=1, handler_timeout=60
    )
    app = make_app(settings, package=team_package(EXAMPLE_HANDLER, EXAMPLE_SETTINGS))
    client = app.test_client()
    running, waiting = chat_event(1), chat_event(2)
    assert post(client, *signed(running)).status_code == 202
    assert post(client, *signed(waiting)).status_code == 202  # waits for the one thread
    platform.wait_until(lambda calls: any(c.path.endswith(STREAM) for c in calls))

    cut = app.extensions["webhook"].pool.drain(time.monotonic() + 2)  # what SIGTERM leads to

    assert sorted(cut) == sorted([running["id"], waiting["id"]])
    done = completions(platform)
    assert sorted(done) == ["msg_assistant_1", "msg_assistant_2"]
    assert all(call.body["text"] == SHUTDOWN_APOLOGY for call in done.values())
    log = capsys.readouterr().out
    for data in (running, waiting):
        assert f"event {data['id']}: cut by shutdown (it was acknowledged); its message was completed" in log

    time.sleep(3.5)  # the model answers the running handler; the thread then takes the waiting event
    streamed = [c for c in platform.api_calls() if c.path.endswith(STREAM)]
    assert [c.body["assistantMessageId"] for c in streamed] == ["msg_assistant_1"]  # the waiting one never ran
    assert completions(platform) == done  # the late handler did not complete its message again


def test_events_that_finish_within_the_drain_keep_their_answer(
    make_app: AppFactory, platform: FakePlatform, team_package: TeamPackage
) -> None:
    platform.delays[STREAM] = 0.5
    settings = runtime_settings(api_key="key_1", app_id="app_1", platform_url=platform.url, handler_threads=2)
    app = make_app(settings, package=team_package(EXAMPLE_HANDLER, EXAMPLE_SETTINGS))
    client = app.test_client()
    events = [chat_event(number) for number in range(4)]
    assert [post(client, *signed(data)).status_code for data in events] == [202] * 4

    assert app.extensions["webhook"].pool.drain(time.monotonic() + 20) == []

    done = completions(platform)
    assert sorted(done) == [f"msg_assistant_{number}" for number in range(4)]
    assert all("text" not in call.body for call in done.values())  # the streamed answers stay


def test_an_apology_the_platform_refuses_is_logged_as_not_completed(
    make_app: AppFactory, platform: FakePlatform, team_package: TeamPackage, capsys: pytest.CaptureFixture[str]
) -> None:
    platform.delays[STREAM] = 5.0
    settings = runtime_settings(api_key="key_1", app_id="app_1", platform_url=platform.url, handler_threads=1)
    app = make_app(settings, package=team_package(EXAMPLE_HANDLER, EXAMPLE_SETTINGS))
    data = chat_event(1)
    assert post(app.test_client(), *signed(data)).status_code == 202
    platform.wait_until(lambda calls: any(c.path.endswith(STREAM) for c in calls))
    platform.failures["/messages/msg_assistant_1"] = 404  # not retried by the SDK

    assert app.extensions["webhook"].pool.drain(time.monotonic() + 2) == [data["id"]]

    log = capsys.readouterr().out
    assert f"event {data['id']}: could not complete message msg_assistant_1" in log
    assert f"event {data['id']}: not completed, cut by shutdown (it was acknowledged)" in log


def test_a_cut_that_comes_just_after_the_handler_returned_leaves_the_answer_alone(platform: FakePlatform) -> None:
    chats = OpenChats()
    answered = parse_event(json.dumps(chat_event(1)).encode())
    assert chats.open(answered) is not None
    chats.done(answered)  # the handler returned; the pool has not yet counted it as done

    assert chats.cut(answered) is True  # nothing to apologize for, and nothing is sent
    assert platform.api_calls() == []
