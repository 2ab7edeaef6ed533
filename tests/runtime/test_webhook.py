"""POST /webhook and GET /health, as the platform and Azure call them.

The contract comes from the platform's own sources (repository Unique-AG/ai): the documented example
events and delivery rules of unique_sdk/docs/webhooks.md, and unique_sdk's own signature check
(unique_sdk/_webhook.py), which the app must agree with.
"""

from __future__ import annotations

import io
import json
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import unique_sdk
from flask.testing import FlaskClient
from sdk_runtime import dispatch, webhook
from sdk_runtime.events import USER_MESSAGE_CREATED, ChatRequest, Event
from sdk_runtime.settings import RuntimeSettings
from sdk_runtime.signing import sign
from sdk_runtime.testing import FakePlatform

from .conftest import MODULE, SECRET, AppFactory, Recorder, TeamPackage, event, post, reply_of, runtime_settings, signed

MAX_AGE = RuntimeSettings().webhook_max_age


def documented_user_message_created(created_at: str) -> dict[str, Any]:
    """unique_sdk/docs/webhooks.md, "User Message Created", field for field (a fresh createdAt)."""
    return {
        "id": "evt_...",
        "version": "1.0.0",
        "event": "unique.chat.user-message.created",
        "createdAt": created_at,
        "userId": "...",
        "companyId": "...",
        "payload": {"chatId": "chat_...", "assistantId": "assistant_...", "text": "Hello, how can I help you?"},
    }


def documented_external_module_chosen(created_at: str) -> dict[str, Any]:
    """unique_sdk/docs/webhooks.md, "External Module Chosen", field for field (a fresh createdAt);
    note the docs' `chatid`, where the SDK's examples and unique_toolkit write `chatId`."""
    return {
        "id": "evt_...",
        "version": "1.0.0",
        "event": "unique.chat.external-module.chosen",
        "createdAt": created_at,
        "userId": "...",
        "companyId": "...",
        "payload": {
            "name": "example-sdk",
            "description": "Example SDK",
            "configuration": {},
            "chatid": "chat_...",
            "assistantId": "assistant_...",
            "userMessage": {"id": "msg_...", "text": "Hello World!", "createdAt": "2024-01-01T00:00:00.000Z"},
            "assistantMessage": {"id": "msg_...", "createdAt": "2024-01-01T00:00:00.000Z"},
        },
    }


def now_seconds() -> str:
    return str(int(time.time()))  # as the docs write it: unix seconds, as a string


def test_health_answers_ok(client: FlaskClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert response.headers["X-Request-Id"]


def test_documented_external_module_event_is_accepted_and_handled(make_app: AppFactory, recorder: Recorder) -> None:
    client = make_app(runtime_settings(endpoint_secret=SECRET, module_names=("example-sdk",)), recorder).test_client()
    body, headers = signed(documented_external_module_chosen(now_seconds()))
    response = post(client, body, headers)
    assert response.status_code == 202, response.data
    [handled] = recorder.wait_for(1)
    chat = ChatRequest.from_event(handled)
    assert (chat.chat_id, chat.assistant_message_id, chat.user_text) == ("chat_...", "msg_...", "Hello World!")


def test_documented_user_message_event_is_acknowledged(client: FlaskClient, recorder: Recorder) -> None:
    body, headers = signed(documented_user_message_created(now_seconds()))
    response = post(client, body, headers)
    assert response.status_code == 200  # 2xx: delivered; this app handles external-module events only
    assert reply_of(response)["status"] == "ignored"
    assert recorder.events == []


@pytest.mark.parametrize(
    "created_at",
    [
        lambda: int(time.time()),
        lambda: str(int(time.time())),
        lambda: int(time.time() * 1000),
        lambda: str(int(time.time() * 1000)),
        lambda: time.time(),
        lambda: datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        lambda: datetime.now(UTC).astimezone(datetime.now().astimezone().tzinfo).isoformat(),
        lambda: datetime.now(UTC).replace(tzinfo=None).isoformat(),
        lambda: None,
    ],
    ids=[
        "seconds",
        "seconds-text",
        "milliseconds",
        "milliseconds-text",
        "float",
        "iso-z",
        "iso-offset",
        "iso-naive",
        "absent",
    ],
)
def test_every_created_at_the_platform_writes_is_accepted(
    client: FlaskClient, recorder: Recorder, created_at: Any
) -> None:
    data = event(createdAt=created_at())
    if data["createdAt"] is None:
        del data["createdAt"]
    response = post(client, *signed(data))
    assert response.status_code == 202, response.data
    assert [e.id for e in recorder.wait_for(1)] == [data["id"]]


@pytest.mark.parametrize("name", ["chatId", "chatid"])
def test_chat_id_is_read_in_both_spellings(client: FlaskClient, recorder: Recorder, name: str) -> None:
    data = event()
    data["payload"][name] = data["payload"].pop("chatId")
    assert post(client, *signed(data)).status_code == 202
    assert recorder.wait_for(1)[0].chat_id == "chat_1"


# ---- Signatures: the app and unique_sdk decide alike --------------------------------------------


def sdk_accepts(body: bytes, signature: str | None, created_at: str | None) -> bool:
    try:
        unique_sdk.Webhook.construct_event(body, signature, created_at, SECRET, MAX_AGE)
    except unique_sdk.SignatureVerificationError:
        return False
    return True


SignatureCase = Callable[[bytes, str], tuple[str | None, str | None]]
SIGNATURE_CASES: dict[str, SignatureCase] = {
    "good": lambda body, ts: (sign(body, SECRET), ts),
    "wrong-secret": lambda body, ts: (sign(body, "not-the-secret"), ts),
    "other-body": lambda body, ts: (sign(body + b" ", SECRET), ts),
    "stale-header": lambda body, ts: (sign(body, SECRET), str(int(ts) - MAX_AGE - 5)),
    "future-header": lambda body, ts: (sign(body, SECRET), str(int(ts) + 3600)),
    "missing-signature": lambda body, ts: (None, ts),
    "missing-created-at": lambda body, ts: (sign(body, SECRET), None),
    "created-at-not-a-number": lambda body, ts: (sign(body, SECRET), "yesterday"),
    "uppercase-hex": lambda body, ts: (sign(body, SECRET).upper(), ts),
}


# A well-formed signature made with another secret is what a wrong or rotated ENDPOINT_SECRET looks like:
# 503, so the platform retries it (README, "The webhook"). Every other refusal is 401.
MISMATCHES = {"wrong-secret", "other-body"}
# Where the app deliberately decides otherwise than unique_sdk: the SDK accepts any delivery time in the
# future; the app refuses one more than FUTURE_SKEW ahead (it alone dates an event without createdAt).
STRICTER_THAN_THE_SDK = {"future-header"}


@pytest.mark.parametrize("case", SIGNATURE_CASES)
def test_the_app_and_unique_sdk_agree_on_every_signature(client: FlaskClient, recorder: Recorder, case: str) -> None:
    """Vectors: unique_sdk.Webhook.construct_event (unique_sdk/_webhook.py), the installed SDK itself."""
    body = json.dumps(event()).encode()
    signature, created_at = SIGNATURE_CASES[case](body, now_seconds())
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Unique-Signature"] = signature
    if created_at is not None:
        headers["X-Unique-Created-At"] = created_at
    accepted = sdk_accepts(body, signature, created_at)
    assert accepted == (case in {"good"} | STRICTER_THAN_THE_SDK), "the SDK's own decision changed"
    expected = 202 if accepted and case not in STRICTER_THAN_THE_SDK else 503 if case in MISMATCHES else 401
    assert (case, post(client, body, headers).status_code) == (case, expected)
    handled = recorder.wait_for(1, timeout=10 if expected == 202 else 0.5)
    assert len(handled) == (1 if expected == 202 else 0)


def test_a_non_ascii_signature_is_refused_where_the_sdk_crashes(client: FlaskClient) -> None:
    body, headers = signed(event())
    headers["X-Unique-Signature"] = "é" * 64
    with pytest.raises(TypeError):  # hmac.compare_digest on non-ASCII text
        unique_sdk.Webhook.construct_event(body, headers["X-Unique-Signature"], now_seconds(), SECRET, MAX_AGE)
    assert post(client, body, headers).status_code == 401


# ---- Freshness and repeats ----------------------------------------------------------------------


def iso_ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


@pytest.mark.parametrize(
    ("age", "status"),
    [(40 * 60, 202), (MAX_AGE + 60, 401), (-60, 202), (-3600, 401)],
    ids=["late-retry-40-min", "older-than-window", "slightly-ahead", "an-hour-ahead"],
)
def test_signed_created_at_must_be_within_the_window(client: FlaskClient, age: int, status: int) -> None:
    """A retry after the platform's backoff is still accepted; an old or future-dated event is not
    (the signature does not cover the delivery-time header, so a replay could refresh that)."""
    assert post(client, *signed(event(createdAt=iso_ago(age)))).status_code == status


def test_a_repeated_delivery_is_handled_once(client: FlaskClient, recorder: Recorder) -> None:
    data = event()
    assert post(client, *signed(data)).status_code == 202
    replay = post(client, *signed(data))  # a fresh delivery-time header does not make it new
    assert replay.status_code == 200
    assert reply_of(replay)["status"] == "duplicate"
    recorder.wait_for(2, timeout=0.5)
    assert len(recorder.events) == 1


def test_repeats_are_caught_across_the_workers_of_a_replica(
    make_app: AppFactory, recorder: Recorder, tmp_path: Path
) -> None:
    shared = runtime_settings(endpoint_secret=SECRET, module_names=(MODULE,), delivered_ids_dir=str(tmp_path))
    first, second = make_app(shared, recorder).test_client(), make_app(shared, recorder).test_client()
    data = event()
    assert post(first, *signed(data)).status_code == 202
    assert post(second, *signed(data)).status_code == 200
    recorder.wait_for(2, timeout=0.5)
    assert len(recorder.events) == 1


@pytest.mark.parametrize(
    "data",
    [event(module="another_module"), event(event=USER_MESSAGE_CREATED), event(event="unique.other")],
    ids=["other-module", "user-message-created", "unknown-event"],
)
def test_events_for_others_are_acknowledged_and_ignored(
    client: FlaskClient, recorder: Recorder, data: dict[str, Any]
) -> None:
    data["createdAt"] = now_seconds()
    response = post(client, *signed(data))
    assert response.status_code == 200  # never 4xx: the platform would stop delivering
    assert reply_of(response)["status"] == "ignored"
    assert recorder.events == []


# ---- Malformed requests: 4xx with a reason, never 5xx or a traceback -----------------------------


def deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"id": "x"}',
        json.dumps(event(payload="nope")).encode(),
        json.dumps(event(createdAt="later")).encode(),
        json.dumps(event(createdAt=1e300)).encode(),
        json.dumps(event(createdAt=-5)).encode(),
        json.dumps(event(createdAt=10**400)).encode(),
        json.dumps(event(createdAt=True)).encode(),
        json.dumps(event()).replace('"createdAt": "', '"createdAt": NaN, "x": "').encode(),
        deep(50_000),
        '{"id": "é"}'.encode("latin-1"),
        b'{"id": "x", "event": "e", "n": ' + b"1" * 4301 + b"}",
    ],
    ids=[
        "not-json",
        "not-object",
        "missing-fields",
        "payload-not-object",
        "created-at-text",
        "created-at-1e300",
        "created-at-negative",
        "created-at-huge-int",
        "created-at-bool",
        "created-at-nan",
        "deep-json-50k",
        "not-utf-8",
        "number-over-4300-digits",
    ],
)
def test_a_signed_malformed_body_is_a_bad_request(client: FlaskClient, recorder: Recorder, body: bytes) -> None:
    headers = {"Content-Type": "application/json", "X-Unique-Signature": sign(body, SECRET)}
    response = post(client, body, headers | {"X-Unique-Created-At": now_seconds()})
    assert response.status_code == 400, response.data
    assert reply_of(response)["error"]
    assert recorder.events == []


def test_an_unsigned_malformed_body_is_unauthorized_before_it_is_parsed(client: FlaskClient) -> None:
    response = post(client, deep(50_000), {"Content-Type": "application/json"})
    assert response.status_code == 401


def test_a_body_over_the_limit_gets_413_without_being_read(make_app: AppFactory, recorder: Recorder) -> None:
    app = make_app(runtime_settings(endpoint_secret=SECRET, module_names=(MODULE,), webhook_max_bytes=1024), recorder)

    class Unreadable(io.RawIOBase):
        def readinto(self, buffer: Any) -> int:
            raise AssertionError("the body was read")

    environ = {"wsgi.input": Unreadable(), "CONTENT_LENGTH": str(10 * 1024 * 1024), "CONTENT_TYPE": "application/json"}
    response = app.test_client().post("/webhook", environ_overrides=environ)
    assert response.status_code == 413
    assert "1024 bytes" in reply_of(response)["error"]
    small = app.test_client().post("/webhook", data=b"x" * 1025, headers={"Content-Type": "application/json"})
    assert small.status_code == 413


def test_an_event_id_with_a_lone_surrogate_is_logged_as_valid_utf8(
    client: FlaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """JSON may escape a lone surrogate (`"\\ud800"`), which UTF-8 cannot encode: the log line that names
    the event id (here: the module-name mismatch) is still written, escaped, and the answer is unchanged."""
    data = event(module="another_module", id="evt_\ud800")
    response = post(client, *signed(data))
    assert (response.status_code, reply_of(response)["status"]) == (200, "ignored")
    out = capsys.readouterr()
    [line] = [line for line in out.out.splitlines() if "ignored: it is for module 'another_module'" in line]
    assert "evt_\\ud800" in line
    line.encode("utf-8")  # valid UTF-8: no surrogate left in the line
    assert "Logging error" not in out.err


# ---- A wrong or rotated secret: retried, logged, and a rotation window ---------------------------


def test_a_wrong_secret_gets_503_so_events_are_saved_once_the_secret_is_fixed(
    make_app: AppFactory, recorder: Recorder, tmp_path: Path
) -> None:
    """The platform signs with a new secret the app does not have yet: 503 (the platform retries), and
    the retry after the redeploy with the right secret is handled (not refused as a duplicate)."""
    ids = str(tmp_path / "ids")
    stale = make_app(runtime_settings(endpoint_secret="the-old-secret", delivered_ids_dir=ids), recorder)
    data = event()
    body, headers = signed(data, secret="the-new-secret")
    response = post(stale.test_client(), body, headers)
    assert (response.status_code, reply_of(response)["status"]) == (503, "signature mismatch")
    assert int(response.headers["Retry-After"]) > 0
    assert "wrong secret" in reply_of(response)["error"]
    fixed = make_app(runtime_settings(endpoint_secret="the-new-secret", delivered_ids_dir=ids), recorder)
    assert post(fixed.test_client(), body, headers).status_code == 202
    assert [e.id for e in recorder.wait_for(1)] == [data["id"]]


@pytest.mark.parametrize(
    ("signature", "status"),
    [(None, 401), ("not-hex", 401), ("A" * 64, 401), ("0" * 64, 503)],
    ids=["missing", "not-hex", "uppercase", "well-formed-other-secret"],
)
def test_only_a_well_formed_signature_of_another_secret_is_retried(
    client: FlaskClient, recorder: Recorder, signature: str | None, status: int
) -> None:
    """A missing or malformed signature is no configuration mistake of this app: 401, never retried."""
    body, headers = signed(event())
    del headers["X-Unique-Signature"]
    if signature is not None:
        headers["X-Unique-Signature"] = signature
    assert post(client, body, headers).status_code == status
    assert recorder.wait_for(1, timeout=0.3) == []


def test_a_wrong_secret_is_logged_at_most_once_a_minute_with_a_count(
    make_app: AppFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = [1000.0]
    app = make_app(runtime_settings(), Recorder())
    app.extensions["webhook"] = replace(
        app.extensions["webhook"], mismatches=webhook.MismatchLog(clock=lambda: clock[0])
    )
    client = app.test_client()

    def mismatches(count: int) -> list[str]:
        for _ in range(count):
            assert post(client, *signed(event(), secret="wrong")).status_code == 503
        return [line for line in capsys.readouterr().out.splitlines() if "signed with another secret" in line]

    [first] = mismatches(5)
    assert "1 deliveries" in first
    assert "UNIQUE_APP_ENDPOINT_SECRET_PREVIOUS" in first
    clock[0] += 59
    assert mismatches(3) == []
    clock[0] += 1
    [later] = mismatches(1)
    assert "8 deliveries" in later  # the 7 not logged, and this one


@pytest.mark.parametrize("signed_with", ["current", "previous"])
def test_during_a_rotation_the_previous_secret_verifies_too(
    make_app: AppFactory, recorder: Recorder, signed_with: str
) -> None:
    settings = RuntimeSettings.from_env(
        {"UNIQUE_APP_ENDPOINT_SECRET": "current", "UNIQUE_APP_ENDPOINT_SECRET_PREVIOUS": "previous"}
    )
    app = make_app(replace(settings, module_names=(MODULE,)), recorder)
    assert post(app.test_client(), *signed(event(), secret=signed_with)).status_code == 202
    assert post(app.test_client(), *signed(event(), secret="neither")).status_code == 503
    assert len(recorder.wait_for(1)) == 1


@pytest.mark.parametrize(
    "env",
    [{"UNIQUE_APP_ENDPOINT_SECRET_PREVIOUS": "old"}, {"ENDPOINT_SECRET_PREVIOUS": "old"}],
    ids=["toolkit-style", "sdk-style"],
)
def test_the_previous_secret_is_read_under_both_names(env: dict[str, str]) -> None:
    settings = RuntimeSettings.from_env({"ENDPOINT_SECRET": "new", **env})
    assert settings.endpoint_secrets == ("new", "old")
    assert "old" not in repr(settings)


# ---- Replays: the record survives a restart, and an unsigned delivery time cannot stretch it -------


@pytest.mark.parametrize(("ahead", "status"), [(60, 202), (3600, 401)], ids=["a-minute-ahead", "an-hour-ahead"])
def test_without_a_signed_created_at_the_delivery_time_may_not_be_far_ahead(
    client: FlaskClient, ahead: int, status: int
) -> None:
    data = event()
    del data["createdAt"]
    body, headers = signed(data, created_at=int(time.time()) + ahead)
    assert post(client, body, headers).status_code == status


def test_the_replay_record_outlives_every_accepted_delivery_time(make_app: AppFactory, recorder: Recorder) -> None:
    """An event without createdAt, delivered with a time FUTURE_SKEW ahead, stays fresh for
    WEBHOOK_MAX_AGE + FUTURE_SKEW: its id must be remembered at least that long."""
    app = make_app(runtime_settings(), recorder)
    ttl = app.extensions["webhook"].delivered._ttl
    assert ttl >= RuntimeSettings().webhook_max_age + webhook.FUTURE_SKEW.total_seconds()


# ---- No secret, no processing ------------------------------------------------------------------


def test_locally_without_a_secret_unsigned_events_are_handled(
    make_app: AppFactory, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    app = make_app(runtime_settings(endpoint_secret="", module_names=(MODULE,), deployed=False), recorder)
    assert "unsigned events are accepted" in capsys.readouterr().out
    response = app.test_client().post(
        "/webhook", data=json.dumps(event()), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 202
    assert len(recorder.wait_for(1)) == 1


def test_deployed_without_a_secret_nothing_is_acted_on_and_the_platform_retries(
    make_app: AppFactory, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    app = make_app(runtime_settings(endpoint_secret="", module_names=(MODULE,), deployed=True), recorder)
    assert "ENDPOINT_SECRET is not set" in capsys.readouterr().out
    unsigned = app.test_client().post(
        "/webhook", data=json.dumps(event()), headers={"Content-Type": "application/json"}
    )
    body, headers = signed(event(), secret="anything")
    forged = app.test_client().post("/webhook", data=body, headers=headers)
    for response in (unsigned, forged):
        assert response.status_code == 503  # retried by the platform, so no event is lost until the redeploy
        assert int(response.headers["Retry-After"]) > 0
    log = capsys.readouterr().out
    assert "Put the platform's signing secret for this webhook into UNIQUE_APP_ENDPOINT_SECRET" in log
    recorder.wait_for(1, timeout=0.5)
    assert recorder.events == []


# ---- Background handling: threads for what runs, as many again waiting, then 503 ----------------


def test_a_full_pool_answers_503_and_the_retry_succeeds(make_app: AppFactory, recorder: Recorder) -> None:
    release = threading.Event()

    def slow(handled: Event) -> None:
        release.wait(10)
        recorder(handled)

    settings = runtime_settings(endpoint_secret=SECRET, module_names=(MODULE,), handler_threads=1, handler_timeout=3600)
    app = make_app(settings, slow)
    assert app.extensions["webhook"].pool.capacity == 2  # one running, one waiting for the thread
    client = app.test_client()
    first, second, third = event(), event(), event()
    assert post(client, *signed(first)).status_code == 202
    assert post(client, *signed(second)).status_code == 202
    busy = post(client, *signed(third))
    assert busy.status_code == 503  # retried by the platform, unlike 4xx
    assert busy.headers["Retry-After"]
    release.set()
    recorder.wait_for(1)
    deadline = time.monotonic() + 10
    while (status := post(client, *signed(third)).status_code) == 503 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status == 202
    assert len(recorder.wait_for(3)) == 3


def test_capacity_does_not_depend_on_handler_timeout(make_app: AppFactory) -> None:
    """Admission is what the threads can answer (twice the threads), not what fits in the drain budget:
    an event still unanswered at shutdown gets an apology (test_shutdown.py)."""
    for timeout in (1, 20, 3600):
        settings = runtime_settings(handler_threads=4, handler_timeout=timeout)
        assert make_app(settings, Recorder()).extensions["webhook"].pool.capacity == 8


def test_a_stopping_replica_takes_no_new_events(client: FlaskClient, recorder: Recorder) -> None:
    dispatch.stop_accepting()  # what the gunicorn worker does on SIGTERM
    response = post(client, *signed(event()))
    assert response.status_code == 503
    assert reply_of(response)["status"] == "stopping"
    assert recorder.events == []


def test_concurrent_requests_are_each_handled_once(make_app: AppFactory, recorder: Recorder) -> None:
    events = [event() for _ in range(64)]
    settings = runtime_settings(endpoint_secret=SECRET, module_names=(MODULE,), handler_timeout=1)
    app = make_app(settings, recorder)

    def deliver(data: dict[str, Any]) -> int:
        status: int = post(app.test_client(), *signed(data)).status_code
        return status

    with ThreadPoolExecutor(max_workers=8) as pool:  # gunicorn's 2 workers x 4 threads, in one process
        statuses = list(pool.map(deliver, events))
    assert statuses == [202] * len(events)
    handled = recorder.wait_for(len(events))
    assert sorted(e.id for e in handled) == sorted(e["id"] for e in events)


def test_a_handler_that_cannot_load_gets_503_so_the_platform_retries(
    make_app: AppFactory,
    platform: FakePlatform,
    team_package: TeamPackage,
    capsys: pytest.CaptureFixture[str],
) -> None:
    package = team_package("raise ImportError('a bug in handler.py')\n")
    settings = runtime_settings(api_key="k", app_id="a", platform_url=platform.url)
    client = make_app(settings, package=package).test_client()
    data = event()
    response = post(client, *signed(data))
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    log = capsys.readouterr().out
    assert f"event {data['id']}: the handler cannot be loaded" in log
    assert "Traceback" in log
    folder = Path(sys.modules[package].__file__ or "").parent
    (folder / "handler.py").write_text("def handle(chat, settings):\n    chat.complete('fixed')\n")
    sys.modules.pop(f"{package}.handler", None)
    assert post(client, *signed(data)).status_code == 202  # the retry, once it loads, is not a duplicate
    [completion] = platform.wait_for(1)  # and the fixed handler answered in the chat
    assert completion.body["text"] == "fixed"


def test_secrets_never_reach_the_logs(client: FlaskClient, capsys: pytest.CaptureFixture[str]) -> None:
    post(client, *signed(event(), secret="wrong"))
    post(client, *signed(event()))
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err


def test_a_failing_handler_is_logged_with_its_event_id_and_later_events_are_handled(
    make_app: AppFactory, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    def handler(handled: Event) -> None:
        if handled.chat_id == "chat_boom":
            raise RuntimeError("handler bug")
        recorder(handled)

    app = make_app(runtime_settings(endpoint_secret=SECRET, module_names=(MODULE,)), handler)
    client = app.test_client()
    failing, fine = event(), event()
    failing["payload"]["chatId"] = "chat_boom"
    for data in (failing, fine):
        assert post(client, *signed(data)).status_code == 202
    assert [e.id for e in recorder.wait_for(1)] == [fine["id"]]
    app.extensions["webhook"].pool.drain(time.monotonic() + 10)
    out = capsys.readouterr().out
    assert f"event {failing['id']}: handler failed" in out  # the pool's last resort: answering catches first
    assert "RuntimeError: handler bug" in out
