"""Smoke test of the benchmark command: it runs end to end with one short repetition and reports every
measure. No timing is asserted (these machines are noisy; the figures live in benchmarks/results.md),
only behaviour: slow clients are cut, and no acknowledged event is lost at shutdown."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from .conftest import TEMPLATE, run

pytestmark = pytest.mark.slow

MEASURES = [
    "`copier copy`",
    "`copier update`",
    "GET /health rps",
    "GET /health p99",
    "signed POST /webhook rps",
    "signed POST /webhook p50",
    "cold start to first 200",
    "GET /health p99 under 16 slow clients",
    "slow clients cut by the server",
    "acknowledged but lost",
    "Runtime dependencies installed in the image",
]


def test_benchmark_command_runs_and_reports_every_measure(tmp_path: Path) -> None:
    output = tmp_path / "results.md"
    run(sys.executable, "-m", "benchmarks.run", "--quick", "--output", output, cwd=TEMPLATE)
    text = output.read_text()
    for measure in MEASURES:
        assert measure in text, measure
    ratios = re.findall(r"\| (\d+\.\d+)x \|", text)
    assert len(ratios) == 10
    assert all(float(r) >= 0 for r in ratios)
    assert text.count("0 non-2xx answers from the generated app") == 2  # no spurious 503s under load
    # Behaviour, not speed: the generated app cuts every slow client and loses no acknowledged event.
    assert re.search(r"^\| slow clients cut by the server \| 16 \| \d+ \|$", text, re.MULTILINE), text
    assert re.search(r"^\| \*\*acknowledged but lost\*\* \| \*\*0\*\* \|", text, re.MULTILINE), text


def test_capacity_run_reports_every_burst_and_leaves_no_chat_blocked(tmp_path: Path) -> None:
    """The capacity run (benchmarks/capacity.py), small: a burst of 16 to a 2 s model, and its shutdown run.
    Behaviour only: nothing refused or lost, and after SIGTERM every acknowledged message is completed."""
    output = tmp_path / "results.md"
    output.write_text("# Benchmark results\n\n## Images\n\nkept\n")
    command = ["--bursts", "16", "--repetitions", "1", "--model-seconds", "2", "--output", output]
    run(sys.executable, "-m", "benchmarks.capacity", *command, cwd=TEMPLATE)
    text = output.read_text()
    assert "## Images\n\nkept\n" in text  # the rest of results.md stays
    assert re.search(r"^\| 16 \| [^|]+ \| 16 \| 0 \| 0 \|", text, re.MULTILINE), text  # 2xx, 503, lost
    assert re.search(r"Shutdown: 64 events .*: 64 acknowledged, 64 messages completed .* 0 left blocked", text), text


def test_crash_run_loses_nothing_with_azure_storage(tmp_path: Path) -> None:
    """The crash run (benchmarks/crash.py), small: 24 events over two replicas, one killed with SIGKILL.
    Without Azure Storage the killed replica's events are lost (what the run is there to show); with it
    (a real Azurite) none is lost and none answered twice. Its section joins results.md, the rest stays."""
    output = tmp_path / "results.md"
    output.write_text("# Benchmark results\n\n## Capacity\n\nkept\n")
    command = ["--events", "24", "--model-seconds", "3", "--output", output]
    run(sys.executable, "-m", "benchmarks.crash", *command, cwd=TEMPLATE, HANDLER_TIMEOUT="4")
    text = output.read_text()
    assert "## Capacity\n\nkept\n" in text
    assert re.search(r"^\| without Azure Storage \(the default\) \| 24 \| 24 \| 12 \| 12 \| 0 \|", text, re.M), text
    assert re.search(r"^\| with Azure Storage \(Azurite\) \| 24 \| 24 \| 12 \| 0 \| 0 \|", text, re.M), text


def test_serving_model_run_reports_the_runtime_worker_through_a_flood(tmp_path: Path) -> None:
    """The serving-model comparison (benchmarks/serving_models.py), small: the runtime's own worker only, one
    flood of 2500 connections. Behaviour only: every slow client is cut and no acknowledged event is lost."""
    output = tmp_path / "results.md"
    output.write_text("# Benchmark results\n\n## Images\n\nkept\n")
    command = ["--quick", "--models", "BufferingWorker (runtime)", "--floods", "2500", "--output", output]
    run(sys.executable, "-m", "benchmarks.serving_models", *command, cwd=TEMPLATE)
    text = output.read_text()
    assert "## Images\n\nkept\n" in text
    assert "| flood 2500: /health failed, p99 |" in text, text
    slow, flood = r"\d+/\d+, \d+ ms, cut 16/16", r"\d+/\d+, \d+ ms"
    row = rf"^\| BufferingWorker \(runtime\) \| {slow} \| {flood} \| (\d+) ack, \1 done, \*\*0 lost"
    assert re.search(row, text, re.MULTILINE), text
