"""POST /webhook: verify, filter, acknowledge at once, handle in the background.

The platform retries 3xx, 429 and 5xx and gives up for good on any other 4xx, so:
events for other modules or of other types get 2xx (ignored), never 4xx; a full pool gets 503.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import unique_sdk
from flask import Blueprint, Response, current_app, request

from .dispatch import BoundedExecutor, SeenIds
from .events import EXTERNAL_MODULE_CHOSEN, Event, InvalidEvent, parse_event
from .settings import Settings

logger = logging.getLogger(__name__)

TOLERANCE_SECONDS = 300
SIGNATURE_HEADER = "X-Unique-Signature"
CREATED_AT_HEADER = "X-Unique-Created-At"
HANDLED_EVENTS = frozenset({EXTERNAL_MODULE_CHOSEN})

EventHandler = Callable[[Event, Settings], None]
blueprint = Blueprint("webhook", __name__)


@dataclass(frozen=True)
class WebhookState:
    """What the webhook route needs; one per app, stored in app.extensions."""

    settings: Settings
    handler: EventHandler
    executor: BoundedExecutor
    seen: SeenIds


def state() -> WebhookState:
    return current_app.extensions["webhook"]


def _reply(status: int, outcome: str, **extra: str) -> Response:
    return Response(json.dumps({"status": outcome, **extra}), status, mimetype="application/json")


@blueprint.post("/webhook")
def receive() -> Response:
    webhook = state()
    body = request.get_data(cache=False)  # the raw bytes: the signature covers exactly these
    try:
        event = _verified_event(body, webhook.settings)
    except unique_sdk.SignatureVerificationError as error:
        logger.warning("webhook refused: %s", error.args[0] if error.args else "bad signature")
        return _reply(401, "unauthorized", error="signature missing, wrong or stale")
    except InvalidEvent as error:
        logger.warning("webhook refused: %s", error)
        return _reply(400, "invalid", error=str(error))

    if not _is_for_this_app(event, webhook.settings):
        return _reply(200, "ignored")
    if _is_stale(event):
        logger.warning("webhook refused: event %s was created at %s (replay?)", event.id, event.created_at)
        return _reply(401, "unauthorized", error="event is older than the tolerance")
    if not webhook.seen.first_time(event.id):
        return _reply(200, "duplicate")
    if not webhook.executor.submit(lambda: webhook.handler(event, webhook.settings)):
        webhook.seen.forget(event.id)  # 503 makes the platform retry: the retry must not look like a duplicate
        logger.warning("webhook refused: handler pool is full (event %s)", event.id)
        response = _reply(503, "busy", error="too many events in progress, retry later")
        response.headers["Retry-After"] = "5"
        return response
    logger.debug("accepted %s %s", event.event, event.id)  # the access log has one line per request already
    return _reply(202, "accepted")


def _verified_event(body: bytes, settings: Settings) -> Event:
    """The parsed event; raises SignatureVerificationError (-> 401) or InvalidEvent (-> 400)."""
    if settings.verifies_signatures:
        # The SDK's check (what Webhook.construct_event runs), without building an SDK object we do not use.
        unique_sdk.WebhookSignature.verify_header(
            body.decode("utf-8", errors="replace"),
            request.headers.get(SIGNATURE_HEADER, ""),
            _header_timestamp(),
            settings.endpoint_secret,
            TOLERANCE_SECONDS,
        )
    else:
        logger.warning("ENDPOINT_SECRET is not set: this webhook's signature was NOT verified")
    return parse_event(body)


def _header_timestamp() -> int:
    raw = request.headers.get(CREATED_AT_HEADER, "")
    try:
        return int(raw)
    except ValueError:
        raise unique_sdk.SignatureVerificationError(f"{CREATED_AT_HEADER} is missing or not unix seconds") from None


def _is_for_this_app(event: Event, settings: Settings) -> bool:
    return event.event in HANDLED_EVENTS and event.module_name == settings.module_name


def _is_stale(event: Event) -> bool:
    """The signature covers the body, not the timestamp header: check the body's own createdAt too."""
    return datetime.now(UTC) - event.created_at > timedelta(seconds=TOLERANCE_SECONDS)
