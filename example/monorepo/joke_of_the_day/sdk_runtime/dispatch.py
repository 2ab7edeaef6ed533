"""Background handling of events: admission by what the replica can answer, and no chat left blocked.

Handlers mostly wait on the platform (a model answer takes seconds), so threads are cheap and a worker
runs HANDLER_THREADS events at once. It acknowledges up to twice that: an event beyond the threads waits
for one (at most one handler's time), which costs the user far less than a 503, retried by the platform
after a backoff of minutes. Beyond that /webhook answers 503.

Azure stops a replica with SIGTERM and kills it 30 s later; gunicorn's graceful_timeout is a little
shorter. An event acknowledged with 2xx is never delivered again, so on SIGTERM the pool takes nothing
new, lets its events run until CUT_RESERVE seconds before the drain deadline, then completes the
message of every event still unanswered (running or waiting) with an apology, all at once, and logs
their ids. Handlers that need longer than the drain are thus supported: one cut by shutdown ends with
an apology the user can act on ("please ask again"), never with a blocked chat.

Gunicorn runs several threads per worker, so everything here is thread-safe.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import hashlib
import itertools
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from queue import SimpleQueue

logger = logging.getLogger(__name__)

# What the gunicorn worker (server.py) grants handlers after SIGTERM; it sets the real value at start.
DEFAULT_DRAIN_BUDGET = 24.0
WAITING_PER_THREAD = 1  # events acknowledged beyond the threads, per thread: they wait for one
CUT_RESERVE = 5.0  # seconds kept at the end of the drain to apologize for events still unanswered
_drain_budget = DEFAULT_DRAIN_BUDGET
_pools: weakref.WeakSet[HandlerPool] = weakref.WeakSet()
_IN_MEMORY = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 tmpfs, where it exists


def set_drain_budget(seconds: float) -> None:
    """Seconds from SIGTERM until the process is killed, minus a margin (called by the worker at start)."""
    global _drain_budget  # one value per process, set before the app is built
    _drain_budget = max(1.0, seconds)


def drain_budget() -> float:
    return _drain_budget


def stop_accepting() -> None:
    """Every pool refuses new events from now on. Safe in a signal handler: it only sets flags."""
    for pool in list(_pools):
        pool.accepting = False


def drain(deadline: float) -> list[str]:
    """Let every pool finish its events until `deadline` (time.monotonic()); the ids cut are returned."""
    stop_accepting()
    return [event_id for pool in list(_pools) for event_id in pool.drain(deadline)]


Cut = Callable[[], bool]  # completes an unanswered event's message with an apology; True once done


@dataclass(frozen=True)
class Pending:
    """An acknowledged event from submit until its job returned."""

    event_id: str
    cut: Cut | None


class HandlerPool:
    """Runs handlers on `threads` background threads, started on first use (after gunicorn forks)."""

    def __init__(self, threads: int, handler_timeout: float) -> None:
        self.threads = threads
        self.handler_timeout = handler_timeout
        self.capacity = threads * (1 + WAITING_PER_THREAD)
        self.accepting = True
        self._drained = False
        self._slots = threading.BoundedSemaphore(self.capacity)
        self._jobs: SimpleQueue[tuple[int, str, Callable[[], None]] | None] = SimpleQueue()
        self._tokens = itertools.count()
        self._unfinished: dict[int, Pending] = {}  # by token, from submit until done
        self._given_up: set[int] = set()  # tokens cut at shutdown: a job not yet started never starts
        self._changed = threading.Condition()
        self._workers: list[threading.Thread] = []
        _pools.add(self)

    def submit(self, event_id: str, job: Callable[[], None], cut: Cut | None = None) -> bool:
        """Run `job` in the background; False (nothing started) when the pool is full or stopping.
        `cut` completes the event's message with an apology if shutdown comes first."""
        if not self.accepting or not self._slots.acquire(blocking=False):
            return False
        context = contextvars.copy_context()  # keeps the request id in the job's log lines
        with self._changed:
            if not self.accepting:
                self._slots.release()
                return False
            if not self._workers:
                self._start()
            token = next(self._tokens)
            self._unfinished[token] = Pending(event_id, cut)
        self._jobs.put((token, event_id, lambda: context.run(job)))
        return True

    def _start(self) -> None:
        for number in range(self.threads):
            worker = threading.Thread(target=self._work, name=f"event-handler-{number}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            token, event_id, job = item
            started = time.monotonic()
            try:
                if token not in self._given_up:
                    job()
            except Exception:
                logger.exception("event %s: handler failed", event_id)
            finally:
                self._done(token, event_id, time.monotonic() - started)

    def _done(self, token: int, event_id: str, elapsed: float) -> None:
        if elapsed > self.handler_timeout:
            logger.warning(
                "event %s: handler took %.1f s, over HANDLER_TIMEOUT=%g s: raise HANDLER_TIMEOUT, or events "
                "in progress when the replica stops may be cut",
                event_id,
                elapsed,
                self.handler_timeout,
            )
        with self._changed:
            self._unfinished.pop(token, None)
            self._changed.notify_all()
        self._slots.release()

    def drain(self, deadline: float) -> list[str]:
        """Take nothing new, let accepted events run until shortly before `deadline`, then complete the
        messages of those still unanswered with an apology. Logs and returns their ids (once)."""
        self.accepting = False
        reserve = min(CUT_RESERVE, max(0.0, deadline - time.monotonic()) / 2)
        with self._changed:
            if self._drained:
                return []
            self._drained = True
            self._changed.wait_for(lambda: not self._unfinished, max(0.0, deadline - reserve - time.monotonic()))
            pending = dict(self._unfinished)
            self._given_up.update(pending)
            workers, self._workers = self._workers, []
        for _ in workers:
            self._jobs.put(None)
        apologized = _cut_all(list(pending.values()), deadline)
        for item in pending.values():
            if item.event_id in apologized:
                logger.error(
                    "event %s: cut by shutdown (it was acknowledged); its message was completed with an apology",
                    item.event_id,
                )
            else:
                logger.error("event %s: not completed, cut by shutdown (it was acknowledged)", item.event_id)
        return [item.event_id for item in pending.values()]


def _cut_all(pending: list[Pending], deadline: float) -> set[str]:
    """Run every cut at once, each on its own thread, until `deadline`: the ids whose message completed.
    (The platform calls retry with backoff; whatever is not done by the deadline is given up.)"""
    apologized: set[str] = set()
    lock = threading.Lock()

    def run(item: Pending, cut: Cut) -> None:
        try:
            completed = cut()
        except Exception:
            logger.exception("event %s: the apology at shutdown failed", item.event_id)
            return
        if completed:
            with lock:
                apologized.add(item.event_id)

    threads = [
        threading.Thread(target=run, args=(item, item.cut), name="apologize", daemon=True)
        for item in pending
        if item.cut is not None
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        return set(apologized)


@atexit.register
def _drain_at_exit() -> None:  # `flask run`, tests; the gunicorn worker drains before it exits
    drain(time.monotonic() + _drain_budget)


class DeliveredIds:
    """Event ids seen within the last `ttl` seconds, shared by every process that uses `directory`.

    One empty file per id (named by its hash), created with O_EXCL: atomic across the gunicorn workers
    of a replica. gunicorn.conf.py gives them one fixed directory per app and user, in memory under
    /dev/shm, which a restarted server finds again (entries older than the ttl are pruned, by age); a
    restarted container starts with an empty one (Azure gives it a fresh filesystem, /dev/shm included).
    Replicas do not share it: for that, Azure Storage (queueing.py) records deliveries for all of them.
    Without a directory each instance keeps its own, removed with the instance (`flask run`, tests).
    """

    SWEEP_EVERY = 60.0

    def __init__(self, ttl: float, directory: str = "") -> None:
        self._ttl = ttl
        if not directory:
            directory = tempfile.mkdtemp(prefix="delivered-ids-", dir=_IN_MEMORY)
            weakref.finalize(self, shutil.rmtree, directory, ignore_errors=True)
        _own_directory(directory)
        self._directory = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)  # names below resolve against it
        weakref.finalize(self, os.close, self._directory)
        self._next_sweep = 0.0
        self._lock = threading.Lock()

    def first_time(self, event_id: str) -> bool:
        """True the first time `event_id` is seen within the ttl (in any process), False for a repeat."""
        name = _name(event_id)
        for _ in range(2):
            try:
                os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600, dir_fd=self._directory))
            except FileExistsError:
                if not self._expired(name):
                    return False
                self._forget(name)  # an old entry: the next O_EXCL decides who sees it first
                continue
            self._sweep()
            return True
        return False

    def forget(self, event_id: str) -> None:
        """Let `event_id` through again (its delivery was refused, so the platform will retry it)."""
        self._forget(_name(event_id))

    def _forget(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=self._directory)

    def _expired(self, name: str) -> bool:
        try:
            return os.stat(name, dir_fd=self._directory).st_mtime < time.time() - self._ttl
        except FileNotFoundError:
            return True

    def _sweep(self) -> None:
        """Remove expired entries, at most once a minute per process."""
        now = time.monotonic()
        with self._lock:
            if now < self._next_sweep:
                return
            self._next_sweep = now + self.SWEEP_EVERY
        for name in os.listdir(self._directory):
            if self._expired(name):
                self._forget(name)


def _own_directory(path: str) -> None:
    """Create `path` (0700) unless it exists; refuse one another user holds: in a shared place such as
    /dev/shm or /tmp, whoever owns it could delete entries and so re-enable replays."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    status = os.lstat(path)
    owner = getattr(os, "getuid", lambda: status.st_uid)()
    if not stat.S_ISDIR(status.st_mode) or status.st_uid != owner or status.st_mode & 0o022:
        raise RuntimeError(
            f"WEBHOOK_DELIVERED_IDS_DIR={path} must be a directory owned by this user and writable by it "
            "alone (it records delivered event ids against replays): remove it, or set another path"
        )


def _name(event_id: str) -> str:
    return hashlib.sha256(event_id.encode("utf-8", "replace")).hexdigest()
