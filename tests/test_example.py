"""The committed example monorepo (example/monorepo) is what the template renders from
example/answers, and its Python passes the generated apps' own lint and type checks in place."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools import example

from .conftest import TEMPLATE, InstalledApp, require_tool, run

APPS = sorted(path.parent.name for path in example.MONOREPO.glob("*/.copier-answers.yml"))


def test_the_example_is_current(tmp_path: Path) -> None:
    """Fails after a template change until `.venv/bin/python -m tools.example` re-renders it."""
    rendered = example.render(tmp_path / "monorepo")
    diff = example.differences(rendered, example.MONOREPO)
    assert diff == [], "example/monorepo is stale: run `.venv/bin/python -m tools.example`\n" + "".join(diff[:200])


def test_the_example_holds_two_apps_and_names_no_machine_path() -> None:
    assert APPS == ["joke_of_the_day", "market_report"]
    for path in example.MONOREPO.rglob("*"):
        if path.is_file() and path.suffix in {".yml", ".yaml", ".md", ".py", ".toml"}:
            text = path.read_text()
            assert str(TEMPLATE) not in text, path
            assert "/tmp/" not in text, path


@pytest.mark.parametrize("app", APPS)
def test_the_examples_python_is_ruff_clean(app: str) -> None:
    folder = example.MONOREPO / app
    run(require_tool("ruff"), "check", "--no-cache", ".", cwd=folder)
    run(require_tool("ruff"), "format", "--no-cache", "--check", ".", cwd=folder)


@pytest.mark.slow
@pytest.mark.parametrize("app", APPS)
def test_the_examples_python_type_checks_strictly(installed_app: InstalledApp, app: str) -> None:
    """With the generated app's own mypy configuration and its locked dependencies installed."""
    result = run(installed_app.bin / "mypy", "--cache-dir=/dev/null", cwd=example.MONOREPO / app, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    scripts = run(installed_app.bin / "mypy", "--cache-dir=/dev/null", "--strict", "scripts", cwd=example.MONOREPO,
                  check=False)  # fmt: skip
    assert scripts.returncode == 0, scripts.stdout + scripts.stderr
