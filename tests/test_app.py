"""The generated app, installed with the real Poetry from its shipped lock file, passes its own
tests, lint and mypy --strict, serves locally, and its lock files are fresh for every supported Python."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import sys
import time
import urllib.request
from pathlib import Path

import jinja2
import pytest

from tools.net import free_port, wait_for_http
from tools.platform_events import runtime_module

from .conftest import APP, PYTHONS, TEMPLATE, InstalledApp, run, tool_env

pytestmark = pytest.mark.slow


def test_generated_tests_pass(installed_app: InstalledApp) -> None:
    result = run(installed_app.bin / "pytest", "-q", "-p", "no:cacheprovider", cwd=installed_app.folder, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b(\d+) passed\b", result.stdout)
    assert " failed" not in result.stdout
    assert "error" not in result.stdout.lower().split("passed")[-1]


def test_generated_code_is_ruff_clean(installed_app: InstalledApp) -> None:
    run(installed_app.bin / "ruff", "check", ".", cwd=installed_app.folder)
    run(installed_app.bin / "ruff", "format", "--check", ".", cwd=installed_app.folder)
    scripts = installed_app.repo / "scripts"
    run(installed_app.bin / "ruff", "check", "--select", "E,F,W,I,B,UP,SIM", "--line-length", "120", scripts)
    run(installed_app.bin / "ruff", "format", "--check", "--line-length", "120", scripts)


def test_generated_code_passes_mypy_strict(installed_app: InstalledApp) -> None:
    """With the generated pyproject's own configuration (strict, the app package and its tests)."""
    result = run(installed_app.bin / "mypy", cwd=installed_app.folder, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout
    config = (installed_app.folder / "pyproject.toml").read_text()
    assert "strict = true" in config


@pytest.mark.parametrize("python", PYTHONS)
def test_shipped_lock_matches_pyproject(per_python: dict[str, Path], python: str) -> None:
    """Fails when locks/ is stale: run `.venv/bin/python -m tools.refresh_locks`."""
    result = run(
        sys.executable,
        "-m",
        "poetry",
        "check",
        "--lock",
        cwd=per_python[python] / APP,
        check=False,
        POETRY_VIRTUALENVS_CREATE="false",
    )
    assert result.returncode == 0, f"stale lock for Python {python}: {result.stdout}{result.stderr}"


def test_dependencies_install_from_pyproject_and_lock_alone(tmp_path: Path, installed_app: InstalledApp) -> None:
    """The image's deps stage, run as the rendered Dockerfile writes it, before any app code exists."""
    dockerfile = (installed_app.repo / "Dockerfile").read_text()
    deps = dockerfile[dockerfile.index("AS deps") : dockerfile.index("AS runtime")]
    assert "COPY pyproject.toml poetry.lock ./" in deps
    command = re.search(r"^RUN (POETRY\S+ )+\\\n\s+(poetry install .*)$", deps, re.MULTILINE)
    assert command, deps
    settings = dict(item.split("=", 1) for item in command.group(0).split("\\")[0].split()[1:])
    for name in ["pyproject.toml", "poetry.lock"]:
        shutil.copy(installed_app.folder / name, tmp_path / name)
    run(sys.executable, "-m", *shlex.split(command.group(2)), cwd=tmp_path, **settings)
    result = run(tmp_path / ".venv/bin/python", "-c", "import flask, gunicorn, dotenv, unique_sdk; print('ok')")
    assert result.stdout.strip() == "ok"
    assert not (tmp_path / ".venv/bin/pytest").exists(), "dev dependencies must stay out of the image"


def test_app_name_refusals_cover_every_installed_module(installed_app: InstalledApp) -> None:
    """An app named like any module its environment can import would shadow it."""
    site = next((installed_app.folder / ".venv/lib").glob("python*/site-packages"))
    modules = {
        p.stem if p.suffix == ".py" else p.name
        for p in site.iterdir()
        if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"
    }
    candidates = {m for m in modules if re.fullmatch(r"[a-z][a-z_]*[a-z]", m) and "__" not in m}
    naming = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE)).get_template("extensions/naming.jinja").module
    reserved = set(naming.DEPENDENCY_MODULES) | set(naming.STDLIB_MODULES)
    assert candidates - {"_virtualenv"} <= reserved, f"add to DEPENDENCY_MODULES: {sorted(candidates - reserved)}"


def test_local_run_with_reload_serves_health_and_handles_unsigned_events(installed_app: InstalledApp, spawn) -> None:
    """`flask run` as the README says, no ENDPOINT_SECRET: local development needs no extra step."""
    testing = runtime_module("testing")
    with testing.FakePlatform() as platform:
        port = free_port()
        process = spawn(
            [installed_app.bin / "flask", "--app", APP, "run", "--reload", "--port", str(port)],
            cwd=installed_app.folder,
            env=tool_env(API_KEY="k", APP_ID="a", API_BASE=platform.url),
        )
        assert wait_for_http(f"http://127.0.0.1:{port}/health", process) == b'{"status":"ok"}\n'
        body = testing.body_of(testing.make_event(APP))
        request = urllib.request.Request(f"http://127.0.0.1:{port}/webhook", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202
        assert len(platform.wait_for(2, timeout=30)) == 2  # the example handler answered in the chat
    os.killpg(process.pid, signal.SIGINT)  # Ctrl+C, as a developer stops it: the app cleans up after itself
    assert process.wait(15) == 0


def test_local_gunicorn_without_encrypted_file_serves_health(installed_app: InstalledApp, spawn) -> None:
    """`poetry run gunicorn --config gunicorn.conf.py`: the production server, local settings."""
    port = free_port()
    process = spawn(
        [installed_app.bin / "gunicorn", "--config", "gunicorn.conf.py"],
        cwd=installed_app.folder,
        env=tool_env(PORT=str(port), HOST="127.0.0.1"),
    )
    assert wait_for_http(f"http://127.0.0.1:{port}/health", process) == b'{"status":"ok"}\n'


def test_event_socket_bridge_runs_as_documented_and_stops_cleanly_on_ctrl_c(installed_app: InstalledApp, spawn) -> None:
    testing = runtime_module("testing")
    with testing.FakePlatform() as platform:  # a stream that stays open and silent
        env = tool_env(BASE_URL=platform.url, API_KEY="k", APP_ID="a", COMPANY_ID="c")
        process = spawn(
            [installed_app.bin / "python", "-m", "sdk_runtime.event_socket"], cwd=installed_app.folder, env=env
        )
        deadline = time.monotonic() + 20
        output = ""
        while "connected to" not in output and time.monotonic() < deadline:
            output += process.stdout.readline()
        assert "connected to" in output, output
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=15)
    assert process.returncode == 0
    assert "stopped after 0 events" in rest
    assert "Traceback" not in output + rest
