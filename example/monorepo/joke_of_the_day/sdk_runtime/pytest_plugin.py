"""pytest fixtures for your app's tests (enabled by the app folder's conftest.py).

- `harness`: your app (handler.py, settings.py) behind its real, signed webhook, answering against a fake
  platform on loopback: `harness.deliver(harness.event(text="Hi"))` returns what the chat got.
- `platform`: a bare FakePlatform, for tests that call the platform without the webhook.
- `app_package`: the name of your app's package (the app folder's name).

It also checks, once per run, that this folder (sdk_runtime) is as the template wrote it (the template
tests it once, in its own repository, so an edited copy would run untested code), and that handler.py
follows the handler contract (a handler written for an older release is named, with what to change).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from .answering import HandlerContractError, load_handler_of
from .testing import FakePlatform, Harness

RUNTIME = Path(__file__).resolve().parent
MANIFEST = RUNTIME / "MANIFEST"


def edited_files(runtime: Path = RUNTIME) -> list[str]:
    """Files of sdk_runtime that differ from the MANIFEST the template wrote (changed, missing or added)."""
    expected = dict(line.split("  ", 1)[::-1] for line in (runtime / "MANIFEST").read_text().splitlines() if line)
    present = {p.name for p in runtime.iterdir() if p.is_file() and p.name != "MANIFEST"}
    changed = [
        name
        for name in sorted(present | expected.keys())
        if name not in present
        or name not in expected
        or hashlib.sha256((runtime / name).read_bytes()).hexdigest() != expected[name]
    ]
    return changed


def pytest_sessionstart(session: pytest.Session) -> None:
    if changed := edited_files():
        raise pytest.UsageError(  # one line, exit code 4, no traceback
            f"sdk_runtime/ is the template's and was edited ({', '.join(changed)}). Undo with "
            "`git checkout -- sdk_runtime`; put app-specific code in your package, and changes the "
            "runtime needs in an issue or pull request on sdk-deploy-template."
        )
    package = session.config.rootpath.name
    if (session.config.rootpath / package / "handler.py").is_file():
        try:
            load_handler_of(package)
        except HandlerContractError as error:
            raise pytest.UsageError(str(error)) from None


@pytest.fixture
def app_package(request: pytest.FixtureRequest) -> str:
    return request.config.rootpath.name


@pytest.fixture
def harness(app_package: str) -> Iterator[Harness]:
    with Harness(app_package) as running:
        yield running


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    with FakePlatform() as fake:
        yield fake
