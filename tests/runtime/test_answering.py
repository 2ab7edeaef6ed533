"""The handler contract (sdk_runtime/answering.py, chat.py): what a team's `handle(chat, settings)` gets and
what the runtime guarantees around it, with handlers as teams write them, through the real webhook and the
real unique_sdk against the fake platform, which checks requests as the SDK sends them.

Ground truth: the platform completes an answer with `Message.modify(..., completedAt=<ISO 8601 text>)`
(unique_sdk's changelog: a datetime is not serializable) and re-enables the chat input on
`stoppedStreamingAt` (unique_toolkit's chat_service `signal_streaming_stopped`, repository Unique-AG/ai).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sdk_runtime.answering import HandlerContractError, load_handler_of
from sdk_runtime.chat import APOLOGY, TIMEOUT_APOLOGY
from sdk_runtime.testing import Harness, Recorded

from ..conftest import APP
from .conftest import APP_FOLDER, TeamPackage

TEMPLATE_PACKAGE = APP_FOLDER / "{{app_name}}"
EXAMPLE_HANDLER = (TEMPLATE_PACKAGE / "handler.py").read_text()
EXAMPLE_SETTINGS = (TEMPLATE_PACKAGE / "settings.py").read_text()

ONLY_COMPLETES = """
from sdk_runtime import Chat

def handle(chat: Chat, settings: object) -> None:
    chat.complete(f"You wrote {len(chat.user_text)} characters.")
"""
RAISES = """
def handle(chat, settings):
    raise RuntimeError("a bug in the handler")
"""
SEARCHES = """
import unique_sdk
from sdk_runtime import Chat

def handle(chat: Chat, settings: object) -> None:
    found = unique_sdk.Search.create(
        user_id=chat.user_id, company_id=chat.company_id, chatId=chat.chat_id,
        searchString=chat.user_text, searchType="COMBINED",
    )
    chat.write(f"{len(found)} documents match.")
"""
OUTLIVES_ITS_TIMEOUT = """
import time
from sdk_runtime import Chat, ChatClosed

def handle(chat: Chat, settings: object) -> None:
    time.sleep(2.5)
    try:
        chat.complete("too late")
    except ChatClosed:
        open(chat.event.data["payload"]["configuration"]["closed_file"], "w").close()
        raise
"""
HANDLERS = {"only-completes": ONLY_COMPLETES, "raises": RAISES, "searches": SEARCHES, "example": EXAMPLE_HANDLER}


def assert_completes_now(call: Recorded, text: str | None = None) -> None:
    assert call.method == "PATCH"
    assert call.path.endswith("/messages/msg_assistant_1")
    assert call.body["chatId"] == "chat_1"
    for field in ("stoppedStreamingAt", "completedAt"):  # ISO 8601 text, the same instant
        assert timedelta(0) <= datetime.now(UTC) - datetime.fromisoformat(call.body[field]) < timedelta(minutes=1)
    assert call.body["stoppedStreamingAt"] == call.body["completedAt"]
    assert call.body.get("text") == text


def assert_sent_like_the_sdk(call: Recorded) -> None:
    assert call.headers["authorization"] == "Bearer key_1"
    assert call.headers["x-app-id"] == "app_1"
    assert (call.headers["x-user-id"], call.headers["x-company-id"]) == ("user_1", "company_1")
    assert call.headers["x-api-version"]
    assert call.headers["content-type"] == "application/json"


def test_the_example_streams_the_models_answer_then_the_runtime_completes_it(team_package: TeamPackage) -> None:
    package = team_package(EXAMPLE_HANDLER, EXAMPLE_SETTINGS)
    with Harness(package, env={"SYSTEM_PROMPT": "Be brief."}) as harness:
        delivery = harness.deliver(harness.event(text="What is a bond?"))
    assert delivery.status == 202
    stream, completion = delivery.calls
    assert (stream.method, stream.path) == ("POST", "/public/integrated/chat/stream-completions")
    assert stream.body == {
        "chatId": "chat_1",
        "assistantId": "assistant_1",
        "assistantMessageId": "msg_assistant_1",
        "userMessageId": "msg_user_1",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a bond?"}],
    }
    assert_completes_now(completion)  # no text: the streamed answer stays
    for call in delivery.calls:
        assert_sent_like_the_sdk(call)


def test_a_handler_that_only_completes_the_message_is_not_completed_twice(team_package: TeamPackage) -> None:
    with Harness(team_package(ONLY_COMPLETES)) as harness:
        harness.deliver(harness.event(text="four"))
        time.sleep(0.3)  # room for a second completion, which must not come
        calls = harness.platform.api_calls()
    [completion] = calls
    assert_completes_now(completion, "You wrote 4 characters.")


def test_a_handler_that_raises_leaves_an_apology_and_a_completed_message(
    team_package: TeamPackage, capsys: pytest.CaptureFixture[str]
) -> None:
    with Harness(team_package(RAISES)) as harness:
        data = harness.event()
        delivery = harness.deliver(data)
    [completion] = delivery.calls
    assert_completes_now(completion, APOLOGY)
    log = capsys.readouterr().out
    assert f"event {data['id']}: the handler failed in chat chat_1" in log
    assert "RuntimeError: a bug in the handler" in log


def test_a_handler_calling_another_platform_api_gets_a_configured_sdk(team_package: TeamPackage) -> None:
    with Harness(team_package(SEARCHES)) as harness:
        delivery = harness.deliver(harness.event(text="bonds"))
    search, write, completion = delivery.calls
    assert (search.method, search.path) == ("POST", "/public/search/search")
    assert search.body == {"chatId": "chat_1", "searchString": "bonds", "searchType": "COMBINED"}
    assert_sent_like_the_sdk(search)
    assert write.body == {"chatId": "chat_1", "text": "0 documents match."}  # written, still open
    assert_completes_now(completion)


def test_past_handler_timeout_the_message_gets_an_apology_and_the_late_handler_is_cut_off(
    team_package: TeamPackage, tmp_path: Path
) -> None:
    closed_file = tmp_path / "closed"
    with Harness(team_package(OUTLIVES_ITS_TIMEOUT), handler_timeout=1) as harness:
        data = harness.event()
        data["payload"]["configuration"] = {"closed_file": str(closed_file)}
        delivery = harness.deliver(data, timeout=10)
        assert delivery.text == TIMEOUT_APOLOGY
    assert closed_file.exists()  # the handler's late complete() raised ChatClosed
    assert [c for c in harness.platform.api_calls() if c.method == "PATCH"] == [delivery.completion]


def test_a_failing_platform_call_ends_in_an_apology(team_package: TeamPackage) -> None:
    with Harness(team_package(EXAMPLE_HANDLER, EXAMPLE_SETTINGS)) as harness:
        harness.platform.failures["/integrated/chat/stream-completions"] = 422
        delivery = harness.deliver(harness.event())
    assert delivery.streamed
    assert_completes_now(delivery.calls[-1], APOLOGY)


def test_an_event_without_the_chat_fields_is_refused_by_name_and_never_handled(team_package: TeamPackage) -> None:
    with Harness(team_package(RAISES)) as harness:
        data = harness.event()
        del data["payload"]["assistantMessage"], data["payload"]["chatId"]
        delivery = harness.deliver(data)
    assert delivery.status == 400  # no retry can add them, and without them there is no message to answer
    assert "payload.chatId, payload.assistantMessage.id" in delivery.reply["error"]
    assert delivery.calls == []


@pytest.mark.parametrize(
    ("handler", "problem"),
    [
        (
            "from .events import ChatRequest, Event\n\ndef handle_event(event, settings):\n    pass\n",
            "it imports {package}.events, which moved to sdk_runtime",
        ),
        ("def handle_event(event, settings):\n    pass\n", "it defines handle_event(event, settings)"),
    ],
    ids=["imports", "signature"],
)
def test_a_handler_written_for_0_2_0_is_refused_with_what_to_change(
    team_package: TeamPackage, handler: str, problem: str
) -> None:
    package = team_package(handler)
    with pytest.raises(HandlerContractError) as refused:
        load_handler_of(package)
    message = str(refused.value)
    assert problem.format(package=package) in message
    assert "def handle(chat: Chat, settings: Settings) -> None" in message
    assert "run `copier update` again" in message


@pytest.mark.slow
@pytest.mark.parametrize("handler", HANDLERS)
def test_the_generated_apps_own_tests_pass_for_any_handler_with_the_documented_signature(
    monorepo: Path, tmp_path: Path, handler: str
) -> None:
    """The app's tests (tests/test_handler.py, as generated) with its handler.py replaced, run as check_app
    runs them: pytest in the app folder, with the runtime's plugin from the app's conftest.py."""
    app = tmp_path / APP
    subprocess.run(["cp", "-r", str(monorepo / APP), str(app)], check=True)
    (app / APP / "handler.py").write_text(HANDLERS[handler])
    environment = {k: v for k, v in os.environ.items() if k != "ENCRYPTED_ENV_FILE"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=app,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_an_edited_runtime_stops_the_apps_tests_with_what_to_do(monorepo: Path, tmp_path: Path) -> None:
    app = tmp_path / APP
    subprocess.run(["cp", "-r", str(monorepo / APP), str(app)], check=True)
    with (app / "sdk_runtime" / "webhook.py").open("a") as file:
        file.write("# a local fix\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=app,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 4  # pytest's usage error: one line, no traceback
    said = result.stdout + result.stderr
    assert "sdk_runtime/ is the template's and was edited (webhook.py)" in said
    assert said.count("was edited") == 1
    assert "Traceback" not in said


UNREACHABLE = """
from sdk_runtime import Chat

def handle(chat: Chat, settings: object) -> None:
    chat.stream_completion([{"role": "user", "content": chat.user_text}])
"""


def test_a_platform_that_cannot_be_reached_is_one_line_per_attempt_with_its_cause(
    team_package: TeamPackage, capsys: pytest.CaptureFixture[str]
) -> None:
    """unique_sdk retries 3 times and calls every failure `http_status=500`; the log says what happened."""
    with Harness(team_package(UNREACHABLE)) as harness:
        harness.platform.__exit__(None, None, None)  # nothing listens there any more: connection refused
        delivery = harness.deliver(harness.event(), timeout=30)
    assert delivery.status == 202
    log = capsys.readouterr().out
    retries = [line for line in log.splitlines() if "platform call failed, retrying" in line]
    assert len(retries) == 4  # 2 retries of the model call, 2 of the apology's
    assert all(line.endswith("connection refused") for line in retries), retries
    assert "a platform call failed in chat chat_1 (connection refused); the message gets an apology" in log
    assert "could not complete message msg_assistant_1 in chat chat_1: connection refused" in log
    assert "Traceback" not in log
    assert "http_status=500" not in log
    assert len(log.splitlines()) <= 10
