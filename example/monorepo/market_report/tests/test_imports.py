"""Importing the app's modules builds nothing; `market_report:app` builds the app, without unique_sdk."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import market_report

APP_FOLDER = Path(__file__).resolve().parent.parent


def python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "ENCRYPTED_ENV_FILE"} | env
    return subprocess.run(
        [sys.executable, "-c", code], cwd=APP_FOLDER, env=environment, capture_output=True, text=True, check=False
    )


def test_importing_any_module_builds_no_app() -> None:
    modules = [info.name for info in pkgutil.iter_modules(market_report.__path__, "market_report.")]
    assert "market_report.events" in modules
    code = (
        "import importlib, market_report\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "assert 'app' not in vars(market_report), 'the app was built'\n"
    )
    result = python(code, HANDLER_THREADS="not a number")  # building the app would fail on this
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_the_gunicorn_target_builds_the_app_once_and_leaves_unique_sdk_for_the_first_event() -> None:
    code = (
        "import sys, market_report\n"
        "app = market_report.app\n"
        "assert app is market_report.app\n"
        "assert 'unique_sdk' not in sys.modules, 'unique_sdk is on the start path'\n"
        "print(type(app).__name__)\n"
    )
    result = python(code, ENDPOINT_SECRET="s")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("Flask")
