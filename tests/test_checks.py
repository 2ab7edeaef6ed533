"""scripts/check_app.py: the gate every deploy workflow runs before it deploys, run here for real."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import APP, AgeKey, InstalledApp, answers, commit_all, new_monorepo, run

pytestmark = pytest.mark.slow


def check_app(repo: Path, app: str = APP) -> tuple[int, str]:
    result = run("python3", "scripts/check_app.py", app, cwd=repo, check=False, POETRY_VIRTUALENVS_IN_PROJECT="true")
    return result.returncode, result.stdout + result.stderr


def test_a_fresh_app_passes_every_check(installed_app: InstalledApp) -> None:
    code, output = check_app(installed_app.repo)
    assert code == 0, output
    for check in ["lock file matches pyproject.toml", "install", "lint", "format", "types", "tests", "secrets"]:
        assert f"== {check}: " in output
    assert "skipped" not in output
    assert f"check_app: {APP} passed every check" in output


def test_red_code_fails_the_gate_and_every_failure_is_named(tmp_path: Path, age_key: AgeKey) -> None:
    repo = new_monorepo(tmp_path / "repo", answers(age_key, python_version="3.11"))
    handler = repo / APP / APP / "handler.py"
    handler.write_text(handler.read_text() + "\n\ndef broken() -> int:\n    return 'not an int'\n")
    (repo / APP / ".env").write_text("API_KEY=plain\n")
    run("git", "add", "-f", f"{APP}/.env", cwd=repo)
    commit_all(repo, "red code and a plain secret")
    code, output = check_app(repo)
    assert code == 1
    assert f"check_app: {APP} failed: format, types, secrets" in output
    assert f"{APP}/.env: env file in clear text" in output


def test_a_missing_app_or_poetry_is_explained(tmp_path: Path, age_key: AgeKey) -> None:
    repo = new_monorepo(tmp_path / "repo", answers(age_key))
    result = run("python3", "scripts/check_app.py", "nope", cwd=repo, check=False)
    assert result.returncode == 2
    assert "nope/pyproject.toml not found" in result.stderr
    result = run(
        "/usr/bin/env", "-i", "PATH=/usr/bin:/bin", "python3", "scripts/check_app.py", APP, cwd=repo, check=False
    )
    assert result.returncode == 2
    assert "Poetry is not installed, nor uv or pipx to fetch it" in result.stderr
