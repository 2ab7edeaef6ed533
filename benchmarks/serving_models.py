"""Serving models compared side by side (issue 18 item 4), with the connection-flood run (item 5).

    .venv/bin/python -m benchmarks.serving_models            # every model, floods of 1000, 2000, 4000
    .venv/bin/python -m benchmarks.serving_models --quick    # shorter probes, one flood of 2000
    .venv/bin/python -m benchmarks.serving_models --before v0.4.0   # also the worker of a past revision

One generated app, rendered from this working tree and installed from its lock, served under its own
gunicorn.conf.py (2 workers; 4 threads where the model has threads) by each model in turn:

- the runtime's BufferingWorker (the shipped worker_class);
- gunicorn's stock gthread (27.x: it defers a connection to its poller until the first byte arrives);
- gunicorn's gevent worker;
- gunicorn's native ASGI worker, serving the WSGI app through a2wsgi (4 threads per worker);
- uvicorn-worker (the maintained successor of uvicorn.workers), the same a2wsgi wrapper.

gevent (with packaging, which gunicorn's gevent worker imports), uvicorn-worker and a2wsgi are
installed into the app's environment for this run only (EXTRAS).
The replica runs under a cgroup v1 CPU quota of 0.5 CPU when the machine allows one (root and
/sys/fs/cgroup/cpu; the clients and probes stay outside it), else unconstrained and the report says so.
Measured per model: /health under 16 slow clients; /health during a flood of N connections (half idle,
half trickling a header that never ends, a byte a second each); acknowledged vs completed events when
SIGTERM arrives after a burst to a 5 s handler; /health and signed /webhook throughput (benchmarks.load).

Writes the "## Serving models" section of benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyrage

from . import serving
from .capacity import cpu_quota, write_section
from .run import machine, render_app
from .serving import InstalledApp, Target, install_app, probe_health

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks/results.md"
SECTION = "## Serving models"
EXTRAS = ["gevent==26.9.0", "packaging", "uvicorn-worker==0.4.0", "a2wsgi==1.10.10"]
ASGI_APP = """
from a2wsgi import WSGIMiddleware
from sdk_runtime.testing import recording_app

app = WSGIMiddleware(recording_app, workers=4)  # as many threads as gthread's 4
"""
MODELS = {
    "BufferingWorker (runtime)": Target("sdk_runtime.testing", "recording_app"),
    "gthread 27 (stock)": Target("sdk_runtime.testing", "recording_app", "gthread"),
    "gevent": Target("sdk_runtime.testing", "recording_app", "gevent"),
    "gunicorn asgi + a2wsgi": Target("asgi_app", "app", "asgi"),
    "uvicorn-worker + a2wsgi": Target("asgi_app", "app", "uvicorn_worker.UvicornWorker"),
}
# 0.2.0's flood figure from issue 18 (the runtime's worker before it shed idle connections).
BEFORE_FLOOD = "about 2,000 idle or trickling connections starve /health (2 workers x worker_connections 1000)"
PARTIAL_HEAD = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "


@dataclass(frozen=True)
class QuotaApp(InstalledApp):
    """The installed app, its gunicorn started inside a CPU-quota cgroup (None: unconstrained)."""

    group: Path | None = None

    def in_child(self) -> None:  # before gunicorn starts: its workers inherit the quota
        if self.group is not None:
            (self.group / "cgroup.procs").write_text(str(os.getpid()))


def before_worker(revision: str, wrappers: Path) -> Target:
    """The runtime's worker as it was at `revision`, importable as before_server.BufferingWorker."""
    source = subprocess.run(
        ["git", "show", f"{revision}:template/{{{{app_name}}}}/sdk_runtime/server.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    (wrappers / "before_server.py").write_text(
        source.replace("from . import dispatch", "from sdk_runtime import dispatch")
    )
    return Target("sdk_runtime.testing", "recording_app", "before_server.BufferingWorker")


def open_flood(port: int, count: int) -> tuple[list[socket.socket], int]:
    """`count` connections: even ones idle, odd ones with a head that never ends. Those the kernel
    would not complete within 1 s count as refused."""
    flood, refused = [], 0
    for number in range(count):
        sock = socket.socket()
        sock.settimeout(1)
        try:
            sock.connect(("127.0.0.1", port))
            if number % 2:
                sock.sendall(PARTIAL_HEAD)
        except OSError:
            refused += 1
            sock.close()
            continue
        sock.setblocking(False)
        flood.append(sock)
    return flood, refused


def trickle_all(flood: list[socket.socket], stop: threading.Event) -> None:
    while not stop.wait(1.0):
        for sock in flood[1::2]:
            with contextlib.suppress(OSError):
                sock.send(b"X")


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1024) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def flood_run(app: InstalledApp, target: Target, count: int, probe_seconds: float) -> dict[str, float]:
    server, port = serving.serving(app, target)
    stop = threading.Event()
    try:
        flood, refused = open_flood(port, count)
        trickler = threading.Thread(target=trickle_all, args=(flood, stop))
        trickler.start()
        latencies, failures = probe_health(port, probe_seconds)
        stop.set()
        trickler.join()
        shed = sum(closed_by_server(sock) for sock in flood)
        for sock in flood:
            sock.close()
    finally:
        serving.stop(server)
    ordered = sorted(latencies)
    return {
        "probes": len(latencies),
        "failures": failures,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "refused": refused,
        "closed": shed,
    }


def measure(app: InstalledApp, target: Target, floods: list[int], quick: bool, work: Path) -> dict[str, object]:
    probe = 3.0 if quick else 6.0
    result: dict[str, object] = {"slow": serving.slow_clients(app, target, probe, 14.0)}
    result["flood"] = {count: flood_run(app, target, count, probe) for count in floods}
    result["sigterm"] = serving.shutdown(app, target, 48 if quick else 96, 5.0, work)
    seconds = 2.0 if quick else 4.0
    result["health"] = serving.load(app, target, "/health", seconds, signed=False)
    result["webhook"] = serving.load(app, target, "/webhook", seconds, signed=True)
    return result


def row(name: str, result: dict[str, object], floods: list[int]) -> str:
    slow: dict[str, float] = result["slow"]  # type: ignore[assignment]
    flood: dict[int, dict[str, float]] = result["flood"]  # type: ignore[assignment]
    sigterm: dict[str, float] = result["sigterm"]  # type: ignore[assignment]
    health: dict[str, float] = result["health"]  # type: ignore[assignment]
    webhook: dict[str, float] = result["webhook"]  # type: ignore[assignment]
    cells = [name, f"{slow['failures']:g}/{slow['probes']:g}, {slow['p99_ms']:.0f} ms, cut {slow['cut']:g}/16"]
    for count in floods:
        run = flood[count]
        cells.append(f"{run['failures']:g}/{run['probes']:g}, {run['p99_ms']:.0f} ms")
    cells.append(f"{sigterm['acknowledged']:g} ack, {sigterm['completed']:g} done, **{sigterm['lost']:g} lost**")
    cells.append(f"{health['rps']:.0f} / {webhook['rps']:.0f} ({webhook['errors']:g} err)")
    return "| " + " | ".join(cells) + " |"


def section(results: dict[str, dict[str, object]], floods: list[int], quota: str, settings: str) -> str:
    head = ["Model", "16 slow clients: /health failed, p99, slow cut"]
    head += [f"flood {count}: /health failed, p99" for count in floods]
    head += ["SIGTERM after a burst to a 5 s handler", "req/s /health / signed /webhook"]
    lines = [
        SECTION,
        "",
        f"`python -m benchmarks.serving_models{settings}`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}; "
        f"the replica {quota}. /health probes one after another, 2 s timeout (a failure counts as 2000 ms). "
        "Floods: half idle connections, half trickling a header that never ends. 0.2.0 (issue 18): "
        + BEFORE_FLOOD
        + ".",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *(row(name, result, floods) for name, result in results.items()),
        "",
        "Connections the server closed during each flood (of those opened; refused by the kernel):",
        "",
    ]
    for name, result in results.items():
        flood: dict[int, dict[str, float]] = result["flood"]  # type: ignore[assignment]
        closed = ", ".join(f"{n}: {r['closed']:g} closed, {r['refused']:g} refused" for n, r in flood.items())
        lines.append(f"- {name}: {closed}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--floods", type=int, nargs="*", default=None)
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--cpus", type=float, default=0.5)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--before",
        metavar="REV",
        help="also serve with the BufferingWorker of this git revision (e.g. the last release)",
    )
    args = parser.parse_args(argv)
    floods = args.floods or ([2000] if args.quick else [1000, 2000, 4000])
    with tempfile.TemporaryDirectory() as temporary, cpu_quota(args.cpus) as group:
        work = Path(temporary)
        key = str(pyrage.x25519.Identity.generate().to_public())
        installed = install_app(render_app(work, key), work)
        python = installed.folder / ".venv/bin/python"
        if any(MODELS[name].worker_class for name in args.models):  # not only the runtime's own worker
            subprocess.run([str(python), "-m", "pip", "install", "-q", *EXTRAS], check=True, capture_output=True)
        (installed.wrappers / "asgi_app.py").write_text(ASGI_APP)
        app = QuotaApp(installed.folder, installed.wrappers, group)
        models = {name: MODELS[name] for name in args.models}
        if args.before:
            models = {f"BufferingWorker ({args.before})": before_worker(args.before, installed.wrappers), **models}
        quota = f"ran under a cgroup v1 CPU quota of {args.cpus:g} CPU" if group else "ran WITHOUT a CPU quota"
        results, failed = {}, {}
        for name, target in models.items():
            print(f"{name} ...", file=sys.stderr, flush=True)
            try:
                results[name] = measure(app, target, floods, args.quick, work)
            except (AssertionError, OSError, subprocess.SubprocessError, KeyError) as error:
                lines = [line for line in str(error).splitlines() if line.strip()]
                failed[name] = f"{type(error).__name__}: {' / '.join(lines[:1] + lines[-3:])}"
                print(f"{name}: {failed[name]}", file=sys.stderr, flush=True)
                continue
            print(row(name, results[name], floods), file=sys.stderr, flush=True)
    settings = (" --quick" if args.quick else "") + (f" --before {args.before}" if args.before else "")
    text = section(results, floods, quota, settings)
    if failed:
        text += "\nNot measured (the run failed):\n\n" + "".join(f"- {n}: {e}\n" for n, e in failed.items())
    write_section(text, args.output)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
