"""Benchmarks, side by side in one run, reported as ratios of medians (these machines are noisy).

    ./scripts/bench              # full run; writes benchmarks/results.md
    ./scripts/bench --quick      # one short repetition (the test suite's smoke test)

1. `copier copy` of this template (one app, three environments) vs a one-file template (copier's floor).
2. `copier update` of one app between two releases vs the same floor updated between two releases.
3. The generated app under its production gunicorn settings (2 workers x 4 gthreads) vs a bare Flask app
   under the same settings: requests/s and p50/p99 for GET /health and signed POST /webhook, from a load
   generator in its own process (benchmarks/load.py), on loopback.
4. Cold start to the first 200 on /health, generated vs bare.
5. Installed size of the app's runtime dependencies (what the image carries).
A and B run side by side in every repetition, alternating which goes first; the app's ratios are medians
of the per-repetition ratios (this machine's throughput drifts for both apps alike).
"""

from __future__ import annotations

import argparse
import json
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

from tools.net import free_port, wait_for_http
from tools.template_repo import TemplateRepo, configure, git

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
APP = "bench_app"
SECRET = "bench-secret"
ENVIRONMENTS = "[dev, staging, prod]"

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
GENERATED_APP = f'''
from {APP} import create_app
from {APP}.settings import Settings

# The real app and webhook path (verification, parsing, filtering, dispatch) with a no-op handler.
app = create_app(Settings(endpoint_secret="{SECRET}", module_name="{APP}"), handler=lambda event, settings: None)
'''


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


# ---- 3 and 4: the generated app under gunicorn ------------------------------------------------


@dataclass(frozen=True)
class InstalledApp:
    folder: Path  # the generated app, installed with Poetry from its lock
    wrappers: Path  # bench_generated.py and bare_app.py

    def start(self, module: str, port: int) -> subprocess.Popen[str]:
        env = {
            **os.environ,
            "PATH": f"{self.folder / '.venv/bin'}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(self.wrappers),
            "MODULE": module,
            "APP_NAME": "app",
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "GUNICORN_LOG_LEVEL": "warning",
        }
        env.pop("ENCRYPTED_ENV_FILE", None)
        return subprocess.Popen(
            [str(self.folder / ".venv/bin/gunicorn"), "--config", "gunicorn.conf.py", "--access-logfile", "/dev/null"],
            cwd=self.folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            text=True,
        )


def install_app(work: Path, key: str) -> InstalledApp:
    repo = work / "monorepo"
    subprocess.run(
        copier(
            "copy",
            "-q",
            "--defaults",
            "--vcs-ref",
            "HEAD",
            "--data",
            "python_version=3.11",
            *our_data(key),
            str(ROOT),
            str(repo),
        ),
        check=True,
        capture_output=True,
    )
    folder = repo / APP
    subprocess.run(
        [sys.executable, "-m", "poetry", "install", "--only", "main", "--no-interaction"],
        cwd=folder,
        check=True,
        capture_output=True,
        env={**os.environ, "POETRY_VIRTUALENVS_IN_PROJECT": "true"},
    )
    wrappers = work / "wrappers"
    wrappers.mkdir()
    (wrappers / "bench_generated.py").write_text(GENERATED_APP)
    (wrappers / "bare_app.py").write_text(BARE_APP)
    return InstalledApp(folder=folder, wrappers=wrappers)


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


def load(app: InstalledApp, module: str, path: str, duration: float, signed: bool) -> dict[str, float]:
    port = free_port()
    server = app.start(module, port)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", server)
        command = [
            sys.executable,
            "-m",
            "benchmarks.load",
            "--url",
            f"http://127.0.0.1:{port}{path}",
            "--duration",
            str(duration),
            "--concurrency",
            "8",
        ]
        if signed:
            command += ["--webhook-secret", SECRET, "--module", APP]
        result = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
        return json.loads(result.stdout)
    finally:
        stop(server)


def cold_start(app: InstalledApp, module: str) -> float:
    port = free_port()
    started = time.perf_counter()
    server = app.start(module, port)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", server, interval=0.005)
        return time.perf_counter() - started
    finally:
        stop(server)


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


def report(rows: list[Row], size: tuple[float, list[tuple[str, float]]], settings: str, notes: list[str]) -> str:
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
        app = install_app(work, key)
        for label, path, signed, target in [
            ("GET /health", "/health", False, ">= 0.9x"),
            ("signed POST /webhook", "/webhook", True, ">= 0.7x"),
        ]:
            print(f"load: {label} ...", flush=True)
            runs = paired(
                args.repetitions,
                partial(load, app, "bench_generated", path, args.duration, signed),
                partial(load, app, "bare_app", path, args.duration, signed),
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
        start = median_pair(
            max(args.repetitions, 3), lambda: cold_start(app, "bench_generated"), lambda: cold_start(app, "bare_app")
        )
        rows.append(Row("cold start to first 200 on /health", *start, "s", "<= 1.5x", higher_is_better=False))
        size = runtime_size_mb(app)

    text = report(rows, size, settings, notes)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
