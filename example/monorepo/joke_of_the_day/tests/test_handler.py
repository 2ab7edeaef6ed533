"""The example handler answers like a real module: through the real unique_sdk, against the fake platform
on loopback, which checks the requests as the SDK sends them (paths, headers, JSON bodies)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from joke_of_the_day.events import InvalidEvent, parse_event
from joke_of_the_day.factory import load_handler
from joke_of_the_day.handler import APOLOGY
from joke_of_the_day.settings import Settings
from joke_of_the_day.testing import FakePlatform, Recorded, body_of

from .conftest import MODULE, AppFactory, event

API_PATH = "/public/chat-gen2"  # the platform's API base path (settings.DEFAULT_API_BASE)


def settings_for(platform: FakePlatform) -> Settings:
    return Settings(api_key="key_1", app_id="app_1", api_base=platform.url + API_PATH, module_name=MODULE)


def assert_sent_like_the_sdk(call: Recorded) -> None:
    assert call.headers["authorization"] == "Bearer key_1"
    assert call.headers["x-app-id"] == "app_1"
    assert call.headers["x-user-id"] == "user_1"
    assert call.headers["x-company-id"] == "company_1"
    assert call.headers["x-api-version"]
    assert call.headers["content-type"] == "application/json"


def assert_completed_just_now(call: Recorded, message_id: str = "msg_assistant_1") -> None:
    assert (call.method, call.path) == ("PATCH", f"{API_PATH}/messages/{message_id}")
    assert call.body["chatId"] == "chat_1"
    completed = datetime.fromisoformat(call.body["completedAt"])  # ISO 8601 text: the SDK cannot send a datetime
    assert timedelta(0) <= datetime.now(UTC) - completed < timedelta(minutes=1)


def test_the_example_streams_an_answer_then_completes_the_message(platform: FakePlatform, make_app: AppFactory) -> None:
    settings = settings_for(platform)
    make_app(settings)  # logging as in production
    load_handler(settings)(parse_event(body_of(event())), settings)

    stream, complete = platform.wait_for(2)
    assert (stream.method, stream.path) == ("POST", f"{API_PATH}/integrated/chat/stream-completions")
    assert stream.body == {
        "chatId": "chat_1",
        "assistantId": "assistant_1",
        "assistantMessageId": "msg_assistant_1",
        "userMessageId": "msg_user_1",
        "messages": [{"role": "user", "content": "Hello"}],
    }
    assert_completed_just_now(complete)
    assert "text" not in complete.body  # the streamed answer stays
    for call in (stream, complete):
        assert_sent_like_the_sdk(call)


def test_on_failure_the_message_gets_an_apology_is_completed_and_the_event_is_logged(
    platform: FakePlatform, make_app: AppFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    platform.failures["/integrated/chat/stream-completions"] = 422
    settings = settings_for(platform)
    make_app(settings)
    data = event()
    load_handler(settings)(parse_event(body_of(data)), settings)

    stream, apology = platform.wait_for(2)
    assert stream.path.endswith("/integrated/chat/stream-completions")
    assert_completed_just_now(apology)
    assert apology.body["text"] == APOLOGY
    assert_sent_like_the_sdk(apology)
    log = capsys.readouterr().out
    assert f"event {data['id']}: answering in chat chat_1 failed" in log
    assert "Traceback" in log


def test_an_event_without_the_chat_fields_is_refused_by_name(platform: FakePlatform) -> None:
    data = event()
    del data["payload"]["assistantMessage"], data["payload"]["chatId"]
    settings = settings_for(platform)
    with pytest.raises(InvalidEvent, match=r"has no payload\.chatId, payload\.assistantMessage\.id"):
        load_handler(settings)(parse_event(body_of(data)), settings)
    assert platform.api_calls() == []
