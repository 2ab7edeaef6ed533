"""The production server on loopback: gunicorn with a rendered app's gunicorn.conf.py and the runtime's worker
(sdk_runtime/server.py), from this repository's environment (the locks' versions)."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import gunicorn
import pytest
from sdk_runtime.chat import SHUTDOWN_APOLOGY
from sdk_runtime.server import GUNICORN_VERSION
from sdk_runtime.signing import sign
from sdk_runtime.testing import FakePlatform, trickle

from ..conftest import APP
from .conftest import MODULE, SECRET, event, signed


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int
    done_file: Path

    def connect(self, timeout: float = 5.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def health(self, timeout: float = 2.0) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=timeout) as response:
            status: int = response.status
            return status

    def post_event(self, data: dict[str, object], connection: http.client.HTTPConnection | None = None) -> int:
        body, headers = signed(data)
        connection = connection or http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        connection.request("POST", "/webhook", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status

    def done(self) -> list[str]:
        return self.done_file.read_text().split() if self.done_file.exists() else []

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        return self.process.communicate(timeout=60)[0]


ServerFactory = Callable[..., Server]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def serve(tmp_path: Path, monorepo: Path) -> Iterator[ServerFactory]:
    """Starts gunicorn as the image does (its config, its worker) on a free port; always stops it."""
    processes: list[subprocess.Popen[str]] = []

    def start(*args: str, handler_seconds: float = 0.0, **env: str) -> Server:
        port = free_port()
        environment = {
            **{k: v for k, v in os.environ.items() if k != "ENCRYPTED_ENV_FILE"},
            "MODULE": "sdk_runtime.testing",
            "APP_NAME": "recording_app",
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "ENDPOINT_SECRET": SECRET,
            "MODULE_NAME": MODULE,
            "RECORDING_APP_SECONDS": str(handler_seconds),
            "RECORDING_APP_DONE_FILE": str(tmp_path / "done.txt"),
            **env,
        }
        command = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", *args]
        process = subprocess.Popen(
            command, cwd=monorepo / APP, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        processes.append(process)
        server = Server(process, port, tmp_path / "done.txt")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            try:
                server.health(timeout=1)
                return server
            except OSError:
                time.sleep(0.1)
        process.kill()
        raise AssertionError(f"gunicorn did not serve /health:\n{process.communicate()[0]}")

    yield start
    for process in processes:  # SIGTERM first: gunicorn then removes what it created (on_exit)
        if process.poll() is None:
            process.terminate()
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


def test_slow_clients_do_not_starve_health_and_are_cut(serve: ServerFactory) -> None:
    server = serve(GUNICORN_READ_TIMEOUT="2")
    heads = [b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "] * 8
    bodies = [b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"] * 8
    stop = threading.Event()
    with ThreadPoolExecutor(16) as pool:  # 16 slow clients, more than 2 workers x 4 threads
        slow = [pool.submit(trickle, server.port, first, stop) for first in heads + bodies]
        time.sleep(0.5)
        statuses = [server.health() for _ in range(20)]
        wait(slow, timeout=30)
        stop.set()
        cut_after = [future.result() for future in slow]
    assert statuses == [200] * 20
    assert None not in cut_after, "slow clients must be cut after GUNICORN_READ_TIMEOUT"
    assert "no complete request within 2 s" in server.stop()


def raw_post(server: Server, body: bytes, headers: dict[str, bytes]) -> int:
    """POST /webhook with headers sent byte for byte (non-ASCII included); the status code answered."""
    head = b"".join(name.encode() + b": " + value + b"\r\n" for name, value in headers.items())
    with server.connect(timeout=10) as sock:
        sock.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + head)
        sock.sendall(b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def test_health_answers_during_a_flood_of_idle_connections(serve: ServerFactory) -> None:
    """2500 connections that send nothing, more than 2 workers x worker_connections (1000) hold: a worker at
    its limit sheds its oldest connection without a complete request, so /health still gets in."""
    server = serve()
    flood = []
    try:
        for _ in range(2500):
            flood.append(server.connect())
        time.sleep(0.5)
        statuses = [server.health(timeout=3) for _ in range(10)]
    finally:
        for sock in flood:
            sock.close()
    assert statuses == [200] * 10
    assert "shed" in server.stop()


def test_malformed_requests_get_4xx_and_no_traceback(serve: ServerFactory) -> None:
    server = serve()
    good_body, good = signed(event())
    headers = {name: value.encode() for name, value in good.items()}

    def signed_raw(body: bytes) -> dict[str, bytes]:
        return headers | {"X-Unique-Signature": sign(body, SECRET).encode()}

    deep = b"[" * 50_000 + b"]" * 50_000
    not_utf8 = '{"id": "é", "event": "x"}'.encode("latin-1")
    nan = good_body.replace(b'"createdAt": "', b'"createdAt": NaN, "was": "')
    cases = {
        "non-ASCII signature": (good_body, headers | {"X-Unique-Signature": "é".encode() * 32}),
        "deep JSON": (deep, signed_raw(deep)),
        "not UTF-8": (not_utf8, signed_raw(not_utf8)),
        "NaN createdAt": (nan, signed_raw(nan)),
    }
    statuses = {case: raw_post(server, body, sent) for case, (body, sent) in cases.items()}
    assert all(400 <= status < 500 for status in statuses.values()), statuses
    output = server.stop()
    assert "Traceback" not in output
    assert "Error handling request" not in output


def test_a_large_body_gets_413_before_it_is_sent(serve: ServerFactory) -> None:
    server = serve()
    with server.connect() as sock:
        sock.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"1048576 bytes" in answer


def test_a_large_body_sent_in_full_still_reads_the_413(serve: ServerFactory) -> None:
    """A client that sends its whole 2 MiB body before it reads (http.client, requests, a proxy) gets the 413,
    not a reset: the worker shuts its write side, then reads and drops the rest before it closes (lingering
    close, as nginx does). The body goes in 64 KiB pieces, as over a network slower than loopback, so the
    worker has answered while the client still sends."""
    server = serve()
    piece, pieces = b"x" * 65536, 32

    def body() -> Iterator[bytes]:
        for _ in range(pieces):
            yield piece
            time.sleep(0.005)

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("POST", "/webhook", body=body(), headers={"Content-Length": str(len(piece) * pieces)})
    response = connection.getresponse()
    assert response.status == 413
    assert b"1048576 bytes" in response.read()
    connection.close()
    assert server.health() == 200


def test_unfinished_requests_beyond_the_worker_budget_get_503(serve: ServerFactory) -> None:
    """One worker holds at most 64 MiB of requests still arriving; beyond it: 503, which the platform retries."""
    server = serve(GUNICORN_WORKERS="1")
    almost = b"x" * (1024 * 1024 - 1)  # one byte short of the 1 MiB body each announces
    connections = []
    for _ in range(70):
        sock = server.connect()
        sock.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n")
        with contextlib.suppress(OSError):
            sock.sendall(almost)
        connections.append(sock)
    time.sleep(1)
    answers = []
    for sock in connections:
        sock.setblocking(False)
        try:
            answers.append(sock.recv(100))
        except BlockingIOError:
            answers.append(b"")  # no answer: still being read, within the budget
        sock.close()
    refused = [answer for answer in answers if answer]
    assert refused, "no request was refused"
    assert all(answer.startswith(b"HTTP/1.1 503 ") for answer in refused)
    assert len(refused) < len(answers)
    assert server.health() == 200


def test_pipelined_and_expect_continue_requests_are_served(serve: ServerFactory) -> None:
    server = serve()
    with server.connect() as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
        answers = b""
        while answers.count(b'{"status":"ok"}') < 2:
            answers += sock.recv(4096)
        assert answers.count(b"HTTP/1.1 200 OK") == 2
        body, headers = signed(event())
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        head += f"Expect: 100-continue\r\nContent-Length: {len(body)}\r\n"
        sock.sendall(f"POST /webhook HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        answer = b""
        while b"202 ACCEPTED" not in answer.upper():
            chunk = sock.recv(4096)
            assert chunk, answer
            answer += chunk


def test_on_sigterm_acknowledged_events_complete_and_new_ones_get_503(serve: ServerFactory) -> None:
    # 4 threads per worker: up to 8 events acknowledged per worker, 4 running and 4 waiting. Handlers of
    # 0.5 s and a 6 s graceful timeout: 5 s of drain, of which 2.5 s run handlers (two rounds take 1 s).
    server = serve("--graceful-timeout", "6", handler_seconds=0.5, HANDLER_TIMEOUT="1", HANDLER_THREADS="4")
    events = [event() for _ in range(40)]
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(server.post_event, events))
    kept_alive = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    kept_alive.request("GET", "/health")
    kept_alive.getresponse().read()
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    during_shutdown = server.post_event(event(), kept_alive)
    output = server.process.communicate(timeout=30)[0]

    acknowledged = [e["id"] for e, status in zip(events, statuses, strict=True) if status == 202]
    assert set(statuses) <= {202, 503}
    assert 8 <= len(acknowledged) <= 2 * 8
    assert sorted(server.done()) == sorted(acknowledged)  # every acknowledged event ran to completion
    assert during_shutdown == 503
    assert "cut by shutdown" not in output


@pytest.mark.slow
def test_a_burst_of_64_to_one_replica_is_all_acknowledged_and_handled(serve: ServerFactory) -> None:
    """The shipped settings (2 workers, HANDLER_THREADS 128): however the burst's connections spread over the
    workers, none is refused."""
    server = serve(handler_seconds=2.0)
    events = [event() for _ in range(64)]
    with ThreadPoolExecutor(64) as pool:
        statuses = list(pool.map(server.post_event, events))
    assert statuses == [202] * 64
    deadline = time.monotonic() + 60
    while len(server.done()) < 64 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sorted(server.done()) == sorted(e["id"] for e in events)


@pytest.mark.slow
def test_sigterm_during_a_burst_leaves_no_chat_blocked(serve: ServerFactory, platform: FakePlatform) -> None:
    """The real app (the template's handler, streaming a model answer that takes longer than the drain):
    after SIGTERM every acknowledged event's message is completed, with an apology, running or waiting."""
    platform.delays["/integrated/chat/stream-completions"] = 60.0
    server = serve(
        "--graceful-timeout",
        "8",
        MODULE=APP,
        APP_NAME="app",
        HANDLER_THREADS="4",
        UNIQUE_API_BASE_URL=platform.url,
        UNIQUE_APP_KEY="key_1",
        UNIQUE_APP_ID="app_1",
    )
    events = [event() for _ in range(24)]
    for number, data in enumerate(events):
        data["payload"]["assistantMessage"]["id"] = f"msg_assistant_{number}"
    with ThreadPoolExecutor(24) as pool:
        statuses = list(pool.map(server.post_event, events))
    acknowledged = {
        e["payload"]["assistantMessage"]["id"]: e["id"]
        for e, status in zip(events, statuses, strict=True)
        if status == 202
    }
    assert len(acknowledged) >= 8  # at least one worker's 4 running and 4 waiting
    platform.wait_until(lambda calls: sum(c.path.endswith("/stream-completions") for c in calls) >= 4)
    output = server.stop()

    completed = {
        call.path.rsplit("/", 1)[-1]: call.body
        for call in platform.api_calls()
        if call.method == "PATCH" and isinstance(call.body, dict) and call.body.get("completedAt")
    }
    assert sorted(completed) == sorted(acknowledged)
    assert {body["text"] for body in completed.values()} == {SHUTDOWN_APOLOGY}
    for event_id in acknowledged.values():
        assert f"event {event_id}: cut by shutdown (it was acknowledged); its message was completed" in output


def test_a_handler_cut_by_shutdown_is_logged_by_event_id(serve: ServerFactory) -> None:
    server = serve("--graceful-timeout", "3", handler_seconds=30.0, HANDLER_TIMEOUT="1")
    data = event()
    assert server.post_event(data) == 202
    time.sleep(0.5)
    output = server.stop()
    assert f"event {data['id']}: not completed, cut by shutdown" in output
    assert server.done() == []


def test_gunicorn_is_the_version_the_worker_builds_on() -> None:
    """server.py relies on ThreadWorker internals: moving gunicorn means re-reading them (and this test)."""
    assert gunicorn.__version__ == GUNICORN_VERSION
