"""Failed platform calls, each said in one line with its real cause.

unique_sdk retries a failed call 3 times and logs each retry as `http_status=500` whatever happened (a
DNS failure included), then raises an error chained through requests and urllib3: one failure made
more than a hundred log lines. Here, each retry is one line naming the cause (the SDK logs it while the
error is being handled, so the error is at hand), and the final failure is one line too.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Iterator

RETRY_MESSAGE = "Retrying Unique API call"
SDK_LOGGER = "unique"  # unique_sdk's logger


def cause(error: BaseException) -> str:
    """Why a platform call failed, in a few words: DNS, a refused connection, a timeout, or the HTTP status."""
    chain = list(_chain(error))
    for item in chain:
        if isinstance(item, socket.gaierror):
            return f"DNS lookup failed ({item.strerror or item})"
    for item in chain:
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
    for item in chain:
        if isinstance(item, TimeoutError) or type(item).__name__ in {"ReadTimeout", "ConnectTimeout", "Timeout"}:
            return "timed out"
    for item in chain:
        status = getattr(item, "http_status", None)
        if isinstance(status, int) and status:
            return f"HTTP {status}: {_first_line(item)}"
    return f"{type(error).__name__}: {_first_line(error)}"


def is_platform_error(error: BaseException) -> bool:
    """A unique_sdk error (already loaded by the time one can be raised)."""
    sdk = sys.modules.get("unique_sdk")
    base = getattr(sdk, "UniqueError", None)
    return isinstance(base, type) and isinstance(error, base)


class RetryLines(logging.Filter):
    """Rewrites unique_sdk's retry warnings: the attempt, and the real cause instead of `http_status=500`."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = sys.exc_info()[1]
        if error is not None and str(record.msg).startswith(RETRY_MESSAGE) and len(record.args or ()) >= 2:
            attempt, total = record.args[0], record.args[1]  # type: ignore[index]
            record.msg = "platform call failed, retrying (attempt %s of %s): %s"
            record.args = (attempt, total, cause(error))
        return True


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__
