"""The generated app under its production gunicorn settings, and bare Flask beside it, on loopback.

The generated app runs as the image runs it (its gunicorn.conf.py, its worker) with its own test
target `sdk_runtime.testing:recording_app` (the real app; a handler that takes RECORDING_APP_SECONDS, then
records the event id). Bare Flask runs under the same settings with gunicorn's stock gthread worker.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from tools.net import free_port, wait_for_http
from tools.platform_events import runtime_module, signed_event

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret"
SLOW_CLIENTS = 16  # more than 2 workers x 4 threads
PROBE_TIMEOUT = 2.0

BARE_APP = """
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/health")
def health():
    return jsonify(status="ok")


@app.post("/webhook")
def webhook():
    request.get_data()
    return jsonify(status="accepted"), 202
"""
# What the platform docs advise ("acknowledge quickly and process asynchronously"), done plainly.
BARE_QUEUE_APP = """
import os, time
from concurrent.futures import ThreadPoolExecutor
from flask import Flask, jsonify, request

app = Flask(__name__)
pool = ThreadPoolExecutor(4)


def handle(event_id):
    time.sleep(float(os.environ["RECORDING_APP_SECONDS"]))
    with open(os.environ["RECORDING_APP_DONE_FILE"], "a") as done:
        done.write(event_id + "\\n")


@app.get("/health")
def health():
    return jsonify(status="ok")


@app.post("/webhook")
def webhook():
    pool.submit(handle, request.get_json()["id"])
    return jsonify(status="accepted"), 202
"""


@dataclass(frozen=True)
class Target:
    module: str
    app_name: str = "app"
    worker_class: str | None = None  # None: the app's gunicorn.conf.py decides


@dataclass(frozen=True)
class InstalledApp:
    folder: Path  # the generated app, installed with Poetry from its lock
    wrappers: Path  # the bare Flask apps

    @property
    def generated(self) -> Target:
        return Target("sdk_runtime.testing", "recording_app")

    def start(self, target: Target, port: int, **env: str) -> subprocess.Popen[str]:
        environment = {
            **{k: v for k, v in os.environ.items() if k != "ENCRYPTED_ENV_FILE"},
            "PATH": f"{self.folder / '.venv/bin'}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(self.wrappers),
            "MODULE": target.module,
            "APP_NAME": target.app_name,
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "GUNICORN_LOG_LEVEL": "warning",
            "ENDPOINT_SECRET": SECRET,
            "MODULE_NAME": self.folder.name,
            "HANDLER_TIMEOUT": "1",  # the load tests' handler does nothing: room for what the load sends
            **env,
        }
        command = [
            str(self.folder / ".venv/bin/gunicorn"),
            "--config",
            "gunicorn.conf.py",
            "--access-logfile",
            "/dev/null",
        ]
        if target.worker_class:
            command += ["--worker-class", target.worker_class]
        return subprocess.Popen(
            command,
            cwd=self.folder,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=self.in_child,
        )

    def in_child(self) -> None:
        """Runs in gunicorn's process before it starts (a subclass puts it under a CPU quota)."""


def install_app(folder: Path, work: Path) -> InstalledApp:
    """Install a rendered app's runtime dependencies with Poetry from its lock, as the image does."""
    subprocess.run(
        [sys.executable, "-m", "poetry", "install", "--only", "main", "--no-interaction"],
        cwd=folder,
        check=True,
        capture_output=True,
        env={**os.environ, "POETRY_VIRTUALENVS_IN_PROJECT": "true"},
    )
    wrappers = work / "wrappers"
    wrappers.mkdir()
    (wrappers / "bare_app.py").write_text(BARE_APP)
    (wrappers / "bare_queue_app.py").write_text(BARE_QUEUE_APP)
    return InstalledApp(folder=folder, wrappers=wrappers)


def stop(process: subprocess.Popen[str], timeout: float = 40) -> str:
    process.terminate()
    try:
        return process.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()[0]


def serving(app: InstalledApp, target: Target, **env: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    server = app.start(target, port, **env)
    wait_for_http(f"http://127.0.0.1:{port}/health", server)
    return server, port


def load(app: InstalledApp, target: Target, path: str, duration: float, signed: bool) -> dict[str, float]:
    """Closed-loop load from benchmarks/load.py (its own process), 8 connections."""
    server, port = serving(app, target)
    try:
        command = [sys.executable, "-m", "benchmarks.load", "--url", f"http://127.0.0.1:{port}{path}"]
        command += ["--duration", str(duration), "--concurrency", "8"]
        if signed:
            command += ["--webhook-secret", SECRET, "--app-folder", str(app.folder)]
        result = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
        measured: dict[str, float] = json.loads(result.stdout)
        return measured
    finally:
        stop(server)


def cold_start(app: InstalledApp, target: Target) -> float:
    port = free_port()
    started = time.perf_counter()
    server = app.start(target, port)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", server, interval=0.005)
        return time.perf_counter() - started
    finally:
        stop(server)


def probe_health(port: int, seconds: float) -> tuple[list[float], int]:
    """GET /health one after another for `seconds`: latencies (a failure counts as the timeout), failures."""
    latencies, failures = [], 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=PROBE_TIMEOUT) as response:
                response.read()
            latencies.append(time.monotonic() - started)
        except OSError:
            failures += 1
            latencies.append(PROBE_TIMEOUT)
    return latencies, failures


def slow_clients(app: InstalledApp, target: Target, probe_seconds: float, cut_within: float) -> dict[str, float]:
    """16 clients trickle a header or a body a byte every 0.5 s; meanwhile /health is probed. Then wait
    up to `cut_within` s for the server to close the slow connections."""
    trickle = runtime_module("testing").trickle
    firsts = [b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "] * (SLOW_CLIENTS // 2)
    firsts += [b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"] * (SLOW_CLIENTS // 2)
    server, port = serving(app, target)
    stop_trickling = threading.Event()
    try:
        with ThreadPoolExecutor(SLOW_CLIENTS) as pool:
            slow = [pool.submit(trickle, port, first, stop_trickling, 0.5) for first in firsts]
            time.sleep(1)
            latencies, failures = probe_health(port, probe_seconds)
            wait(slow, timeout=max(0.0, cut_within - probe_seconds - 1))
            stop_trickling.set()
            cut = [future.result() for future in slow]
    finally:
        stop(server)
    ordered = sorted(latencies)
    return {
        "probes": len(latencies),
        "failures": failures,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "cut": sum(seconds is not None for seconds in cut),
        "cut_after_s": max((seconds for seconds in cut if seconds is not None), default=float("nan")),
    }


def shutdown(app: InstalledApp, target: Target, events: int, handler_seconds: float, work: Path) -> dict[str, float]:
    """A burst of signed events (16 at a time) to a handler that takes `handler_seconds`, then SIGTERM."""
    done = work / f"done-{time.monotonic_ns()}.txt"
    done.touch()
    env = {"RECORDING_APP_SECONDS": str(handler_seconds), "RECORDING_APP_DONE_FILE": str(done)}
    server, port = serving(app, target, HANDLER_TIMEOUT=str(int(handler_seconds)), **env)
    deliveries = [signed_event(app.folder.name, SECRET) for _ in range(events)]

    def deliver(delivery: tuple[bytes, dict[str, str]]) -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/webhook", data=delivery[0], headers=delivery[1])
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return 0

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(deliver, deliveries))
    started = time.monotonic()
    stop(server)
    stopped_after = time.monotonic() - started
    acknowledged = {
        json.loads(body)["id"] for (body, _), status in zip(deliveries, statuses, strict=True) if 200 <= status < 300
    }
    completed = set(done.read_text().split())
    return {
        "events": events,
        "acknowledged": len(acknowledged),
        "completed": len(completed & acknowledged),
        "lost": len(acknowledged - completed),
        "refused_5xx": sum(500 <= status < 600 for status in statuses),
        "stop_s": stopped_after,
    }


def median_of(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def runtime_size_mb(app: InstalledApp) -> tuple[float, list[tuple[str, float]]]:
    script = (
        "import importlib.metadata as m, json; print(json.dumps({d.metadata['Name']: "
        "sum((f.size or 0) for f in (d.files or [])) for d in m.distributions()}))"
    )
    python = app.folder / ".venv/bin/python"
    sizes = json.loads(subprocess.run([str(python), "-c", script], check=True, capture_output=True, text=True).stdout)
    sizes.pop("pip", None)
    total = sum(sizes.values()) / 1e6
    largest = sorted(((name, size / 1e6) for name, size in sizes.items()), key=lambda item: -item[1])[:5]
    return total, largest
