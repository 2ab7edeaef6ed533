"""POST /webhook: check the delivery, acknowledge at once, handle the event in the background.

The platform's delivery rules (unique_sdk/docs/webhooks.md): 2xx is delivered; 3xx, 429 and 5xx are
retried up to five times with exponential backoff; any other status expires the delivery for good.
So 4xx only for what no retry can fix (unsigned, malformed, too old or too large), 5xx whenever a retry
may succeed (no secret configured yet, a signature made with another secret, pool full, replica
stopping), 2xx for events that are not ours.

A well-formed signature that matches none of the app's secrets gets 503, not 401: that is exactly what
a wrong or rotated ENDPOINT_SECRET looks like, and with 401 the platform would drop every event until
the fix; with 503 it retries them (five times, with backoff), so a secret fixed within that time saves
them. The cost: a forger's request also gets 503 (and a few retries of nothing); no handler runs for
it either way. A missing or malformed signature stays 401: no configuration of this app causes it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from flask import Blueprint, Response, current_app, request

from .dispatch import DeliveredIds, HandlerPool
from .events import EXTERNAL_MODULE_CHOSEN, ChatRequest, Event, InvalidEvent, parse_event
from .queueing import EventQueue
from .settings import RuntimeSettings
from .signing import CREATED_AT_HEADER, SIGNATURE_HEADER, SecretMismatch, SignatureError, verify
from .signing import FUTURE_SKEW as FUTURE_SKEW_SECONDS

logger = logging.getLogger(__name__)

FUTURE_SKEW = timedelta(seconds=FUTURE_SKEW_SECONDS)  # tolerated for a createdAt (and delivery time) ahead
MISMATCH_LOG_EVERY = 60.0  # seconds between two log lines about signatures made with another secret
HANDLED_EVENTS = frozenset({EXTERNAL_MODULE_CHOSEN})
UNCONFIGURED = (
    "ENDPOINT_SECRET is not set: /webhook answers 503 so the platform retries its events. Put the "
    "platform's signing secret for this webhook into UNIQUE_APP_ENDPOINT_SECRET (or ENDPOINT_SECRET) in the "
    "encrypted env file "
    "(python scripts/env_secrets.py edit <app>) and deploy again."
)

blueprint = Blueprint("webhook", __name__)


class MismatchLog:
    """Logs signatures made with another secret at most once per MISMATCH_LOG_EVERY s per worker, with
    how many there were since the last line (a wrong secret fails every event: one line each would flood)."""

    def __init__(self, every: float = MISMATCH_LOG_EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        self._every = every
        self._clock = clock
        self._lock = threading.Lock()
        self._count = 0
        self._next = 0.0

    def record(self) -> None:
        now = self._clock()
        with self._lock:
            self._count += 1
            if now < self._next:
                return
            count, self._count, self._next = self._count, 0, now + self._every
        logger.error(
            "webhook: %d deliveries signed with another secret (answered 503, the platform retries them): "
            "check that UNIQUE_APP_ENDPOINT_SECRET is the platform's current signing secret for this webhook; "
            "while it is rotated, put the old one in UNIQUE_APP_ENDPOINT_SECRET_PREVIOUS",
            count,
        )


@dataclass(frozen=True)
class WebhookState:
    """What the webhook route needs; one per app, stored in app.extensions."""

    settings: RuntimeSettings
    process: Callable[[Event], None]  # runs an accepted event in the background (the team's handler)
    ready: Callable[[], object]  # raises while the handler cannot be loaded
    pool: HandlerPool
    delivered: DeliveredIds
    cut: Callable[[Event], bool] | None = None  # completes an event's message with an apology at shutdown
    queue: EventQueue | None = None  # with Azure Storage configured: events go through its queue
    mismatches: MismatchLog = field(default_factory=MismatchLog)  # one per app, so per worker


def state() -> WebhookState:
    webhook: WebhookState = current_app.extensions["webhook"]
    return webhook


def reply(status: int, outcome: str, retry_after: int | None = None, **extra: str) -> Response:
    response = Response(json.dumps({"status": outcome, **extra}), status, mimetype="application/json")
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


@blueprint.post("/webhook")
def receive() -> Response:
    webhook = state()
    settings = webhook.settings
    if settings.deployed and not settings.endpoint_secret:
        logger.error(UNCONFIGURED)
        return reply(503, "not configured", retry_after=300, error="ENDPOINT_SECRET is not set")
    body = request.get_data(cache=False)  # the raw bytes (at most WEBHOOK_MAX_BYTES, else 413)
    try:
        event = _checked_event(body, settings)
    except SecretMismatch as error:  # a wrong or rotated secret: 503, so the platform retries (see above)
        webhook.mismatches.record()
        return reply(503, "signature mismatch", retry_after=60, error=str(error))
    except SignatureError as error:
        logger.warning("webhook refused: %s", error)
        return reply(401, "unauthorized", error=str(error))
    except InvalidEvent as error:
        logger.warning("webhook refused: %s", error)
        return reply(400, "invalid", error=str(error))

    if not _is_for_this_app(event, settings):
        return reply(200, "ignored")
    try:
        ChatRequest.from_event(event)
    except InvalidEvent as error:  # no retry can add the missing ids, and without them no answer
        logger.warning("webhook refused: %s", error)
        return reply(400, "invalid", error=str(error))
    try:
        webhook.ready()  # normally loaded at start; a handler.py that cannot load makes this raise
    except Exception:
        logger.exception("event %s: the handler cannot be loaded; answering 503 so the platform retries", event.id)
        return reply(503, "unavailable", retry_after=60, error="the event handler cannot be loaded")
    if webhook.queue is not None:
        return _enqueue(webhook.queue, event, body)
    if not webhook.delivered.first_time(event.id):
        return reply(200, "duplicate")
    cut = webhook.cut
    if not webhook.pool.submit(event.id, lambda: webhook.process(event), cut and (lambda: cut(event))):
        webhook.delivered.forget(event.id)  # the platform retries: the retry must not look like a duplicate
        return _busy(webhook.pool, event)
    logger.debug("accepted %s %s", event.event, event.id)  # the access log has one line per request already
    return reply(202, "accepted")


def _checked_event(body: bytes, settings: RuntimeSettings) -> Event:
    """The event of a genuine, fresh delivery; SignatureError (-> 401; SecretMismatch -> 503) or
    InvalidEvent (-> 400) otherwise.

    The signature is checked before the body is parsed. It covers the body only, not the delivery
    time header, so a replay could refresh that header: the signed createdAt must be fresh too.
    """
    if settings.endpoint_secret:
        headers = request.headers
        signature, created_at = headers.get(SIGNATURE_HEADER), headers.get(CREATED_AT_HEADER)
        verify(body, signature, created_at, settings.endpoint_secrets, settings.webhook_max_age)
    else:
        logger.warning("ENDPOINT_SECRET is not set: accepted an unsigned event (local development only)")
    event = parse_event(body)
    if event.created_at is not None:
        now = datetime.now(UTC)
        if event.created_at < now - timedelta(seconds=settings.webhook_max_age):
            raise SignatureError(f"event {event.id} was created more than {settings.webhook_max_age} s ago")
        if event.created_at > now + FUTURE_SKEW:
            raise SignatureError(f"event {event.id} was created in the future ({event.created_at.isoformat()})")
    return event


def _is_for_this_app(event: Event, settings: RuntimeSettings) -> bool:
    """An external-module event for one of this app's modules and assistants (the toolkit's filter:
    an empty list admits all). A mismatch is logged with both names: it is a configuration mistake."""
    if event.event not in HANDLED_EVENTS:
        return False
    if settings.module_names and event.module_name not in settings.module_names:
        logger.info(
            "event %s ignored: it is for module %r, this app answers %s (MODULE_NAME)",
            event.id,
            event.module_name,
            ", ".join(repr(name) for name in settings.module_names),
        )
        return False
    if settings.assistant_ids and event.assistant_id not in settings.assistant_ids:
        logger.info("event %s ignored: assistant %r is not in this app's assistant ids", event.id, event.assistant_id)
        return False
    return True


def _busy(pool: HandlerPool, event: Event) -> Response:
    if not pool.accepting:
        logger.warning("webhook refused: the replica is stopping (event %s)", event.id)
        return reply(503, "stopping", retry_after=10, error="this replica is stopping, retry later")
    logger.warning(
        "webhook refused: %d events in progress, the most this worker accepts (event %s)", pool.capacity, event.id
    )
    return reply(503, "busy", retry_after=10, error="too many events in progress, retry later")


def _enqueue(queue: EventQueue, event: Event, body: bytes) -> Response:
    """Acknowledge only once the event is in the queue (de-duplication happens when it is taken)."""
    try:
        queue.send(body)
    except Exception:
        logger.exception("event %s: the event queue cannot be written; answering 503 so the platform retries", event.id)
        return reply(503, "unavailable", retry_after=10, error="the event queue cannot be reached, retry later")
    return reply(202, "accepted")
