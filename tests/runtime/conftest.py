"""Fixtures for the runtime's tests. sdk_runtime is plain Python, identical in every app, so it is tested
here once, in place (template/{{app_name}}/sdk_runtime), with the dependencies of the shipped locks.

Teams' packages are written into a temporary folder (`team_package`): a handler and settings as a team
would write them, loaded by the runtime exactly as in a generated app.
"""

from __future__ import annotations

import itertools
import json
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from tools.azurite import Azurite
from tools.azurite import start as start_azurite

APP_FOLDER = Path(__file__).resolve().parents[2] / "template" / "{{app_name}}"
RUNTIME = APP_FOLDER / "sdk_runtime"
sys.path.insert(0, str(APP_FOLDER))

from sdk_runtime.events import Event  # noqa: E402  (after the path is set)
from sdk_runtime.factory import create_app  # noqa: E402
from sdk_runtime.settings import RuntimeSettings  # noqa: E402
from sdk_runtime.testing import FakePlatform, make_event, signed_delivery  # noqa: E402

SECRET = "test-endpoint-secret"
MODULE = "joke_of_the_day"

AppFactory = Callable[..., Flask]
_packages = itertools.count()


class Recorder:
    """A thread-safe stand-in for the runtime's answering: remembers the events it was given."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = threading.Condition()

    def __call__(self, event: Event) -> None:
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
    body, headers = signed_delivery(data, secret)
    if created_at is not None:
        headers["X-Unique-Created-At"] = str(created_at)
    return body, headers


def post(client: FlaskClient, body: bytes, headers: dict[str, str]) -> Any:
    return client.post("/webhook", data=body, headers=headers)


def reply_of(response: Any) -> dict[str, Any]:
    reply: dict[str, Any] = json.loads(response.data)
    return reply


def runtime_settings(**overrides: Any) -> RuntimeSettings:
    values: dict[str, Any] = {"endpoint_secret": SECRET, "module_names": (MODULE,), **overrides}
    return RuntimeSettings(**values)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def settings() -> RuntimeSettings:
    return runtime_settings()


@pytest.fixture
def make_app() -> Iterator[AppFactory]:
    """Builds apps whose handler pools are drained when the test ends, whatever happened.
    `make_app(settings, recorder)` records accepted events; other keywords go to create_app."""
    apps: list[Flask] = []

    def build(settings: RuntimeSettings, process: Callable[[Event], None] | None = None, **kwargs: Any) -> Flask:
        apps.append(create_app(kwargs.pop("package", None), settings=settings, process=process, **kwargs))
        return apps[-1]

    yield build
    for app in apps:
        app.extensions["webhook"].pool.drain(time.monotonic() + 10)


@pytest.fixture
def app(make_app: AppFactory, settings: RuntimeSettings, recorder: Recorder) -> Flask:
    return make_app(settings, recorder)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def webhook_url(make_app: AppFactory, recorder: Recorder) -> Iterator[str]:
    """The webhook of an app served on loopback (werkzeug, threaded) that records what it accepts."""
    server = make_server("127.0.0.1", 0, make_app(runtime_settings(), recorder), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/webhook"
    server.shutdown()
    thread.join(10)


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    with FakePlatform() as fake:
        yield fake


TeamPackage = Callable[..., str]


@pytest.fixture
def team_package(tmp_path: Path) -> Iterator[TeamPackage]:
    """Writes a team's package (handler.py, optionally settings.py) and makes it importable; returns its name."""
    sys.path.insert(0, str(tmp_path))
    names: list[str] = []

    def write(handler: str, settings: str | None = None) -> str:
        name = f"team_app_{next(_packages)}"
        folder = tmp_path / name
        folder.mkdir()
        (folder / "__init__.py").write_text("")
        (folder / "handler.py").write_text(textwrap.dedent(handler))
        if settings is not None:
            (folder / "settings.py").write_text(textwrap.dedent(settings))
        names.append(name)
        return name

    yield write
    sys.path.remove(str(tmp_path))
    for module in [m for m in sys.modules if any(m == n or m.startswith(f"{n}.") for n in names)]:
        del sys.modules[module]


@pytest.fixture
def azurite(tmp_path: Path) -> Iterator[Azurite]:
    """The Azure Storage emulator's queue and table services on loopback (npm azurite, cached install)."""
    emulator = start_azurite(tmp_path / "azurite")
    yield emulator
    emulator.stop()
