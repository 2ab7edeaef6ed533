"""A bounded worker pool: webhooks are acknowledged at once and handled in the background.

Gunicorn runs several threads per worker, so everything here is thread-safe: the pool and the
semaphore are, and the only shared state is guarded by a lock.
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from queue import SimpleQueue

logger = logging.getLogger(__name__)


class BoundedExecutor:
    """Runs at most `threads` jobs at once and holds at most `backlog` more; refuses the rest.

    A queue and a few threads, started on first use (so after gunicorn forks its workers). Queued
    jobs still run when the process exits normally (gunicorn's graceful shutdown).
    """

    def __init__(self, threads: int, backlog: int) -> None:
        self._threads = threads
        self._slots = threading.BoundedSemaphore(threads + backlog)
        self._jobs: SimpleQueue[Callable[[], None] | None] = SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, job: Callable[[], None]) -> bool:
        """Start `job` in the background; False (nothing started) when the pool is full or closed."""
        if self._closed or not self._slots.acquire(blocking=False):
            return False
        if not self._workers:
            self._start()
        context = contextvars.copy_context()  # keeps the request id in the job's log lines
        self._jobs.put(lambda: context.run(job))
        return True

    def _start(self) -> None:
        with self._lock:
            if self._workers:
                return
            for number in range(self._threads):
                worker = threading.Thread(target=self._work, name=f"event-handler-{number}", daemon=True)
                worker.start()
                self._workers.append(worker)
            atexit.register(self.shutdown)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:
                logger.exception("event handler failed")
            finally:
                self._slots.release()

    def shutdown(self, wait: bool = True) -> None:
        """Refuse new jobs, let queued ones finish, stop the threads."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = list(self._workers)
        for _ in workers:
            self._jobs.put(None)
        if wait:
            for worker in workers:
                worker.join()


class SeenIds:
    """Remembers delivery ids for `ttl` seconds so a replayed or repeated event runs once.

    Per process: with several gunicorn workers or replicas a repeat can still reach another
    process; use a shared store (e.g. Redis SET NX) if your handler must never run twice.
    """

    def __init__(self, ttl: float, limit: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._limit = limit
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, event_id: str) -> bool:
        """True the first time `event_id` is seen within the ttl, False for a repeat."""
        now = self._clock()
        with self._lock:
            while self._seen and (next(iter(self._seen.values())) < now - self._ttl or len(self._seen) >= self._limit):
                self._seen.popitem(last=False)
            if event_id in self._seen:
                return False
            self._seen[event_id] = now
            return True

    def forget(self, event_id: str) -> None:
        """Let `event_id` through again (its delivery was refused, so the platform will retry it)."""
        with self._lock:
            self._seen.pop(event_id, None)
