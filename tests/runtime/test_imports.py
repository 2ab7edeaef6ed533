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


def test_gunicorns_master_loads_the_sdk_and_its_client_before_the_port_opens(monorepo: Path) -> None:
    """gunicorn.conf.py's on_starting (run by the master before it binds) imports unique_sdk and builds the
    SDK's HTTP client, which the workers inherit: the SDK would otherwise build one per thread of a first
    burst, unguarded (each loads the CA bundle), and the replica's TCP probe would pass before it can answer."""
    code = (
        "import runpy, sys\n"
        "conf = runpy.run_path('gunicorn.conf.py')\n"
        "assert 'unique_sdk' not in sys.modules, 'reading the config imported the SDK'\n"
        "conf['on_starting'](None)\n"
        "import unique_sdk\n"
        "client = unique_sdk.default_http_client\n"
        "assert client is not None, 'no client built'\n"
        "assert unique_sdk.APIRequestor(user_id=None, company_id=None)._client is client\n"
    )
    result = python(monorepo / APP, code)
    assert result.returncode == 0, result.stderr


def test_a_first_burst_of_threads_shares_one_sdk_client(monorepo: Path) -> None:
    """After the runtime configures the SDK, 32 threads' first requests all use one client."""
    code = (
        "import threading\n"
        "import unique_sdk\n"
        "from sdk_runtime.answering import configure_sdk\n"
        "from sdk_runtime.settings import RuntimeSettings\n"
        "configure_sdk(RuntimeSettings.from_env({'ENDPOINT_SECRET': 's'}))\n"
        "clients = []\n"
        "barrier = threading.Barrier(32)\n"
        "def first_call():\n"
        "    barrier.wait()\n"
        "    clients.append(unique_sdk.APIRequestor(user_id=None, company_id=None)._client)\n"
        "threads = [threading.Thread(target=first_call) for _ in range(32)]\n"
        "[t.start() for t in threads]\n"
        "[t.join() for t in threads]\n"
        "print(len({id(c) for c in clients}))\n"
    )
    result = python(monorepo / APP, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1"]
