"""Event Socket bridge: platform events over server-sent events, delivered to the local app.

For development without a tunnel. It subscribes to the platform's Event Socket and POSTs each
event to the running app's /webhook, signed with the local ENDPOINT_SECRET exactly as the
platform signs webhooks, so events take the production code path (no second copy of the logic).

    poetry run python -m sdk_runtime.event_socket     # from the app folder; the app at localhost:<local_port>

The stream is the platform URL's host (UNIQUE_API_BASE_URL, or BASE_URL/API_BASE) with the Event Socket's
path, as unique_toolkit builds it; the headers are the toolkit's too. DEVELOPMENT ONLY: the platform's docs
require users to acknowledge the Event Socket's risks in writing and to accept its Terms of Use.

The platform closes the stream after about 10 minutes and does not replay missed events, so a
stream that was open and then closed or went quiet is reopened at once; only connections that fail
wait (capped exponential backoff with jitter, reset by the next good connection), until Ctrl+C.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

import httpx
from httpx_sse import SSEError, connect_sse

from .events import EXTERNAL_MODULE_CHOSEN, InvalidEvent, parse_event
from .settings import RuntimeSettings, load_settings
from .signing import delivery_headers

logger = logging.getLogger(__name__)

STREAM_PATH = "/public/event-socket/events/stream"
API_VERSION = "2023-12-06"  # the x-api-version unique_toolkit sends (its UniqueApi.version default)
DEFAULT_SUBSCRIPTIONS = (EXTERNAL_MODULE_CHOSEN,)
HEALTHY_AFTER = 1.0  # a stream open this long (or that delivered events) counts as a good connection


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with jitter: failure n (from 1) waits between half and all of
    min(cap, base * 2**(n-1)) seconds."""

    base: float = 1.0
    cap: float = 30.0

    def delay(self, failures: int) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** min(max(failures - 1, 0), 16))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 jitter, not cryptography


def stream_url(base: str, subscriptions: Iterable[str]) -> str:
    """The stream URL, subscriptions joined with literal commas as the platform's toolkit sends them."""
    names = ",".join(quote(name, safe="") for name in subscriptions)
    return f"{base.rstrip('/')}{STREAM_PATH}?subscriptions={names}"


def stream_headers(settings: RuntimeSettings, last_event_id: str | None) -> dict[str, str]:
    headers = {
        "Authorization": f"Bearer {settings.api_key}",
        "x-app-id": settings.app_id,
        "x-company-id": settings.company_id,
        "x-api-version": API_VERSION,
        "Accept": "text/event-stream",
    }
    if settings.user_id:
        headers["x-user-id"] = settings.user_id
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    return headers


@dataclass
class Connection:
    """What one connection to the Event Socket did."""

    opened: bool = False  # the platform answered 2xx and the stream started
    received: int = 0
    ended: str = ""


class Bridge:
    """Reads the Event Socket and forwards matching events to `target` until `stop` is set."""

    def __init__(
        self,
        settings: RuntimeSettings,
        target: str = "",
        subscriptions: Iterable[str] = DEFAULT_SUBSCRIPTIONS,
        module_filter: Iterable[str] = (),
        assistant_filter: Iterable[str] = (),
        read_timeout: float = 60.0,
        backoff: Backoff = Backoff(),
    ) -> None:
        required = {
            "UNIQUE_APP_KEY (or API_KEY)": settings.api_key,
            "UNIQUE_APP_ID (or APP_ID)": settings.app_id,
            "UNIQUE_AUTH_COMPANY_ID (or COMPANY_ID)": settings.company_id,
        }
        if missing := [name for name, value in required.items() if not value]:
            raise ValueError(f"{', '.join(missing)} not set: the Event Socket needs them (see .env.example)")
        self.settings = settings
        self.url = stream_url(settings.stream_base, subscriptions)
        self.target = target or default_target(settings)
        self.subscriptions = tuple(subscriptions)
        self.module_filter = tuple(module_filter)
        self.assistant_filter = tuple(assistant_filter)
        self.backoff = backoff
        self.timeout = httpx.Timeout(10.0, read=read_timeout)
        self.last_event_id: str | None = None
        self.delivered = 0
        self.waits: list[float] = []  # the pause before each reconnection, in order

    def run(self, stop: threading.Event) -> None:
        failures = 0
        with httpx.Client(timeout=self.timeout) as client:
            while not stop.is_set():
                opened_at = time.monotonic()
                connection = self._connect(client, stop)
                lasted = time.monotonic() - opened_at
                good = connection.received > 0 or (connection.opened and lasted >= HEALTHY_AFTER)
                failures = 0 if good else failures + 1
                if stop.is_set():
                    break
                delay = self.backoff.delay(failures) if failures else 0.0
                self.waits.append(delay)
                when = f"in {delay:.1f} s" if delay else "now"
                logger.warning("event socket: %s; reconnecting %s", connection.ended, when)
                stop.wait(delay)

    def _connect(self, client: httpx.Client, stop: threading.Event) -> Connection:
        """One connection, forwarding events until it ends."""
        connection = Connection()
        headers = stream_headers(self.settings, self.last_event_id)
        try:
            with connect_sse(client, "GET", self.url, headers=headers) as source:
                source.response.raise_for_status()
                connection.opened = True
                logger.info("event socket: connected to %s", self.url)
                for message in source.iter_sse():
                    self.last_event_id = message.id or self.last_event_id
                    if message.data:
                        connection.received += 1
                        self._forward(client, message.data)
                    if stop.is_set():
                        break
            connection.ended = "stream closed by the server"
        except httpx.ReadTimeout:
            connection.ended = f"no data for {self.timeout.read:g} s"
        except (httpx.HTTPError, SSEError) as error:
            connection.ended = f"{type(error).__name__}: {error}"
        return connection

    def _forward(self, client: httpx.Client, data: str) -> None:
        try:
            event = parse_event(data)
        except InvalidEvent as error:
            logger.warning("event socket: skipped a malformed message: %s", error)
            return
        if event.event not in self.subscriptions:
            return
        chosen = event.event == EXTERNAL_MODULE_CHOSEN
        if self.module_filter and chosen and event.module_name not in self.module_filter:
            logger.info("event socket: %s is for module %r: skipped", event.id, event.module_name)
            return
        if self.assistant_filter and event.assistant_id not in self.assistant_filter:
            logger.info("event socket: %s is for another assistant: skipped", event.id)
            return
        body = data.encode()
        headers = delivery_headers(body, self.settings.endpoint_secret, json.loads(data))
        try:
            response = client.post(self.target, content=body, headers=headers)
        except httpx.HTTPError as error:
            logger.error(
                "event socket: could not deliver %s to %s: %s (is the app running?)", event.id, self.target, error
            )
            return
        self.delivered += 1
        logger.info("event socket: %s %s -> %s %s", event.event, event.id, response.status_code, response.text.strip())


def default_target(settings: RuntimeSettings) -> str:
    return f"http://localhost:{settings.local_port}/webhook"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdk_runtime.event_socket", description="Event Socket bridge")
    parser.add_argument("--target", help="the app's webhook URL (default: http://localhost:<local_port>/webhook)")
    parser.add_argument("--subscriptions", default=",".join(DEFAULT_SUBSCRIPTIONS), help="comma-separated events")
    parser.add_argument("--any-module", action="store_true", help="forward events for every module too")
    parser.add_argument("--assistant", help="forward only events of this assistant id (payload.assistantId)")
    args = parser.parse_args(argv)

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logger.warning("event socket: development only (the platform's Terms of Use for the Event Socket apply)")
    try:
        settings = load_settings()
    except ValueError as error:
        parser.error(str(error))
    if not settings.endpoint_secret:
        logger.warning("ENDPOINT_SECRET is not set: events are forwarded unsigned (the local app accepts them)")
    try:
        bridge = Bridge(
            settings,
            target=args.target or "",
            subscriptions=[name.strip() for name in args.subscriptions.split(",") if name.strip()],
            module_filter=() if args.any_module else settings.module_names,
            assistant_filter=[args.assistant] if args.assistant else settings.assistant_ids,
        )
    except ValueError as error:
        parser.error(str(error))
    stop = threading.Event()
    try:
        bridge.run(stop)
    except KeyboardInterrupt:
        stop.set()
        logger.info("event socket: stopped after %d events", bridge.delivered)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
