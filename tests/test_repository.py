"""This repository's own code follows the rules it sets for generated code: ruff, and mypy --strict
for the tools and the app runtime with its start program (pyproject.toml). The tests run the checks; the
generated apps have their own (tests/test_app.py, tests/test_example.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from .conftest import APP, TEMPLATE, VENV_BIN, run


def test_ruff_is_clean() -> None:
    run(VENV_BIN / "ruff", "check", "--no-cache", ".", cwd=TEMPLATE)
    run(VENV_BIN / "ruff", "format", "--no-cache", "--check", ".", cwd=TEMPLATE)


def test_tools_and_the_start_script_type_check_strictly() -> None:
    run(VENV_BIN / "mypy", "--cache-dir=/dev/null", cwd=TEMPLATE)


def test_the_app_runtime_meets_the_generated_apps_own_rules(monorepo: Path) -> None:
    """sdk_runtime is excluded from the apps' own lint (it is the template's): it is linted here, once, with
    the rules of a generated app's pyproject.toml (named explicitly, so the app's exclusion does not apply)."""
    app = monorepo / APP
    run(VENV_BIN / "ruff", "check", "--no-cache", "sdk_runtime", cwd=app)
    run(VENV_BIN / "ruff", "format", "--no-cache", "--check", "sdk_runtime", cwd=app)


def test_the_runtimes_dependencies_here_are_the_shipped_locks_versions() -> None:
    """tests/runtime runs sdk_runtime with this repository's packages: they must be the apps' own."""
    lock = tomllib.loads((TEMPLATE / "locks" / "python-3.11" / "poetry.lock").read_text())
    locked = {package["name"]: package["version"] for package in lock["package"]}
    dev = tomllib.loads((TEMPLATE / "pyproject.toml").read_text())["dependency-groups"]["dev"]
    pinned = dict(requirement.split("==") for requirement in dev)
    for name in [
        "flask",
        "gunicorn",
        "python-dotenv",
        "unique-sdk",
        "httpx",
        "httpx-sse",
        "azure-storage-queue",
        "azure-data-tables",
        "azure-identity",
    ]:
        assert pinned[name] == locked[name], f"pyproject.toml pins {name}=={pinned[name]}, the lock has {locked[name]}"
