"""The Flask app factory: routes, settings, SDK, logging and the handler pool, wired once."""

from __future__ import annotations

import uuid

import unique_sdk
from flask import Flask, Response, g, jsonify, request

from . import logs
from .dispatch import BoundedExecutor, SeenIds
from .handler import handle_event
from .settings import Settings, load_settings
from .webhook import TOLERANCE_SECONDS, EventHandler, WebhookState
from .webhook import blueprint as webhook_blueprint

REQUEST_ID_HEADER = "X-Request-Id"


def create_app(settings: Settings | None = None, handler: EventHandler = handle_event) -> Flask:
    """Build the app. Tests pass their own settings and handler; production reads the environment."""
    settings = settings or load_settings()
    logger = logs.configure_logging(__package__ or __name__, settings.log_level)
    _configure_sdk(settings)

    app = Flask(__name__)
    app.extensions["webhook"] = WebhookState(
        settings=settings,
        handler=handler,
        executor=BoundedExecutor(settings.handler_threads, settings.handler_backlog),
        seen=SeenIds(ttl=2 * TOLERANCE_SECONDS),
    )
    app.register_blueprint(webhook_blueprint)
    app.add_url_rule("/health", "health", _health, methods=["GET"])
    app.before_request(_start_request)
    app.after_request(_finish_request)

    if not settings.verifies_signatures:
        logger.warning(
            "ENDPOINT_SECRET is not set: webhook signatures are NOT verified. Fine for a first deploy; "
            "set it (and re-encrypt the env file) as soon as the platform gives you the secret."
        )
    return app


def _configure_sdk(settings: Settings) -> None:
    # Module-level SDK settings: written once here, before any request thread runs, then only read.
    unique_sdk.api_key = settings.api_key
    unique_sdk.app_id = settings.app_id
    unique_sdk.api_base = settings.api_base


def _health() -> Response:
    return jsonify(status="ok")


def _start_request() -> None:
    # The platform's delivery id is the most useful id to log; else the caller's, else a new one.
    rid = request.headers.get("X-Unique-Id") or request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
    g.request_id_token = logs.request_id.set(rid[:64])


def _finish_request(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = logs.request_id.get()
    if (token := g.pop("request_id_token", None)) is not None:
        logs.request_id.reset(token)
    return response
