"""Run one app's checks: the gate every deploy workflow passes before it deploys.

    uv run scripts/check_app.py APP        # from the repository root; needs the app's Python

In order: the lock file matches pyproject.toml, the app installs from it, then each tool the app
has as a dev dependency (ruff check, ruff format --check, mypy, pytest; a hand-made app without
one is told so), and the secrets guard on the app's files. Every check runs, and each failure is
named at the end; the exit code is 1 if any failed. Poetry comes from POETRY (e.g. POETRY="pipx run
poetry"), else PATH, else uvx or pipx (the template's Poetry, from PyPI). Standard library only.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Check:
    name: str
    command: list[str]
    tool: str | None = None  # a dev dependency the check needs; skipped when the app lacks it


TEMPLATE_POETRY = "2.5.1"  # the Poetry the template locks with (moves with copier update)
# Where Poetry is found when it is not on PATH: (the runner that must be on PATH, the command).
RUNNERS = (
    ("uvx", ["uvx", f"poetry@{TEMPLATE_POETRY}"]),
    ("pipx", ["pipx", "run", "--spec", f"poetry=={TEMPLATE_POETRY}", "poetry"]),
)
POETRY_CHECKS = [
    Check("lock file matches pyproject.toml", ["check", "--lock"]),
    Check("install", ["install", "--no-interaction"]),
]
TOOL_CHECKS = [
    Check("lint", ["run", "ruff", "check", "."], tool="ruff"),
    Check("format", ["run", "ruff", "format", "--check", "."], tool="ruff"),
    Check("types", ["run", "mypy"], tool="mypy"),
    Check("tests", ["run", "pytest"], tool="pytest"),
]


def poetry_command() -> list[str] | None:
    """POETRY if set, else poetry on PATH, else the template's Poetry through uvx or pipx; None if none."""
    if os.environ.get("POETRY"):
        command = shlex.split(os.environ["POETRY"])
        return command if shutil.which(command[0]) else None
    if shutil.which("poetry"):
        return ["poetry"]
    return next((command for runner, command in RUNNERS if shutil.which(runner)), None)


def run(check: Check, cwd: Path, poetry: list[str]) -> bool:
    command = [*poetry, *check.command]
    print(f"== {check.name}: {shlex.join(command)}", flush=True)
    return subprocess.run(command, cwd=cwd, check=False).returncode == 0


def has_tool(app: Path, tool: str, poetry: list[str]) -> bool:
    """Whether `tool` is installed in the app's Poetry environment."""
    code = f"import importlib.util, sys; sys.exit(not importlib.util.find_spec({tool!r}))"
    probe = [*poetry, "run", "python", "-c", code]
    return subprocess.run(probe, cwd=app, capture_output=True, check=False).returncode == 0


def tracked_files(root: Path, app: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--", app], cwd=root, capture_output=True, text=True, check=True)
    return [name for name in out.stdout.split("\0") if name]


def check_app(root: Path, app: str, poetry: list[str]) -> tuple[list[str], list[str]]:
    """Run every check of `app`; returns the names of those that failed and of those skipped."""
    folder = root / app
    failed: list[str] = []
    skipped: list[str] = []
    for check in POETRY_CHECKS:
        if not run(check, folder, poetry):
            return [check.name], []  # nothing else can run without the installed app
    for check in TOOL_CHECKS:
        if check.tool and not has_tool(folder, check.tool, poetry):
            print(f"== {check.name}: skipped, {check.tool} is not a dev dependency of {app}", flush=True)
            skipped.append(check.name)
        elif not run(check, folder, poetry):
            failed.append(check.name)
    secrets = Check("secrets", ["scripts/check_secrets.py", *tracked_files(root, app)])
    if not run(secrets, root, [sys.executable]):
        failed.append(secrets.name)
    return failed, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("app", help="the app folder, e.g. joke_of_the_day")
    args = parser.parse_args(argv)
    root = Path.cwd()
    if not (root / args.app / "pyproject.toml").is_file():
        print(f"check_app: {args.app}/pyproject.toml not found: run from the repository root", file=sys.stderr)
        return 2
    poetry = poetry_command()
    if poetry is None:
        print(
            "check_app: Poetry is not installed, nor uv or pipx to fetch it: install uv "
            "(https://docs.astral.sh/uv/) or Poetry (https://python-poetry.org/docs/#installation)",
            file=sys.stderr,
        )
        return 2
    failed, skipped = check_app(root, args.app, poetry)
    if failed:
        print(f"check_app: {args.app} failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    if skipped:
        print(f"check_app: {args.app} passed; skipped (not dev dependencies): {', '.join(skipped)}")
    else:
        print(f"check_app: {args.app} passed every check")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
