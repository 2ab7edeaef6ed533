"""The Flask app factory: routes, settings, logging and the handler pool, wired once.

`create_app("<app>")` builds the app for the team's package `<app>` (its handler.py and settings.py,
sdk_runtime/answering.py says how they are called). unique_sdk and the handler are imported on a
background thread as the app starts, so /health answers at once and the first event does not wait.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from . import answering, dispatch, logs, platform_errors, queueing
from .events import Event
from .settings import RuntimeSettings, load_settings
from .signing import ID_HEADER
from .webhook import FUTURE_SKEW, UNCONFIGURED, WebhookState, reply
from .webhook import blueprint as webhook_blueprint

REQUEST_ID_HEADER = "X-Request-Id"
_UNSAFE_IN_LOGS = re.compile(r"[^A-Za-z0-9._:-]")
UNSIGNED_LOCALLY = (
    "ENDPOINT_SECRET is not set: unsigned events are accepted (local development only; "
    "the deployed app answers them 503 until ENDPOINT_SECRET is set)"
)
Process = Callable[[Event], None]


def create_app(
    package: str | None = None,
    *,
    settings: RuntimeSettings | None = None,
    handler: answering.Handler | None = None,
    app_settings: Any = None,
    process: Process | None = None,
) -> Flask:
    """Build the app. Production: `create_app("<app>")` reads the environment and the team's package.
    Tests may pass the runtime's `settings`, a `handler` (and its `app_settings`), or `process`, which
    then receives every accepted event instead of the runtime's answering (for tests of the webhook)."""
    settings = settings or load_settings()
    logger = logs.configure_logging("sdk_runtime", settings.log_level)
    if package:
        logs.configure_logging(package, settings.log_level)
    # unique_sdk logs every request at INFO: shown with LOG_LEVEL=DEBUG only.
    sdk_logger = logs.configure_logging(
        platform_errors.SDK_LOGGER, "DEBUG" if settings.log_level == "DEBUG" else "WARNING"
    )
    if not any(isinstance(f, platform_errors.RetryLines) for f in sdk_logger.filters):
        sdk_logger.addFilter(platform_errors.RetryLines())  # one line per retry, with its real cause
    pool = dispatch.HandlerPool(settings.handler_threads, settings.handler_timeout)
    ttl = settings.webhook_max_age + FUTURE_SKEW.total_seconds()
    ready: Callable[[], object] = _ready
    cut: Callable[[Event], bool] | None = None  # a test's `process` has no message to complete
    if process is None:
        if handler is None and app_settings is None and package:
            app_settings = answering.load_settings_of(package, os.environ)  # bad settings fail at start
        loader = CodeLoader(settings, package, handler, app_settings)
        threading.Thread(target=loader.preload, name="load-handler", daemon=True).start()
        process, ready, cut = loader.process, loader.code, answering.cut
    queue = None
    if settings.storage is not None:  # events through an Azure Storage Queue (sdk_runtime/queueing.py)
        connect = functools.partial(queueing.clients, settings.storage, package or "app")
        queue = queueing.EventQueue(connect, pool, process, settings.handler_timeout)
        queue.start()

    app = Flask(package or __name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.webhook_max_bytes  # 413 before the body is read
    app.extensions["webhook"] = WebhookState(
        settings=settings,
        process=process,
        ready=ready,
        pool=pool,
        delivered=dispatch.DeliveredIds(ttl, settings.delivered_ids_dir),
        cut=cut,
        queue=queue,
    )
    app.register_blueprint(webhook_blueprint)
    app.add_url_rule("/health", "health", _health, methods=["GET"])
    app.register_error_handler(RequestEntityTooLarge, _too_large)
    app.before_request(_start_request)
    app.after_request(_finish_request)

    if not settings.endpoint_secret:
        logger.warning(UNCONFIGURED if settings.deployed else UNSIGNED_LOCALLY)
    if settings.handler_timeout > dispatch.drain_budget():
        logger.warning(
            "HANDLER_TIMEOUT=%d s is longer than the %.0f s a stopping replica gets: events still running at "
            "shutdown are cut, their messages completed with an apology (their ids are logged)",
            settings.handler_timeout,
            dispatch.drain_budget(),
        )
    return app


class CodeLoader:
    """Loads the team's handler (and unique_sdk) once, on a background thread at start or for the first
    event, whichever comes first. Until it loads (say handler.py has a bug), `process` raises, and
    /webhook answers 503 so the platform retries."""

    def __init__(
        self, settings: RuntimeSettings, package: str | None, handler: answering.Handler | None, app_settings: Any
    ) -> None:
        self._settings = settings
        self._package = package
        self._handler = handler
        self._app_settings = app_settings
        self._code: answering.TeamCode | None = None
        self._lock = threading.Lock()

    def code(self) -> answering.TeamCode:
        with self._lock:
            if self._code is None:
                answering.configure_sdk(self._settings)
                handler = self._handler or answering.load_handler_of(self._package or "")
                self._code = answering.TeamCode(handler, self._app_settings)
            return self._code

    def preload(self) -> None:
        try:
            self.code()
        except Exception:
            logging.getLogger(__name__).exception("the handler cannot be loaded; /webhook answers 503 until fixed")

    def process(self, event: Event) -> None:
        answering.answer(self.code(), event, self._settings.handler_timeout)


def _ready() -> None:
    """Nothing to load: the test's `process` is ready."""


def _health() -> Response:
    return jsonify(status="ok")


def _too_large(error: RequestEntityTooLarge) -> Response:
    limit = request.max_content_length
    return reply(413, "too large", error=f"the body is over {limit} bytes (WEBHOOK_MAX_BYTES)")


def _start_request() -> None:
    # The platform's delivery id is the most useful id to log; else the caller's, else a new one.
    given = request.headers.get(ID_HEADER) or request.headers.get(REQUEST_ID_HEADER) or ""
    g.request_id_token = logs.request_id.set(_UNSAFE_IN_LOGS.sub("", given)[:64] or uuid.uuid4().hex)


def _finish_request(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = logs.request_id.get()
    if (token := g.pop("request_id_token", None)) is not None:
        logs.request_id.reset(token)
    return response
