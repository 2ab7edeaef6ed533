"""In a rendered app: importing the team's package or any runtime module builds nothing; the gunicorn target
`<app>:app` builds the app once, without waiting for unique_sdk (it loads on a background thread)."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

from ..conftest import APP
from .conftest import RUNTIME


def python(folder: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "ENCRYPTED_ENV_FILE"} | env
    return subprocess.run(
        [sys.executable, "-c", code], cwd=folder, env=environment, capture_output=True, text=True, check=False
    )


def test_importing_any_module_builds_no_app(monorepo: Path) -> None:
    runtime = [f"sdk_runtime.{info.name}" for info in pkgutil.iter_modules([str(RUNTIME)])]
    team = [f"{APP}.handler", f"{APP}.settings"]
    assert "sdk_runtime.answering" in runtime
    code = (
        f"import importlib, sdk_runtime, {APP}\n"
        f"for name in {[*runtime, *team]!r}: importlib.import_module(name)\n"
        f"assert 'app' not in vars({APP}), 'the app was built'\n"
    )
    result = python(monorepo / APP, code, HANDLER_THREADS="not a number")  # building the app would fail on this
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_the_gunicorn_target_builds_the_app_once_without_waiting_for_unique_sdk(monorepo: Path) -> None:
    code = (
        "import sys, threading\n"
        f"import {APP}\n"
        f"app = {APP}.app\n"
        f"assert app is {APP}.app\n"
        "loading = [t for t in threading.enumerate() if t.name == 'load-handler']\n"
        "print(type(app).__name__, 'background' if loading or 'unique_sdk' in sys.modules else 'nowhere')\n"
        "[t.join(30) for t in loading]\n"
        "assert 'unique_sdk' in sys.modules, 'the handler was not preloaded'\n"
    )
    result = python(monorepo / APP, code, ENDPOINT_SECRET="s")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Flask", "background"]
