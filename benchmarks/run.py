"""Benchmarks, side by side in one run, reported as ratios of medians (these machines are noisy).

    ./scripts/bench              # full run; writes benchmarks/results.md
    ./scripts/bench --quick      # one short repetition (the test suite's smoke test)

1. `copier copy` of this template (one app, three environments) vs a one-file template (copier's floor).
2. `copier update` of one app between two releases vs the same floor updated between two releases.
3. The generated app under its production gunicorn settings (2 workers x 4 threads, its own worker) vs a
   bare Flask app under the same settings and gunicorn's stock gthread worker: requests/s and p50/p99 for
   GET /health and signed POST /webhook, from a load generator in its own process (benchmarks/load.py).
4. Cold start to the first 200 on /health, generated vs bare.
5. 16 slow clients trickling headers or bodies: /health p99 and failures meanwhile, and whether the
   slow connections are cut.
6. Shutdown: a burst of events to a 5 s handler, then SIGTERM: events acknowledged (2xx) vs completed.
7. Installed size of the app's runtime dependencies (what the image carries).
A and B run side by side in every repetition, alternating which goes first; the app's ratios are medians
of the per-repetition ratios (this machine's throughput drifts for both apps alike).
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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TypeVar

import pyrage

from tools.template_repo import TemplateRepo, configure, git

from .serving import (
    PROBE_TIMEOUT,
    SLOW_CLIENTS,
    Target,
    cold_start,
    install_app,
    load,
    runtime_size_mb,
    shutdown,
    slow_clients,
)

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
APP = "bench_app"
ENVIRONMENTS = "[dev, staging, prod]"


@dataclass(frozen=True)
class Row:
    measure: str
    ours: float
    floor: float
    unit: str
    target: str
    higher_is_better: bool

    paired_ratio: float | None = None  # median of per-repetition ratios, where runs were paired

    @property
    def ratio(self) -> float:
        if self.paired_ratio is not None:
            return self.paired_ratio
        return self.ours / self.floor if self.floor else float("inf")

    @property
    def verdict(self) -> str:
        if not self.target:
            return "(reported)"
        limit = float(self.target.split()[-1].rstrip("x"))
        return "yes" if (self.ratio >= limit if self.higher_is_better else self.ratio <= limit) else "**no**"


def paired(repetitions: int, ours: Callable[[], T], floor: Callable[[], T]) -> list[tuple[T, T]]:
    """Run both side by side, alternating which goes first, so drift and warm-up hit both alike."""
    runs = []
    for repetition in range(repetitions):
        if repetition % 2:
            b = floor()
            a = ours()
        else:
            a = ours()
            b = floor()
        runs.append((a, b))
    return runs


def median_pair(repetitions: int, ours: Callable[[], float], floor: Callable[[], float]) -> tuple[float, float]:
    runs = paired(repetitions, ours, floor)
    return statistics.median(a for a, _ in runs), statistics.median(b for _, b in runs)


def timed(command: list[str], cwd: Path | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True)
    return time.perf_counter() - started


def copier(*args: str) -> list[str]:
    return [str(BIN / "copier"), *args]


# ---- 1 and 2: copier copy and update -----------------------------------------------------


def floor_template(path: Path) -> TemplateRepo:
    """The least a Copier template can be: one question, one file."""
    (path / "template").mkdir(parents=True)
    (path / "copier.yml").write_text("_subdirectory: template\nname:\n  type: str\n  default: floor\n")
    (path / "template/{{ name }}.txt.jinja").write_text("Hello {{ name }}\n")
    (path / "template/{{ _copier_conf.answers_file }}.jinja").write_text("{{ _copier_answers | to_nice_yaml }}")
    git("init", "-q", "-b", "main", cwd=path)
    configure(path)
    repo = TemplateRepo(path)
    repo.release("v1.0.0")
    (path / "template/{{ name }}.txt.jinja").write_text("Hello {{ name }}, again\n")
    repo.release("v2.0.0")
    return repo


def ours_template(path: Path) -> TemplateRepo:
    repo = TemplateRepo.from_working_tree(path)
    repo.edit("template/Dockerfile.jinja", "USER app\n", 'LABEL org.opencontainers.image.title="app"\nUSER app\n')
    repo.release("v2.0.0")
    return repo


def our_data(key: str) -> list[str]:
    return ["--data", f"app_name={APP}", "--data", f"environments={ENVIRONMENTS}", "--data", f"age_public_key={key}"]


def new_destination(work: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=work))


def copy_time(work: Path, template: TemplateRepo, data: list[str]) -> float:
    return timed(
        copier("copy", "-q", "--defaults", "--vcs-ref", "v1.0.0", *data, str(template.path), str(new_destination(work)))
    )


def update_time(work: Path, template: TemplateRepo, data: list[str], answers_file: str) -> float:
    destination = new_destination(work)
    git("init", "-q", "-b", "main", cwd=destination)
    configure(destination)
    subprocess.run(
        copier("copy", "-q", "--defaults", "--vcs-ref", "v1.0.0", *data, str(template.path), str(destination)),
        check=True,
        capture_output=True,
    )
    git("add", "-A", cwd=destination)
    git("commit", "-qm", "copy", cwd=destination)
    return timed(
        copier("update", "-q", "--defaults", "--vcs-ref", "v2.0.0", "--answers-file", answers_file), cwd=destination
    )


def render_app(work: Path, key: str) -> Path:
    repo = work / "monorepo"
    command = copier("copy", "-q", "--defaults", "--vcs-ref", "HEAD", "--data", "python_version=3.11", *our_data(key))
    subprocess.run([*command, str(ROOT), str(repo)], check=True, capture_output=True)
    return repo / APP


# ---- Report ---------------------------------------------------------------------------------


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    memory = next(
        (line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")), "0"
    )
    copier_version = subprocess.run(copier("--version"), capture_output=True, text=True).stdout.strip()
    return (
        f"{os.cpu_count()} cores ({cpu}), {int(memory) / 1e6:.0f} GB RAM, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, {copier_version}"
    )


def side_by_side(
    slow: list[tuple[dict[str, float], dict[str, float]]], stop: tuple[dict[str, float], dict[str, float]]
) -> list[str]:
    """The slow-client and shutdown figures, generated app beside bare Flask."""

    def both(key: str, runs: list[tuple[dict[str, float], dict[str, float]]], form: str) -> str:
        values = [statistics.median(r[side][key] for r in runs) for side in (0, 1)]
        return " | ".join("-" if value != value else form.format(value) for value in values)  # NaN: none

    ours_stop, bare_stop = stop
    return [
        "| Under 16 slow clients, and at shutdown | Generated app | Bare Flask |",
        "|---|---:|---:|",
        f"| GET /health failed ({PROBE_TIMEOUT:g} s timeout), median of runs | {both('failures', slow, '{:.0f}')} |",
        f"| GET /health probes sent, median of runs | {both('probes', slow, '{:.0f}')} |",
        f"| GET /health p99 (a failure counts as {PROBE_TIMEOUT:g} s) | {both('p99_ms', slow, '{:.1f} ms')} |",
        f"| slow clients cut by the server | {both('cut', slow, '{:.0f}')} |",
        f"| ... the last one after (median of runs) | {both('cut_after_s', slow, '{:.1f} s')} |",
        f"| events sent, then SIGTERM | {ours_stop['events']:.0f} | {bare_stop['events']:.0f} |",
        f"| acknowledged (2xx) | {ours_stop['acknowledged']:.0f} | {bare_stop['acknowledged']:.0f} |",
        f"| acknowledged and completed | {ours_stop['completed']:.0f} | {bare_stop['completed']:.0f} |",
        f"| **acknowledged but lost** | **{ours_stop['lost']:.0f}** | **{bare_stop['lost']:.0f}** |",
        f"| refused with 5xx (retried) | {ours_stop['refused_5xx']:.0f} | {bare_stop['refused_5xx']:.0f} |",
        f"| SIGTERM to exit | {ours_stop['stop_s']:.1f} s | {bare_stop['stop_s']:.1f} s |",
    ]


def report(
    rows: list[Row], extra: list[str], size: tuple[float, list[tuple[str, float]]], settings: str, notes: list[str]
) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{settings}` on {machine()}.",
        "",
        "| Measure | This template / generated app | Floor / bare Flask | Ratio | Target | Met |",
        "|---|---:|---:|---:|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.measure} | {row.ours:.3f} {row.unit} | {row.floor:.3f} {row.unit} | {row.ratio:.2f}x "
            f"| {row.target or '-'} | {row.verdict} |"
        )
    total, largest = size
    lines += [
        "",
        *extra,
        "",
        f"Runtime dependencies installed in the image: {total:.1f} MB "
        f"(largest: {', '.join(f'{name} {mb:.1f} MB' for name, mb in largest)}).",
        "",
        *[f"- {note}" for note in notes],
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=7)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of load per measurement")
    parser.add_argument("--quick", action="store_true", help="one repetition, 0.5 s of load (smoke test)")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.repetitions, args.duration = 1, 0.5
    burst, handler_seconds = (30, 3.0) if args.quick else (100, 5.0)
    settings = f"--repetitions {args.repetitions} --duration {args.duration}"
    key = str(pyrage.x25519.Identity.generate().to_public())
    rows: list[Row] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="sdk-deploy-bench-") as tmp:
        work = Path(tmp)
        ours, floor = ours_template(work / "ours"), floor_template(work / "floor")
        floor_data = ["--data", "name=floor"]
        print("copier copy ...", flush=True)
        copy = median_pair(
            args.repetitions, lambda: copy_time(work, ours, our_data(key)), lambda: copy_time(work, floor, floor_data)
        )
        rows.append(Row("`copier copy` (1 app, 3 environments)", *copy, "s", "<= 1.3x", higher_is_better=False))
        print("copier update ...", flush=True)
        update = median_pair(
            args.repetitions,
            lambda: update_time(work, ours, our_data(key), f"{APP}/.copier-answers.yml"),
            lambda: update_time(work, floor, floor_data, ".copier-answers.yml"),
        )
        rows.append(Row("`copier update` (one release)", *update, "s", "<= 1.3x", higher_is_better=False))

        print("installing the generated app ...", flush=True)
        app = install_app(render_app(work, key), work)
        generated, bare = app.generated, Target("bare_app", worker_class="gthread")
        for label, path, signed, target in [
            ("GET /health", "/health", False, ">= 0.9x"),
            ("signed POST /webhook", "/webhook", True, ">= 0.7x"),
        ]:
            print(f"load: {label} ...", flush=True)
            runs = paired(
                args.repetitions,
                partial(load, app, generated, path, args.duration, signed),
                partial(load, app, bare, path, args.duration, signed),
            )
            for metric, unit, better, goal in [
                ("rps", "req/s", True, target),
                ("p50_ms", "ms", False, ""),
                ("p99_ms", "ms", False, ""),
            ]:
                ours_m = statistics.median(r[0][metric] for r in runs)
                bare_m = statistics.median(r[1][metric] for r in runs)
                ratio = statistics.median(r[0][metric] / r[1][metric] for r in runs if r[1][metric])
                rows.append(Row(f"{label} {metric.replace('_ms', '')}", ours_m, bare_m, unit, goal, better, ratio))
            notes.append(
                f"{label}: {sum(r[0]['errors'] for r in runs)} non-2xx answers from the generated app, "
                f"{sum(r[1]['errors'] for r in runs)} from bare Flask, "
                f"of {sum(r[0]['requests'] + r[1]['requests'] for r in runs)} requests."
            )
        print("cold start ...", flush=True)
        start = median_pair(max(args.repetitions, 3), lambda: cold_start(app, generated), lambda: cold_start(app, bare))
        rows.append(Row("cold start to first 200 on /health", *start, "s", "<= 1.5x", higher_is_better=False))

        print("slow clients ...", flush=True)
        probe, cut_within = (1.0, 13.0) if args.quick else (5.0, 15.0)
        slow = paired(
            min(args.repetitions, 3),
            partial(slow_clients, app, generated, probe, cut_within),
            partial(slow_clients, app, bare, probe, cut_within),
        )
        ours_p99 = statistics.median(r[0]["p99_ms"] for r in slow)
        bare_p99 = statistics.median(r[1]["p99_ms"] for r in slow)
        rows.append(Row(f"GET /health p99 under {SLOW_CLIENTS} slow clients", ours_p99, bare_p99, "ms", "", False))

        print("shutdown ...", flush=True)
        stopped = (
            shutdown(app, generated, burst, handler_seconds, work),
            shutdown(app, Target("bare_queue_app", worker_class="gthread"), burst, handler_seconds, work),
        )
        notes.append(
            f"Shutdown: {burst} signed events, 16 at a time, to a handler that takes {handler_seconds:g} s, then "
            "SIGTERM (Azure kills 30 s later). Bare Flask hands events to a 4-thread pool and answers 202, "
            "as the platform docs advise; the generated app acknowledges up to twice HANDLER_THREADS per worker, "
            "answers the rest 503 (the platform retries), and at shutdown completes what it cannot finish "
            "with an apology (a handler of this run has no message: its cut is only logged)."
        )
        size = runtime_size_mb(app)

    text = report(rows, side_by_side(slow, stopped), size, settings, notes)
    previous = args.output.read_text() if args.output.exists() else ""
    args.output.write_text(text)
    keep_capacity_section(previous, args.output)
    print(text)
    return 0


def keep_capacity_section(previous: str, output: Path) -> None:
    """The capacity run (benchmarks/capacity.py) and the serving-model run (benchmarks/serving_models.py)
    write their own sections of results.md: keep them."""
    from . import capacity, serving_models  # both import this module

    for section, write_section in (
        (capacity.SECTION, capacity.write_section),
        (serving_models.SECTION, serving_models.write_section),
    ):
        start = previous.find(section)
        if start >= 0:
            end = previous.find("\n## ", start + len(section))
            write_section(previous[start : end + 1 if end >= 0 else None], output)


if __name__ == "__main__":
    raise SystemExit(main())
