"""The gunicorn worker this app runs with (gunicorn.conf.py): gthread, safe from slow clients, draining on SIGTERM.

Stock gthread hands a connection to a thread once its first byte arrives; the thread then blocks
reading the rest, so 16 clients trickling their headers or bodies hold all 2 x 4 threads and /health
starves. This worker reads every request, head and body, in its event loop without blocking, and
hands it to a thread only when it is complete, so threads only ever run the app:

- a request must arrive completely within GUNICORN_READ_TIMEOUT seconds (default 10), else the
  connection is closed without an answer (a 4xx would make the platform drop a slow delivery);
- a body over the app's MAX_CONTENT_LENGTH (WEBHOOK_MAX_BYTES) gets 413 before it is read, a head
  over 64 KiB gets 431, and a request that would take the worker's unfinished requests over 64 MiB
  gets 503 (the platform retries); a refusal closes the way nginx does (lingering close: the write
  side is shut and what the client still sends is read and dropped, 5 s or 4 MiB at most), so a
  client that sends its whole body first still reads the answer instead of a reset;
- a worker at worker_connections (1000) keeps accepting and closes its oldest idle kept-alive
  connection, else its oldest one without a complete request, so a flood of idle or trickling
  connections cannot keep /health in the backlog (nginx reuses connections the same way);
- on SIGTERM the app takes no new events (503) and its handler pool gets until graceful_timeout
  (less a second) for the events it acknowledged: those still unanswered near the end are completed
  with an apology (dispatch.py), and their ids are logged.

It builds on ThreadWorker internals (accept, set_accept_enabled, enqueue_req, finish_request,
murder_pending, keepalived_conns, TConn, the parser's unreader), which is why pyproject.toml pins
gunicorn to one exact version (GUNICORN_VERSION; the tests check it, and the server warns at start
when another one runs). TLS and HTTP/2 are refused
at start: Azure's ingress ends TLS and speaks HTTP/1.1 to the app.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import selectors
import socket
import time
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import Any

import gunicorn
from gunicorn.http.parser import RequestParser
from gunicorn.workers.gthread import TConn, ThreadWorker

from . import dispatch

GUNICORN_VERSION = "27.0.1"  # the version whose ThreadWorker this worker builds on (pinned in pyproject.toml)
MAX_HEAD = 64 * 1024
DEFAULT_BODY_LIMIT = 1024 * 1024
RECEIVE_SIZE = 64 * 1024
BUFFER_BUDGET = 64 * 1024 * 1024  # bytes of unfinished requests one worker holds; beyond it: 503, retried
SHUTDOWN_MARGIN = 1.0  # seconds left after the handler drain to log and exit before gunicorn's SIGKILL
QUICK_STOP = 1.0  # SIGINT/SIGQUIT: gunicorn kills the worker 2 s later
LINGER_SECONDS = 5.0  # after a refusal, read and discard what the client still sends, this long at most
LINGER_BYTES = 4 * 1024 * 1024  # ... and this much at most (nginx: lingering_time, lingering_timeout)
_REASONS = {413: "Content Too Large", 431: "Request Header Fields Too Large", 503: "Service Unavailable"}


def read_timeout() -> float:
    raw = os.environ.get("GUNICORN_READ_TIMEOUT", "10")
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value <= 300:
        raise ValueError(f"GUNICORN_READ_TIMEOUT must be seconds from 0 to 300, got {raw!r}")
    return value


class TooLarge(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True)
class Head:
    """How the body of a request whose head ends at `body_start` is framed."""

    body_start: int
    length: int | None  # Content-Length; None for chunked or unframeable
    chunked: bool
    expects_continue: bool


def parse_head(data: bytes, body_start: int) -> Head:
    """Framing only; whatever gunicorn's parser would refuse (conflicting lengths, an unknown
    coding) is passed on as a request without body, and gunicorn answers it 400 or 501."""
    lengths: list[bytes] = []
    codings: list[bytes] = []
    expects_continue = False
    for line in data[: body_start - 4].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            lengths.append(value)
        elif name == b"transfer-encoding":
            codings.append(value)
        elif name == b"expect":
            expects_continue = value == b"100-continue"
    chunked = bool(codings) and not lengths and b",".join(codings).split(b",")[-1].strip() == b"chunked"
    length = int(lengths[0]) if len(lengths) == 1 and not codings and lengths[0].isdigit() else None
    if length is None and not chunked:
        length = 0 if not lengths and not codings else None
    return Head(body_start, length, chunked, expects_continue)


def chunked_end(data: bytes | bytearray, start: int, limit: int) -> int | None:
    """Where a chunked body starting at `start` ends (after its trailers); None while incomplete."""
    position, total = start, 0
    while True:
        line_end = data.find(b"\r\n", position)
        if line_end < 0:
            return None
        try:
            size = int(bytes(data[position:line_end]).split(b";")[0].strip(), 16)
        except ValueError:
            return line_end + 2  # malformed: gunicorn's parser refuses it
        total += size
        if total > limit:
            raise TooLarge(413)
        position = line_end + 2
        if size == 0:
            return _trailers_end(data, position)
        position += size + 2
        if position > len(data):
            return None


def _trailers_end(data: bytes | bytearray, position: int) -> int | None:
    while True:
        line_end = data.find(b"\r\n", position)
        if line_end < 0:
            return None
        if line_end == position:
            return line_end + 2
        position = line_end + 2


def request_size(data: bytearray, limit: int) -> tuple[int | None, Head | None]:
    """Bytes of the first complete request in `data` (None while incomplete), and its head once read."""
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0 or head_end + 4 > MAX_HEAD:
        if len(data) > MAX_HEAD:
            raise TooLarge(431)
        return None, None
    head = parse_head(bytes(data[: head_end + 4]), head_end + 4)
    if head.chunked:
        if len(data) - head.body_start > 2 * limit + MAX_HEAD:
            raise TooLarge(413)  # chunk framing far beyond the body it can carry
        return chunked_end(data, head.body_start, limit), head
    if head.length is None:
        return head.body_start, head
    if head.length > limit:
        raise TooLarge(413)
    end = head.body_start + head.length
    return (end if len(data) >= end else None), head


class BufferedConn(TConn):  # type: ignore[misc]  # gunicorn has no type hints
    """A client connection and the bytes received of its next request."""

    def __init__(self, cfg: Any, sock: socket.socket, client: Any, server: Any) -> None:
        super().__init__(cfg, sock, client, server)
        self.buffer = bytearray()
        self.deadline = 0.0
        self.continued = False
        self.discarded = 0  # bytes read and dropped after a refusal (lingering close)


class BufferingWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn has no type hints
    """gthread that gives a thread only complete requests, and drains the handler pool on SIGTERM."""

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        super().check_config(cfg, log)
        if gunicorn.__version__ != GUNICORN_VERSION:
            log.warning("gunicorn %s: %s was written for %s", gunicorn.__version__, __name__, GUNICORN_VERSION)
        if cfg.is_ssl or cfg.http2_cleartext != "off":
            raise RuntimeError(
                "this worker serves HTTP/1.1 without TLS (Azure's ingress ends TLS): no certfile, no h2c"
            )

    def init_process(self) -> None:
        self.read_timeout = read_timeout()
        self.reading: deque[BufferedConn] = deque()  # by deadline: each gets now + read_timeout
        self.body_limit = DEFAULT_BODY_LIMIT
        self.buffered = 0  # bytes held in the buffers of `reading`
        self.lingering: deque[BufferedConn] = deque()  # refused, answered, draining: by deadline
        self.shed = 0  # connections closed to make room since the last log line
        self.shed_logged = 0.0
        self.drain_deadline: float | None = None
        dispatch.set_drain_budget(self.cfg.graceful_timeout - SHUTDOWN_MARGIN)
        super().init_process()  # loads the app, then runs until stopped

    def load_wsgi(self) -> None:
        super().load_wsgi()
        config = getattr(self.wsgi, "config", None)  # a Flask app's config
        limit = config.get("MAX_CONTENT_LENGTH") if isinstance(config, dict) else None
        self.body_limit = limit if isinstance(limit, int) else DEFAULT_BODY_LIMIT

    # ---- Reading requests in the event loop ----------------------------------------------------

    def accept(self, listener: socket.socket) -> None:
        try:
            sock, client = listener.accept()
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self._read(BufferedConn(self.cfg, sock, client, listener.getsockname()))
        if self.nr_conns > self.worker_connections:
            self._shed_one()

    # ---- A flood of idle connections: shed the oldest, as nginx reuses connections ------------------

    def set_accept_enabled(self, enabled: bool) -> None:
        """At worker_connections gunicorn stops accepting, and /health waits in the backlog behind a flood;
        this worker keeps accepting while it holds a connection it can shed instead (see _shed_one)."""
        super().set_accept_enabled(enabled or (self.alive and bool(self.keepalived_conns or self.reading)))

    def _shed_one(self) -> None:
        """Close the oldest idle kept-alive connection, else the oldest without a complete request: those
        a flood is made of (a request that has arrived is never shed)."""
        if self.keepalived_conns:
            conn = self.keepalived_conns.popleft()
            self.poller.unregister(conn.sock)
            self.nr_conns -= 1
            conn.close()
        elif self.reading:
            self._close(self.reading[0])
        else:
            return
        self.shed += 1

    def on_client_socket_readable(self, conn: BufferedConn, client: socket.socket) -> None:
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._read(conn)
        self._receive(conn)

    def _read(self, conn: BufferedConn) -> None:
        conn.deadline = time.monotonic() + self.read_timeout
        self.reading.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._receive, conn))

    def _receive(self, conn: BufferedConn, _sock: object = None) -> None:
        data = _recv(conn)
        if data is None:
            return
        if not data:
            self._close(conn)
            return
        if self.buffered + len(data) > BUFFER_BUDGET:
            self._refuse(conn, 503)
            return
        conn.buffer += data
        self.buffered += len(data)
        self._advance(conn)

    def _advance(self, conn: BufferedConn) -> None:
        """Hand the request to a thread if complete; refuse it if too large; else keep reading."""
        try:
            size, head = request_size(conn.buffer, self.body_limit)
        except TooLarge as refusal:
            self._refuse(conn, refusal.status)
            return
        if size is None:
            if head is not None and head.expects_continue and not conn.continued:
                conn.continued = True  # the client waits for this before it sends the body
                self._send_quietly(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
            return
        self._stop_reading(conn)
        request, conn.buffer = bytes(conn.buffer[:size]), conn.buffer[size:]  # the rest: pipelined
        conn.continued = False
        if conn.parser is None:  # reads only what this worker hands over, never the socket itself
            conn.parser = RequestParser(self.cfg, (), conn.client)
        conn.parser.unreader.unread(request)
        conn.data_ready = True  # ThreadWorker.handle() must not wait for the socket either
        self.enqueue_req(conn)

    def finish_request(self, conn: BufferedConn, fs: Any) -> None:
        keepalive = not fs.cancelled() and fs.exception() is None and fs.result() is True
        if keepalive and conn.buffer and self.alive:  # the client already sent its next request
            conn.sock.setblocking(False)
            self._read(conn)
            self.buffered += len(conn.buffer)
            self._advance(conn)
            return
        super().finish_request(conn, fs)

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        while self.reading and self.reading[0].deadline <= now:
            conn = self.reading[0]
            self.log.info("closed %s: no complete request within %g s", conn.client, self.read_timeout)
            self._close(conn)
        while self.lingering and self.lingering[0].deadline <= now:
            self._end_linger(self.lingering[0])
        if self.shed and now - self.shed_logged >= 1:  # a flood logs a line a second, not one per connection
            self.log.warning("shed %d idle connections: worker_connections (%d) reached", self.shed, self.nr_conns)
            self.shed, self.shed_logged = 0, now

    def _stop_reading(self, conn: BufferedConn) -> None:
        self.reading.remove(conn)
        self.poller.unregister(conn.sock)
        self.buffered -= len(conn.buffer)

    def _close(self, conn: BufferedConn) -> None:
        if conn in self.reading:
            self._stop_reading(conn)
        self.nr_conns -= 1
        conn.close()

    def _refuse(self, conn: BufferedConn, status: int) -> None:
        reason = _REASONS[status]
        error = {
            413: f"the body is over {self.body_limit} bytes",
            431: f"the head is over {MAX_HEAD} bytes",
            503: "too many requests in progress, retry later",
        }[status]
        body = json.dumps({"status": reason.lower(), "error": error}).encode()
        head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nConnection: close\r\n"
        if status == 503:
            head += "Retry-After: 10\r\n"
        self._send_quietly(conn, f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        self.log.warning("refused a request from %s: %d %s", conn.client, status, reason)
        self._linger(conn)

    # ---- Lingering close: the client reads the refusal instead of a reset -------------------------

    def _linger(self, conn: BufferedConn) -> None:
        """Close the way nginx does: the answer is sent, the write side shut, and what the client still
        sends is read and dropped (bounded), so that closing never resets the answer away."""
        self._stop_reading(conn)
        conn.buffer = bytearray()
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_WR)
        conn.deadline = time.monotonic() + LINGER_SECONDS
        self.lingering.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._discard, conn))

    def _discard(self, conn: BufferedConn, _sock: object = None) -> None:
        data = _recv(conn)
        if data is None:
            return
        conn.discarded += len(data)
        if not data or conn.discarded > LINGER_BYTES:
            self._end_linger(conn)

    def _end_linger(self, conn: BufferedConn) -> None:
        self.lingering.remove(conn)
        self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        conn.close()

    @staticmethod
    def _send_quietly(conn: BufferedConn, data: bytes) -> None:
        with contextlib.suppress(OSError):  # a few bytes into an empty send buffer never block
            conn.sock.send(data)

    # ---- Stopping --------------------------------------------------------------------------------

    def handle_exit(self, sig: int, frame: object) -> None:
        """SIGTERM: new events get 503 from now on; accepted ones may run until the drain deadline."""
        if self.drain_deadline is None:
            self.drain_deadline = time.monotonic() + self.cfg.graceful_timeout - SHUTDOWN_MARGIN
        dispatch.stop_accepting()
        super().handle_exit(sig, frame)

    def handle_quit(self, sig: int, frame: object) -> None:
        self.drain_deadline = time.monotonic() + QUICK_STOP
        dispatch.stop_accepting()
        super().handle_quit(sig, frame)

    def run(self) -> None:
        try:
            super().run()  # returns once no request is in flight (or graceful_timeout passed)
        finally:
            deadline = self.drain_deadline or time.monotonic() + self.cfg.graceful_timeout - SHUTDOWN_MARGIN
            dispatch.drain(deadline)


def _recv(conn: BufferedConn) -> bytes | None:
    """What the client sent next; b"" when it closed or the connection broke; None when nothing came yet."""
    try:
        data: bytes = conn.sock.recv(RECEIVE_SIZE)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""
    return data
