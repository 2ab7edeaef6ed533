"""How long one app's gate (`scripts/check_app.py`, what every deploy runs first) takes: a fresh app of a
reference release against a fresh app of the working tree, side by side, alternating which goes first.

    .venv/bin/python -m benchmarks.check_app                    # reference: the 0.2.0 release
    .venv/bin/python -m benchmarks.check_app --reference v0.3.0 --repetitions 3

Each repetition renders both apps anew into git monorepos and runs their gate from the repository root
with this environment's Poetry, timing each step from its `== <step>` line to the next. Poetry's
download cache is shared (warmed by a first, unreported round), so `install` measures making the app's
environment from its lock, not the network. Writes benchmarks/check_app.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import copier
import pyrage

from tools.template_repo import commit_all, init_repository

ROOT = Path(__file__).resolve().parent.parent
APP = "bench_app"
REFERENCE = "4f1f491"  # the 0.2.0 release (CHANGELOG: 0.2.0)


@dataclass
class Run:
    steps: dict[str, float] = field(default_factory=dict)
    total: float = 0.0
    passed: bool = False


def render(destination: Path, ref: str) -> Path:
    """A git monorepo with one fresh app of the template at `ref` (HEAD: the working tree)."""
    repo = init_repository(destination)
    key = pyrage.x25519.Identity.generate().to_public()
    data = {
        "app_name": APP,
        "age_public_key": str(key),
        "python_version": f"{sys.version_info[0]}.{sys.version_info[1]}",
    }
    copier.run_copy(str(ROOT), repo, data=data, defaults=True, unsafe=False, quiet=True, vcs_ref=ref)
    commit_all(repo, "add the app")
    return repo


def gate(repo: Path) -> Run:
    """Run the app's gate as the deploy workflow does; time each step."""
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    environment.pop("VIRTUAL_ENV", None)
    command = [sys.executable, "scripts/check_app.py", APP]
    run, current, started = Run(), "", time.monotonic()
    step_started = started
    with subprocess.Popen(
        command, cwd=repo, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("== "):
                now = time.monotonic()
                if current:
                    run.steps[current] = now - step_started
                current, step_started = line[3:].split(":", 1)[0], now
        run.passed = process.wait() == 0
    end = time.monotonic()
    if current:
        run.steps[current] = end - step_started
    run.total = end - started
    return run


def measure(reference: str, repetitions: int) -> dict[str, list[Run]]:
    results: dict[str, list[Run]] = {reference: [], "working tree": []}
    refs = {reference: reference, "working tree": "HEAD"}
    with tempfile.TemporaryDirectory(prefix="bench-check-app-") as scratch:
        for number in range(repetitions + 1):  # round 0 warms Poetry's cache and is not reported
            order = list(refs) if number % 2 == 0 else list(reversed(refs))
            for name in order:
                repo = render(Path(scratch) / f"{number}-{name.replace(' ', '-')}", refs[name])
                run = gate(repo)
                print(f"round {number} {name}: {run.total:.1f} s, {'passed' if run.passed else 'FAILED'}", flush=True)
                if number:
                    results[name].append(run)
    return results


def report(results: dict[str, list[Run]], reference: str) -> str:
    old, new = results[reference], results["working tree"]
    steps = list(dict.fromkeys([*old[0].steps, *new[0].steps]))

    def median(runs: list[Run], step: str | None) -> float:
        values = [r.total if step is None else r.steps.get(step, 0.0) for r in runs]
        return statistics.median(values)

    lines = [
        "# check_app on a fresh app",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; medians of {len(new)} repetitions; `python -m benchmarks.check_app`.",
        "",
        f"| step | {reference} (s) | working tree (s) |",
        "|---|---|---|",
    ]
    for step in steps:
        lines.append(f"| {step} | {median(old, step):.1f} | {median(new, step):.1f} |")
    lines.append(f"| **total** | **{median(old, None):.1f}** | **{median(new, None):.1f}** |")
    passed = all(r.passed for r in old + new)
    lines += [
        "",
        f"Every run passed: {'yes' if passed else 'NO'}. Ratio working tree / {reference}: "
        f"{median(new, None) / median(old, None):.2f}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--reference", default=REFERENCE, help="git ref of the release to compare with")
    parser.add_argument("--repetitions", type=int, default=2)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "check_app.md")
    args = parser.parse_args()
    text = report(measure(args.reference, args.repetitions), args.reference)
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
