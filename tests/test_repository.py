"""This repository's own code follows the rules it sets for generated code: ruff, and mypy --strict
for the tools and the container start program, sdk_runtime/start.py (pyproject.toml). The tests run the checks; the
generated apps have their own (tests/test_app.py, tests/test_example.py)."""

from __future__ import annotations

from .conftest import TEMPLATE, VENV_BIN, run


def test_ruff_is_clean() -> None:
    run(VENV_BIN / "ruff", "check", "--no-cache", ".", cwd=TEMPLATE)
    run(VENV_BIN / "ruff", "format", "--no-cache", "--check", ".", cwd=TEMPLATE)


def test_tools_and_the_start_script_type_check_strictly() -> None:
    run(VENV_BIN / "mypy", "--cache-dir=/dev/null", cwd=TEMPLATE)
