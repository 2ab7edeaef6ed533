"""A bounded worker pool: webhooks are acknowledged at once and handled in the background.

Gunicorn runs several threads per worker, so everything here is thread-safe: the pool and the
semaphore are, and the only shared state is guarded by a lock.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

logger = logging.getLogger(__name__)


class BoundedExecutor:
    """Runs at most `threads` jobs at once and holds at most `backlog` more; refuses the rest."""

    def __init__(self, threads: int, backlog: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="event-handler")
        self._slots = threading.BoundedSemaphore(threads + backlog)

    def submit(self, job: Callable[[], None]) -> bool:
        """Start `job` in the background; False (nothing started) when the pool is full."""
        if not self._slots.acquire(blocking=False):
            return False
        context = contextvars.copy_context()  # keeps the request id in the job's log lines
        try:
            future = self._pool.submit(context.run, job)
        except RuntimeError:  # shutting down
            self._slots.release()
            return False
        future.add_done_callback(self._finished)
        return True

    def _finished(self, future: Future[None]) -> None:
        self._slots.release()
        if (error := future.exception()) is not None:
            logger.error("event handler failed", exc_info=error)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)


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
