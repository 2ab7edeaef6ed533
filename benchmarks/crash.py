"""The crash run: a replica killed outright (SIGKILL: out of memory, a node lost) in the middle of a burst.

    .venv/bin/python -m benchmarks.crash                  # 500 events, both modes, about 3 minutes
    .venv/bin/python -m benchmarks.crash --events 100

Two replicas of the generated app (rendered from this working tree, its own handler.py, gunicorn.conf.py
and worker) share a burst of signed events, half each, as a load balancer would spread them; the model
takes `--model-seconds`. A third of the way into the model calls one replica is killed with SIGKILL, with
every handler it runs waiting for the model (none between completing a message and recording it). Run
twice: without Azure Storage (the default, and 0.2.0's only way: the events live in the replica's memory)
and with it (AZURE_STORAGE_CONNECTION_STRING to a real Azurite: each event is written to a queue before it
is acknowledged, every replica consumes the queue, done deliveries recorded in a table). Reported: events
acknowledged, those the killed replica held, lost (acknowledged, message never completed), answered twice,
and when the last message was completed.

Writes the "## Crash" section of benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyrage

from tools import azurite as azurite_tool
from tools.net import free_port, wait_for_http
from tools.platform_events import runtime_module

from .capacity import RESULTS, STREAM, deliver, event_for, start_replica, write_section
from .run import machine, render_app

SECTION = "## Crash"
QUEUE, TABLE = "bench-app-events", "benchappdeliveries"


@dataclass
class Outcome:
    mode: str
    events: int
    acknowledged: int
    held_by_killed: int  # acknowledged by the replica that was killed
    lost: int
    twice: int
    last_completed_s: float  # from the burst to the last message completed


def completion_counts(platform: Any) -> Counter[str]:
    """How often each assistant message was completed (its final PATCH)."""
    return Counter(
        call.path.rsplit("/", 1)[-1]
        for call in platform.api_calls()
        if call.method == "PATCH" and isinstance(call.body, dict) and call.body.get("completedAt")
    )


def run(folder: Path, events: int, model_seconds: float, storage: str | None) -> Outcome:
    """Two fresh replicas, `events` signed events at once (half each), SIGKILL to the second a third of the
    way into the model calls; then wait for every acknowledged message (or a deadline)."""
    testing = runtime_module("testing")
    settings = {"AZURE_STORAGE_CONNECTION_STRING": storage, "EVENT_QUEUE": QUEUE, "EVENT_TABLE": TABLE}
    with testing.FakePlatform() as platform:
        platform.delays[STREAM] = model_seconds
        ports = [free_port(), free_port()]
        replicas = [start_replica(folder, None, platform.url, port, **(settings if storage else {})) for port in ports]
        try:
            for replica, port in zip(replicas, ports, strict=True):
                wait_for_http(f"http://127.0.0.1:{port}/health", replica, interval=0.05)
            data = [event_for(index) for index in range(events)]
            targets = [ports[index % 2] for index in range(events)]
            started = time.monotonic()
            with ThreadPoolExecutor(64) as senders:
                answers = list(senders.map(lambda i: deliver(targets[i], data[i])[0], range(events)))
            time.sleep(model_seconds / 3)  # the victim's handlers are all waiting for the model
            kill_family(replicas[1].pid)
            acknowledged = {
                d["payload"]["assistantMessage"]["id"]: port
                for d, (status, port) in zip(data, zip(answers, targets, strict=True), strict=True)
                if 200 <= status < 300
            }
            deadline = time.monotonic() + 3 * model_seconds + 60
            while time.monotonic() < deadline and not set(acknowledged) <= set(completion_counts(platform)):
                time.sleep(0.25)
            time.sleep(2)  # a late second answer would show here
            counts = completion_counts(platform)
            last = max((call.at for call in platform.api_calls() if call.method == "PATCH"), default=started)
        finally:
            for replica in replicas:
                if replica.poll() is None:
                    replica.terminate()
                replica.communicate(timeout=60)
    return Outcome(
        mode="with Azure Storage (Azurite)" if storage else "without Azure Storage (the default)",
        events=events,
        acknowledged=len(acknowledged),
        held_by_killed=sum(port == ports[1] for port in acknowledged.values()),
        lost=sum(message not in counts for message in acknowledged),
        twice=sum(count > 1 for count in counts.values()),
        last_completed_s=last - started,
    )


def kill_family(pid: int) -> None:
    """SIGKILL gunicorn's workers, then its master: nothing runs on, nothing says goodbye."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for child in children.read_text().split() if children.exists() else []:
        os.kill(int(child), signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)


def section(outcomes: list[Outcome], model_seconds: float, settings: str) -> str:
    lines = [
        SECTION,
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `python -m benchmarks.crash {settings}` on {machine()}; "
        "no CPU quota (this run counts events, not time). Two fresh replicas (2 workers each, the shipped "
        f"settings, the template's handler) share a burst of signed events, half each; the model takes "
        f"{model_seconds:g} s; a third of the way into the model calls one replica is killed with SIGKILL. "
        "0.2.0 had only the first mode (issue 18: a replica killed hard loses every event it acknowledged).",
        "",
        "| mode | events | acknowledged | acknowledged by the killed replica | lost | answered twice "
        "| last message completed |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {o.mode} | {o.events} | {o.acknowledged} | {o.held_by_killed} | {o.lost} | {o.twice} "
        f"| {o.last_completed_s:.1f} s after the burst |"
        for o in outcomes
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--model-seconds", type=float, default=10.0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    key = str(pyrage.x25519.Identity.generate().to_public())
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="sdk-deploy-crash-") as tmp:
        folder = render_app(Path(tmp), key)
        print("without Azure Storage ...", flush=True)
        outcomes.append(run(folder, args.events, args.model_seconds, None))
        print("with Azure Storage ...", flush=True)
        emulator = azurite_tool.start(Path(tmp) / "azurite")
        try:
            outcomes.append(run(folder, args.events, args.model_seconds, emulator.connection_string))
        finally:
            emulator.stop()
    for outcome in outcomes:
        print(outcome, flush=True)
    write_section(section(outcomes, args.model_seconds, f"--events {args.events}"), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
