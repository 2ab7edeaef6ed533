"""Capacity of one replica: a burst of signed events to the real app whose model call takes 10 s.

    .venv/bin/python -m benchmarks.capacity                    # bursts of 64, 128 and 256, 2 repetitions
    .venv/bin/python -m benchmarks.capacity --bursts 64 --repetitions 1

The generated app (rendered from this working tree, its own handler.py, its gunicorn.conf.py and
worker) runs under a cgroup v1 CPU quota of 0.5 CPU, the size of a default Azure Container Apps replica,
when the machine allows one (root and /sys/fs/cgroup/cpu); otherwise unconstrained, and the report says
so. Its platform is the runtime's FakePlatform in this process (outside the quota), answering a chat
completion after `--model-seconds`. Each run starts a fresh replica and sends the burst as soon as
/health answers (a fresh replica's first burst), all events at once, one connection each, while
/health is probed one request after another. Then: the app's answers (2xx, 503), every message's
completion and its delay from the event's delivery, /health p99, and the replica's memory (PSS of
gunicorn's processes, the highest sample). A refused event is not retried here (the platform would,
minutes later). The shutdown run sends a burst to a model that takes longer than the drain, then
SIGTERM: every acknowledged event's message must still end completed (answer or apology).

Writes the "## Capacity" section of benchmarks/results.md (run.py keeps it when it rewrites the file).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyrage

from tools.net import free_port, wait_for_http
from tools.platform_events import runtime_module

from .run import APP, machine, render_app

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks/results.md"
SECTION = "## Capacity"
SECRET = "bench-secret"
STREAM = "/integrated/chat/stream-completions"
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000
# 0.2.0, as issue 18 measured it (same machine, same quota, 2 workers x 4 threads, HANDLER_THREADS 8).
BEFORE = {64: ("16", "48", "0", "20 ms"), 128: ("15-16", "112-113", "0", "15 ms"), 16: ("13-16", "0-3", "0", "11 ms")}


@dataclass
class Outcome:
    """One burst against a fresh replica."""

    events: int
    statuses: list[int]
    delays: list[float]  # seconds from delivery to completed message, acknowledged events only
    apologies: int
    lost: int  # acknowledged, message never completed
    health_p99_ms: float
    health_failed: int
    peak_pss_mib: float
    idle_pss_mib: float
    cpu_s: float  # CPU time the replica used from the burst until every message was completed
    load: float  # the machine's 1-minute load average at the end (other work competes for the cores)

    @property
    def acknowledged(self) -> int:
        return sum(200 <= status < 300 for status in self.statuses)

    @property
    def refused(self) -> int:
        return sum(status >= 500 or status == 0 for status in self.statuses)


@contextlib.contextmanager
def cpu_quota(cpus: float) -> Iterator[Path | None]:
    """A cgroup v1 CPU group limited to `cpus`, removed afterwards; None when the machine has no such
    controller or we may not create groups (then runs are unconstrained)."""
    group = CGROUP_CPU / f"sdk-bench-{os.getpid()}"
    try:
        group.mkdir()
    except OSError:
        yield None
        return
    try:
        (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(int(cpus * PERIOD_US)))
    except OSError:  # e.g. --cpus 0: no quota
        group.rmdir()
        yield None
        return
    try:
        yield group
    finally:
        for _ in range(50):  # the group can be removed once its processes are gone
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def start_replica(
    folder: Path, group: Path | None, platform_url: str, port: int, **settings: str
) -> subprocess.Popen[str]:
    """gunicorn as the image runs it, in the CPU `group` if given; `settings` add to the app's environment."""
    environment = {
        **{k: v for k, v in os.environ.items() if k != "ENCRYPTED_ENV_FILE"},
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "ENDPOINT_SECRET": SECRET,
        "MODULE_NAME": APP,
        "UNIQUE_API_BASE_URL": platform_url,
        "UNIQUE_APP_KEY": "key_bench",
        "UNIQUE_APP_ID": "app_bench",
        "GUNICORN_LOG_LEVEL": "warning",
        "LOG_LEVEL": "WARNING",
        **settings,
    }

    def enter_group() -> None:  # in the child, before exec: gunicorn and its workers inherit the quota
        if group is not None:
            (group / "cgroup.procs").write_text(str(os.getpid()))

    command = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "--access-logfile", "/dev/null"]
    return subprocess.Popen(
        command,
        cwd=folder,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=enter_group,
    )


def family(root: int) -> list[int]:
    """`root` and its children: gunicorn's master and workers."""
    pids = [root]
    with contextlib.suppress(OSError):
        pids += [int(pid) for pid in Path(f"/proc/{root}/task/{root}/children").read_text().split()]
    return pids


def cpu_seconds(root: int) -> float:
    """CPU time (user + system) used so far by gunicorn's master and workers."""
    total = 0
    for pid in family(root):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def pss_mib(root: int) -> float:
    """Proportional set size of gunicorn's master and workers, in MiB."""
    total = 0
    for pid in family(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    return total / 1024


def event_for(index: int) -> dict[str, Any]:
    data: dict[str, Any] = runtime_module("testing").make_event(APP, text=f"Question {index}")
    data["payload"]["chatId"] = f"chat_{index}"
    data["payload"]["assistantMessage"]["id"] = f"msg_assistant_{index}"
    return data


def deliver(port: int, data: dict[str, Any]) -> tuple[int, float]:
    body, headers = runtime_module("testing").signed_delivery(data, SECRET)
    request = urllib.request.Request(f"http://127.0.0.1:{port}/webhook", data=body, headers=headers)
    sent = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, sent
    except urllib.error.HTTPError as error:
        return error.code, sent
    except OSError:
        return 0, sent


def probe(port: int, stop: threading.Event, latencies: list[float], failures: list[int]) -> None:
    while not stop.is_set():
        started = time.monotonic()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                response.read()
            latencies.append(time.monotonic() - started)
        except OSError:
            failures.append(1)
            latencies.append(2.0)
        stop.wait(0.1)


def completions(platform: Any) -> dict[str, tuple[float, str | None]]:
    """Assistant message id -> (when it was completed, its final text) as the platform saw it."""
    done: dict[str, tuple[float, str | None]] = {}
    for call in platform.api_calls():
        body = call.body if isinstance(call.body, dict) else {}
        if call.method == "PATCH" and body.get("completedAt") and body.get("stoppedStreamingAt"):
            done.setdefault(call.path.rsplit("/", 1)[-1], (call.at, body.get("text")))
    return done


def burst(
    folder: Path, group: Path | None, size: int, model_seconds: float, sigterm_after: float | None, settle: float = 0.0
) -> Outcome:
    """A fresh replica, a burst of `size` events at once `settle` s after its first /health answer;
    optionally SIGTERM `sigterm_after` s after the burst."""
    testing = runtime_module("testing")
    with testing.FakePlatform() as platform:
        platform.delays[STREAM] = model_seconds
        port = free_port()
        server = start_replica(folder, group, platform.url, port)
        try:
            wait_for_http(f"http://127.0.0.1:{port}/health", server, interval=0.02)
            time.sleep(settle)
            idle = pss_mib(server.pid)
            cpu_before = cpu_seconds(server.pid)
            stop, latencies, failures = threading.Event(), [], []
            prober = threading.Thread(target=probe, args=(port, stop, latencies, failures), daemon=True)
            prober.start()
            events = [event_for(index) for index in range(size)]
            with ThreadPoolExecutor(size) as pool:
                answers = list(pool.map(lambda data: deliver(port, data), events))
            acknowledged = {
                e["payload"]["assistantMessage"]["id"]: sent
                for e, (status, sent) in zip(events, answers, strict=True)
                if 200 <= status < 300
            }
            peak = pss_mib(server.pid)
            if sigterm_after is not None:
                time.sleep(sigterm_after)
                stop.set()
                server.send_signal(signal.SIGTERM)
                server.communicate(timeout=60)
            deadline = time.monotonic() + 3 * model_seconds + 30
            while time.monotonic() < deadline and not set(acknowledged) <= set(completions(platform)):
                peak = max(peak, pss_mib(server.pid))
                time.sleep(0.25)
            cpu = max(0.0, cpu_seconds(server.pid) - cpu_before)
            stop.set()
            prober.join()
        finally:
            if server.poll() is None:
                server.terminate()
                server.communicate(timeout=60)
        done = completions(platform)
    delays = [done[message][0] - sent for message, sent in acknowledged.items() if message in done]
    apologies = sum(1 for message in acknowledged if message in done and (done[message][1] or "").startswith("Sorry"))
    ordered = sorted(latencies) or [0.0]
    return Outcome(
        events=size,
        statuses=[status for status, _ in answers],
        delays=delays,
        apologies=apologies,
        lost=len(set(acknowledged) - set(done)),
        health_p99_ms=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        health_failed=len(failures),
        peak_pss_mib=peak,
        idle_pss_mib=idle,
        cpu_s=cpu,
        load=os.getloadavg()[0],
    )


def spread(values: list[float], form: str) -> str:
    low, high = min(values), max(values)
    return form.format(low) if form.format(low) == form.format(high) else f"{form.format(low)}-{form.format(high)}"


def section(runs: dict[int, list[Outcome]], stopped: list[Outcome], model: float, quota: str, settings: str) -> str:
    lines = [
        SECTION,
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `python -m benchmarks.capacity {settings}` on "
        f"{machine()}; the replica {quota}. A fresh replica (2 workers, the shipped settings) gets N signed "
        f"events at once; its handler is the template's own (one streamed model answer), the model takes "
        f"{model:g} s. An apology in a burst is the HANDLER_TIMEOUT one (20 s): the message took too long "
        "and was completed all the same. "
        "Replica CPU is all the replica used from the burst to the last completion, the workers' start-up "
        "imports and the /health probes (10 a second) included. "
        f"Ranges are over the repetitions. 0.2.0's figures are issue 18's (same machine, same "
        "quota; it shipped HANDLER_THREADS 8 and admitted what could finish in the drain budget).",
        "",
        "| N | 0.2.0: 2xx / 503 / lost / health p99 | now: 2xx | 503 | lost | of them an apology | completed within "
        f"{model:g} s + 1 s | slowest completion | /health p99 | memory (PSS, idle -> peak) | replica CPU per event "
        "| load average |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, outcomes in runs.items():
        before = " / ".join(BEFORE[size]) if size in BEFORE else "not measured"
        in_time = [sum(d <= model + 1 for d in o.delays) for o in outcomes]
        lines.append(
            f"| {size} | {before} | {spread([o.acknowledged for o in outcomes], '{:.0f}')} "
            f"| {spread([o.refused for o in outcomes], '{:.0f}')} | {spread([o.lost for o in outcomes], '{:.0f}')} "
            f"| {spread([o.apologies for o in outcomes], '{:.0f}')} "
            f"| {spread([float(n) for n in in_time], '{:.0f}')} "
            f"| {spread([max(o.delays, default=0.0) for o in outcomes], '{:.1f} s')} "
            f"| {spread([o.health_p99_ms for o in outcomes], '{:.0f} ms')} "
            f"| {spread([o.idle_pss_mib for o in outcomes], '{:.0f}')} -> "
            f"{spread([o.peak_pss_mib for o in outcomes], '{:.0f}')} MiB "
            f"| {spread([o.cpu_s / o.events * 1000 for o in outcomes], '{:.0f} ms')} "
            f"| {spread([o.load for o in outcomes], '{:.1f}')} |"
        )
    for outcome in stopped:
        lines += [
            "",
            f"Shutdown: {outcome.events} events to a model that takes longer than the drain, SIGTERM 2 s later: "
            f"{outcome.acknowledged} acknowledged, {len(outcome.delays)} messages completed "
            f"({outcome.apologies} with the shutdown apology, the rest answered), {outcome.lost} left blocked; "
            f"the last completed {max(outcome.delays, default=0.0):.1f} s after its delivery.",
        ]
    return "\n".join(lines) + "\n"


def write_section(text: str, path: Path = RESULTS) -> None:
    """Replace (or append) the section of results.md that `text` starts with (its "## " heading), keeping
    everything else."""
    heading = text.split("\n", 1)[0]
    current = path.read_text() if path.exists() else "# Benchmark results\n"
    start = current.find(heading)
    if start < 0:
        path.write_text(current.rstrip("\n") + "\n\n" + text)
        return
    end = current.find("\n## ", start + len(heading))
    rest = current[end + 1 :] if end >= 0 else ""
    path.write_text(current[:start] + text + ("\n" + rest if rest else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bursts", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--repetitions", type=int, default=2)
    parser.add_argument("--model-seconds", type=float, default=10.0)
    parser.add_argument("--cpus", type=float, default=0.5, help="the replica's CPU quota")
    parser.add_argument("--no-shutdown", action="store_true", help="skip the SIGTERM run")
    parser.add_argument("--settle", type=float, default=0.0, help="seconds from the first /health to the burst")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    settings = f"--bursts {' '.join(map(str, args.bursts))} --repetitions {args.repetitions}"
    key = str(pyrage.x25519.Identity.generate().to_public())
    with tempfile.TemporaryDirectory(prefix="sdk-capacity-") as tmp, cpu_quota(args.cpus) as group:
        folder = render_app(Path(tmp), key)
        quota = f"ran under a cgroup v1 CPU quota of {args.cpus:g} CPU" if group else "ran WITHOUT a CPU quota"
        runs: dict[int, list[Outcome]] = {}
        for size in args.bursts:
            for repetition in range(args.repetitions):
                print(f"burst of {size}, run {repetition + 1} ...", flush=True)
                outcome = burst(folder, group, size, args.model_seconds, None, args.settle)
                runs.setdefault(size, []).append(outcome)
                print(json.dumps({**vars(outcome), "statuses": sorted(set(outcome.statuses))}, default=str)[:400])
        stopped = []
        if not args.no_shutdown:
            print("shutdown ...", flush=True)
            stopped.append(burst(folder, group, 64, 60.0, 2.0))
    text = section(runs, stopped, args.model_seconds, quota, settings)
    write_section(text, args.output)
    print(text)
    print(
        "median delay per burst:",
        {n: statistics.median(d for o in r for d in o.delays or [0]) for n, r in runs.items()},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
