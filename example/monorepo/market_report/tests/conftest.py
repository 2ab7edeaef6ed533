"""Shared fixtures: the app with a recording handler, the fake platform, events signed as the platform signs them."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from market_report.events import Event
from market_report.factory import create_app
from market_report.settings import Settings
from market_report.signing import delivery_headers
from market_report.testing import FakePlatform, body_of, make_event

SECRET = "test-endpoint-secret"
MODULE = "MARKET_REPORT"

AppFactory = Callable[..., Flask]


class Recorder:
    """A thread-safe event handler that remembers what it was given."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = threading.Condition()

    def __call__(self, event: Event, settings: Settings) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Event]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.events) >= count, timeout)
            return list(self.events)


def event(module: str = MODULE, **envelope: Any) -> dict[str, Any]:
    """A fresh event (by default an external-module event for this app)."""
    return make_event(module, **envelope)


def signed(data: dict[str, Any], secret: str = SECRET, created_at: int | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a delivery of `data`, as the platform sends it."""
    body = body_of(data)
    headers = delivery_headers(body, secret, data)
    if created_at is not None:
        headers["X-Unique-Created-At"] = str(created_at)
    return body, headers


def post(client: FlaskClient, body: bytes, headers: dict[str, str]) -> Any:
    return client.post("/webhook", data=body, headers=headers)


def reply_of(response: Any) -> dict[str, Any]:
    reply: dict[str, Any] = json.loads(response.data)
    return reply


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def settings() -> Settings:
    return Settings(endpoint_secret=SECRET, module_name=MODULE)


@pytest.fixture
def make_app() -> Iterator[AppFactory]:
    """Builds apps whose handler pools are drained when the test ends, whatever happened."""
    apps: list[Flask] = []

    def build(settings: Settings, handler: Callable[[Event, Settings], None] | None = None) -> Flask:
        apps.append(create_app(settings, handler))
        return apps[-1]

    yield build
    for app in apps:
        app.extensions["webhook"].pool.drain(time.monotonic() + 10)


@pytest.fixture
def app(make_app: AppFactory, settings: Settings, recorder: Recorder) -> Flask:
    return make_app(settings, recorder)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    with FakePlatform() as fake:
        yield fake
