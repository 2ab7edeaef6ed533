"""The Flask app factory: routes, settings, logging and the handler pool, wired once.

unique_sdk is not imported here: `handler.py` (and the SDK with it, about half a second of imports) is
loaded on the first event, so a replica answers /health as fast as a bare Flask app.
"""

from __future__ import annotations

import re
import threading
import uuid

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from . import dispatch, logs
from .settings import Settings, load_settings
from .signing import ID_HEADER
from .webhook import FUTURE_SKEW, UNCONFIGURED, EventHandler, WebhookState, reply
from .webhook import blueprint as webhook_blueprint

REQUEST_ID_HEADER = "X-Request-Id"
_UNSAFE_IN_LOGS = re.compile(r"[^A-Za-z0-9._:-]")
UNSIGNED_LOCALLY = (
    "ENDPOINT_SECRET is not set: unsigned events are accepted (local development only; "
    "the deployed app answers them 503 until ENDPOINT_SECRET is set)"
)


def create_app(settings: Settings | None = None, handler: EventHandler | None = None) -> Flask:
    """Build the app. Tests pass their own settings and handler; production reads the environment."""
    settings = settings or load_settings()
    logger = logs.configure_logging(__package__ or __name__, settings.log_level)
    pool = dispatch.HandlerPool(settings.handler_threads, settings.handler_timeout, dispatch.drain_budget())
    ttl = settings.webhook_max_age + FUTURE_SKEW.total_seconds()

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.webhook_max_bytes  # 413 before the body is read
    app.extensions["webhook"] = WebhookState(
        settings=settings,
        load_handler=(lambda _settings: handler) if handler else HandlerLoader(),
        pool=pool,
        delivered=dispatch.DeliveredIds(ttl, settings.delivered_ids_dir),
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
            "HANDLER_TIMEOUT=%d s is longer than the %.0f s a stopping replica gets: events in progress at "
            "shutdown may be cut (their ids are logged)",
            settings.handler_timeout,
            dispatch.drain_budget(),
        )
    return app


def load_handler(settings: Settings) -> EventHandler:
    """handler.handle_event, with unique_sdk configured from `settings`."""
    import unique_sdk

    from .handler import handle_event

    unique_sdk.api_key = settings.api_key
    unique_sdk.app_id = settings.app_id
    unique_sdk.api_base = settings.api_base
    return handle_event


class HandlerLoader:
    """Loads the handler (and unique_sdk) for the first event, once, whichever thread gets there first.
    Until it loads (say handler.py has a bug), /webhook answers 503, so the platform retries."""

    def __init__(self) -> None:
        self._handler: EventHandler | None = None
        self._lock = threading.Lock()

    def __call__(self, settings: Settings) -> EventHandler:
        with self._lock:
            if self._handler is None:
                self._handler = load_handler(settings)
            return self._handler


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
