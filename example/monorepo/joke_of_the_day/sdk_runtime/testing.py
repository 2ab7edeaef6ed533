"""Doubles of the Unique platform and its clients, for your tests and local checks. A stable API:

- `make_event(module, text=...)`: an event as the platform sends it (unix seconds as text in
  `createdAt`, as documented); `signed_delivery(event, secret)`: its body and webhook headers.
- `FakePlatform`: the platform's public API and Event Socket on loopback. It records every request as
  the SDK sends it, refuses what the platform would (no API key, app, user or company header; a body
  that is not JSON), answers like the platform, and plays scripted Event Socket connections.
- `Harness`: your app (your handler, your settings) behind its real webhook, answering against a
  FakePlatform: `harness.deliver(event)` returns what the chat got (`Delivery`).
- `trickle()`: a slow client.
- `recording_app` (gunicorn target `sdk_runtime.testing:recording_app`): the runtime with a handler
  that takes RECORDING_APP_SECONDS and then appends the event id to RECORDING_APP_DONE_FILE.

The pytest fixtures of sdk_runtime.pytest_plugin wrap these. Standard library only, except `Harness`
(which builds the app) and `recording_app`.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .events import EXTERNAL_MODULE_CHOSEN
from .signing import delivery_headers

if TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient

    from .events import Event

REQUIRED_API_HEADERS = ("authorization", "x-app-id", "x-user-id", "x-company-id", "x-api-version")
STREAM_PATH = "/public/event-socket/events/stream"


def make_event(
    module: str, event: str = EXTERNAL_MODULE_CHOSEN, *, text: str = "Hello", **envelope: Any
) -> dict[str, Any]:
    """A fresh event with a new id for `module`, the user having written `text`; `envelope` replaces
    top-level fields."""
    now = time.time()
    iso = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now))
    data: dict[str, Any] = {
        "id": f"evt_{uuid.uuid4().hex}",
        "version": "1.0.0",
        "event": event,
        "createdAt": str(int(now)),
        "userId": "user_1",
        "companyId": "company_1",
        "payload": {
            "name": module,
            "description": "",
            "configuration": {},
            "chatId": "chat_1",
            "assistantId": "assistant_1",
            "userMessage": {"id": "msg_user_1", "text": text, "createdAt": iso},
            "assistantMessage": {"id": "msg_assistant_1", "createdAt": iso},
        },
    }
    data.update(envelope)
    return data


def body_of(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event).encode()


def signed_delivery(event: Mapping[str, Any], secret: str) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a webhook delivery of `event`, signed with `secret` as the platform signs."""
    body = body_of(event)
    return body, delivery_headers(body, secret, event)


@dataclass(frozen=True)
class Recorded:
    """One request the fake platform received."""

    method: str
    path: str
    target: str  # the request target exactly as sent (query not decoded)
    headers: dict[str, str]  # names in lower case
    body: Any  # parsed JSON, or None
    at: float  # time.monotonic() on arrival


@dataclass
class Stream:
    """One Event Socket connection: a status, then (data, id) messages, then close or stay silent."""

    messages: list[tuple[str, str | None]] = field(default_factory=list)
    status: int = 200
    then: str = "close"  # or "idle"


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # the default 5 drops connections of a burst (clients retry 1 s, 3 s later)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (the app stopped, or was killed, mid-request) is not the platform's
        error: no traceback for it. Anything else prints one, as the standard server does."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakePlatform:
    """The platform on 127.0.0.1:<port> (a free one by default); a context manager that stops it on exit."""

    def __init__(self, streams: list[Stream] | None = None, port: int = 0) -> None:
        self.streams = list(streams or [])  # one per connection; when used up, connections stay idle
        self.failures: dict[str, int] = {}  # path suffix -> status to answer instead, e.g. a 422
        self.delays: dict[str, float] = {}  # path suffix -> seconds before answering, e.g. a model's time
        self.requests: list[Recorded] = []
        self.stopped = threading.Event()
        self._changed = threading.Condition()
        self._server = _Server(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> FakePlatform:
        threading.Thread(target=self._server.serve_forever, name="fake-platform", daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stopped.set()
        self._server.shutdown()
        self._server.server_close()

    def api_calls(self) -> list[Recorded]:
        return [r for r in self.requests if r.path != STREAM_PATH]

    def wait_for(self, count: int, timeout: float = 10.0, *, api_only: bool = True) -> list[Recorded]:
        """The first `count` requests (API calls only, unless told) once they arrived, else all so far."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._selected(api_only)) >= count, timeout)
            return self._selected(api_only)

    def wait_until(self, done: Callable[[list[Recorded]], bool], timeout: float = 10.0) -> list[Recorded]:
        """The API calls once `done(calls)` holds, else all so far after `timeout` seconds."""
        with self._changed:
            self._changed.wait_for(lambda: done(self.api_calls()), timeout)
            return self.api_calls()

    def _selected(self, api_only: bool) -> list[Recorded]:
        return self.api_calls() if api_only else list(self.requests)

    def record(self, request: Recorded) -> None:
        with self._changed:
            self.requests.append(request)
            self._changed.notify_all()

    def next_stream(self) -> Stream | None:
        with self._changed:
            return self.streams.pop(0) if self.streams else None


def _handler_for(platform: FakePlatform) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._record(None)
            if urlsplit(self.path).path != STREAM_PATH:
                self._answer(404, {"error": "not found"})
            elif problem := _missing_headers(self.headers.keys(), ("authorization", "x-app-id", "x-company-id")):
                self._answer(401, {"error": problem})
            else:
                self._stream(platform.next_stream())

        def do_PATCH(self) -> None:
            self._api()

        def do_POST(self) -> None:
            self._api()

        def _api(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            self._record(body)
            path = urlsplit(self.path).path
            status = next((code for suffix, code in platform.failures.items() if path.endswith(suffix)), 0)
            delay = next((seconds for suffix, seconds in platform.delays.items() if path.endswith(suffix)), 0.0)
            if delay and platform.stopped.wait(delay):
                return
            if problem := _missing_headers(self.headers.keys(), REQUIRED_API_HEADERS):
                self._answer(401, {"error": problem})
            elif not isinstance(body, dict) or "application/json" not in self.headers.get("Content-Type", ""):
                self._answer(400, {"error": "the body must be a JSON object sent as application/json"})
            elif status:
                self._answer(status, {"error": {"message": "failure injected by the test"}})
            else:
                self._answer(200, _api_answer(self.command, path, body))

        def _record(self, body: Any) -> None:
            headers = {name.lower(): value for name, value in self.headers.items()}
            path = urlsplit(self.path).path
            platform.record(Recorded(self.command, path, self.path, headers, body, time.monotonic()))

        def _answer(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, stream: Stream | None) -> None:
            if stream is not None and stream.status != 200:
                self._answer(stream.status, {"error": "scripted failure"})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            for data, event_id in stream.messages if stream else []:
                self.wfile.write(_sse(data, event_id))
                self.wfile.flush()
            if stream is None or stream.then == "idle":
                platform.stopped.wait()
            self.close_connection = True

        def log_message(self, *_args: object) -> None:
            pass

    return Handler


def _missing_headers(given: Iterable[str], names: tuple[str, ...]) -> str:
    present = {name.lower() for name in given}
    missing = [name for name in names if name not in present]
    return f"missing headers: {', '.join(missing)}" if missing else ""


def _api_answer(method: str, path: str, body: Mapping[str, Any]) -> Any:
    """What the platform answers, in the shape the SDK reads."""
    if method == "POST" and path.endswith("/search/search"):
        return []  # no matching chunks
    if method == "PATCH" and "/messages/" in path:
        return {"id": path.rsplit("/", 1)[-1], "object": "message", **body}
    if method == "POST" and path.endswith("/integrated/chat/stream-completions"):
        message = {"id": body.get("assistantMessageId"), "chatId": body.get("chatId"), "text": "An answer."}
        usage = {"promptTokens": 1, "completionTokens": 2, "totalTokens": 3}
        return {"object": "streamResult", "message": message, "toolCalls": [], "usage": usage}
    return {"object": "unknown", "path": path}


def _sse(data: str, event_id: str | None) -> bytes:
    lines = ([f"id: {event_id}"] if event_id else []) + [f"data: {line}" for line in data.splitlines() or [""]]
    return ("\n".join(lines) + "\n\n").encode()


SECRET = "test-endpoint-secret"  # noqa: S105  the fake platform's, for tests only
COMPLETE_FIELDS = ("stoppedStreamingAt", "completedAt")


@dataclass(frozen=True)
class Delivery:
    """What one delivery of an event to the app did, as the platform saw it."""

    status: int  # the app's answer to the webhook: 202 accepted, 200 ignored/duplicate, 4xx/5xx refused
    reply: Mapping[str, Any]
    calls: list[Recorded]  # the platform API calls made while it was handled, in order

    @property
    def completion(self) -> Recorded | None:
        """The call that completed the assistant message (stoppedStreamingAt and completedAt set)."""
        return next((c for c in self.calls if _completes(c)), None)

    @property
    def completed(self) -> bool:
        return self.completion is not None

    @property
    def text(self) -> str | None:
        """The message's final text, when the completion set one (None keeps what was streamed)."""
        completion = self.completion
        return completion.body.get("text") if completion is not None else None

    @property
    def streamed(self) -> list[Recorded]:
        return [c for c in self.calls if c.path.endswith("/integrated/chat/stream-completions")]


class Harness:
    """The app of `package` (its handler.py and settings.py), served in-process behind its real webhook,
    its platform calls going to a FakePlatform. A context manager:

        with Harness("my_app") as harness:
            delivery = harness.deliver(harness.event(text="Hi"))
            assert delivery.completed
    """

    def __init__(
        self,
        package: str,
        *,
        env: Mapping[str, str] | None = None,
        handler: Any = None,
        secret: str = SECRET,
        handler_timeout: int = 20,
    ) -> None:
        self.package = package
        self.env = dict(env or {})
        self.handler = handler
        self.secret = secret
        self.handler_timeout = handler_timeout
        self.platform = FakePlatform()
        self._app: Flask | None = None

    def __enter__(self) -> Harness:
        from .answering import load_settings_of
        from .factory import create_app
        from .settings import AppConfig, RuntimeSettings

        self.platform.__enter__()
        config = AppConfig.read()
        self.settings = RuntimeSettings(
            api_key="key_1",
            app_id="app_1",
            platform_url=self.platform.url,
            company_id="company_1",
            endpoint_secret=self.secret,
            module_names=(config.module_name or self.package,),
            handler_timeout=self.handler_timeout,
        )
        app_settings = load_settings_of(self.package, self.env)
        self._app = create_app(self.package, settings=self.settings, handler=self.handler, app_settings=app_settings)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._app is not None:
            self._app.extensions["webhook"].pool.drain(time.monotonic() + self.handler_timeout + 5)
        self.platform.__exit__(*exc)

    @property
    def client(self) -> FlaskClient:
        if self._app is None:
            raise RuntimeError("use the Harness as a context manager: with Harness(package) as harness: ...")
        return self._app.test_client()

    def event(self, text: str = "Hello", **envelope: Any) -> dict[str, Any]:
        """A fresh external-module event for this app, the user having written `text`."""
        return make_event(self.settings.module_names[0], text=text, **envelope)

    def deliver(self, event: Mapping[str, Any] | None = None, timeout: float | None = None) -> Delivery:
        """POST `event` (default: a fresh one) to /webhook, signed; wait until its message is completed."""
        event = event if event is not None else self.event()
        body, headers = signed_delivery(event, self.secret)
        before = len(self.platform.api_calls())
        response = self.client.post("/webhook", data=body, headers=headers)
        if response.status_code == 202:
            message_id = str(event.get("payload", {}).get("assistantMessage", {}).get("id", ""))
            self.platform.wait_until(
                lambda calls: any(_completes(c) and c.path.endswith(f"/messages/{message_id}") for c in calls[before:]),
                timeout if timeout is not None else self.handler_timeout + 10,
            )
        reply = response.get_json(silent=True) or {}
        return Delivery(response.status_code, reply, self.platform.api_calls()[before:])


def _completes(call: Recorded) -> bool:
    body = call.body if isinstance(call.body, dict) else {}
    return call.method == "PATCH" and "/messages/" in call.path and all(body.get(f) for f in COMPLETE_FIELDS)


def trickle(port: int, first: bytes, stop: threading.Event, interval: float = 0.2) -> float | None:
    """A slow client on 127.0.0.1:`port`: sends `first`, then a byte every `interval` s until `stop`.
    Returns the seconds until the server closed the connection, or None if it never did."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(first)
        while not stop.wait(interval):
            try:
                sock.sendall(b"X")
                sock.settimeout(0.01)
                if sock.recv(1024) == b"":
                    return time.monotonic() - started
            except TimeoutError:
                continue
            except OSError:
                return time.monotonic() - started
    return None


def record_after_a_while(event: Event) -> None:
    """A handler that takes RECORDING_APP_SECONDS, then appends the event id to RECORDING_APP_DONE_FILE."""
    time.sleep(float(os.environ.get("RECORDING_APP_SECONDS", "0")))
    if done := os.environ.get("RECORDING_APP_DONE_FILE"):
        with open(done, "a") as file:
            file.write(f"{event.id}\n")


def __getattr__(name: str) -> object:
    if name == "recording_app":  # built on access: importing this module needs the standard library only
        from .factory import create_app

        app: Flask = create_app(process=record_after_a_while)
        globals()[name] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
