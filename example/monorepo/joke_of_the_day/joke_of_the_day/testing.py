"""Doubles of the Unique platform and its clients, for tests and local checks (standard library only).

- `make_event()`: an event as the platform sends it (unix seconds as text in `createdAt`, as documented).
- `FakePlatform`: the platform's public API and Event Socket on loopback. It records every request as
  the SDK sends it, refuses what the platform would (no API key, app, user or company header; a body
  that is not JSON), answers like the platform, and plays scripted Event Socket connections.
- `trickle()`: a slow client.
- `recording_app` (gunicorn target `<app>.testing:recording_app`): this app with a handler that takes
  RECORDING_APP_SECONDS and then appends the event id to RECORDING_APP_DONE_FILE.

Used by this app's tests, and by the template's own tests and benchmarks: one implementation.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .events import EXTERNAL_MODULE_CHOSEN

if TYPE_CHECKING:
    from flask import Flask

    from .events import Event
    from .settings import Settings

REQUIRED_API_HEADERS = ("authorization", "x-app-id", "x-user-id", "x-company-id", "x-api-version")
STREAM_PATH = "/public/event-socket/events/stream"


def make_event(module: str, event: str = EXTERNAL_MODULE_CHOSEN, **envelope: Any) -> dict[str, Any]:
    """A fresh event with a new id for `module`; `envelope` replaces top-level fields."""
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
            "userMessage": {"id": "msg_user_1", "text": "Hello", "createdAt": iso},
            "assistantMessage": {"id": "msg_assistant_1", "createdAt": iso},
        },
    }
    data.update(envelope)
    return data


def body_of(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event).encode()


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


class FakePlatform:
    """The platform on 127.0.0.1:<port> (a free one by default); a context manager that stops it on exit."""

    def __init__(self, streams: list[Stream] | None = None, port: int = 0) -> None:
        self.streams = list(streams or [])  # one per connection; when used up, connections stay idle
        self.failures: dict[str, int] = {}  # path suffix -> status to answer instead, e.g. a 422
        self.requests: list[Recorded] = []
        self.stopped = threading.Event()
        self._changed = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
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

        def _answer(self, status: int, payload: Mapping[str, Any]) -> None:
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


def _api_answer(method: str, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """What the platform answers, in the shape the SDK reads."""
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


def record_after_a_while(event: Event, settings: Settings) -> None:
    """A handler that takes RECORDING_APP_SECONDS, then appends the event id to RECORDING_APP_DONE_FILE."""
    time.sleep(float(os.environ.get("RECORDING_APP_SECONDS", "0")))
    if done := os.environ.get("RECORDING_APP_DONE_FILE"):
        with open(done, "a") as file:
            file.write(f"{event.id}\n")


def __getattr__(name: str) -> object:
    if name == "recording_app":  # built on access: importing this module needs the standard library only
        from .factory import create_app

        app: Flask = create_app(handler=record_after_a_while)
        globals()[name] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
