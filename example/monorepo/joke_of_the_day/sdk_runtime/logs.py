"""Logging to stdout with the request id on every line."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import TextIO

request_id: ContextVar[str] = ContextVar("request_id", default="-")

_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"


class _StdoutHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever sys.stdout is at the time, so redirection (and pytest's capsys) sees it."""

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


class _Utf8Formatter(logging.Formatter):
    """Escapes what UTF-8 cannot encode (a lone surrogate from a JSON `"\\ud800"` in an event id)
    as `\\udXXX`, so the line is always written, and is valid UTF-8."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).encode("utf-8", "backslashreplace").decode("utf-8")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


def configure_logging(logger_name: str, level: str) -> logging.Logger:
    """Send `logger_name`'s records to stdout once, however often it is called."""
    logger = logging.getLogger(logger_name)
    logger.setLevel(level)
    if not any(getattr(h, "_app_handler", False) for h in logger.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(_Utf8Formatter(_FORMAT))
        handler.addFilter(_RequestIdFilter())
        handler._app_handler = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    return logger
