"""Run one app's checks: the gate every deploy workflow passes before it deploys.

    python scripts/check_app.py APP        # from the repository root; needs Poetry and the app's Python

In order: the lock file matches pyproject.toml, the app installs from it, then each tool the app
has as a dev dependency (ruff check, ruff format --check, mypy, pytest; a hand-made app without
one is told so), and the secrets guard on the app's files. Every check runs, and each failure is
named at the end; the exit code is 1 if any failed. Standard library only.
"""

from __future__ import annotations

import argparse
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


POETRY_CHECKS = [
    Check("lock file matches pyproject.toml", ["poetry", "check", "--lock"]),
    Check("install", ["poetry", "install", "--no-interaction"]),
]
TOOL_CHECKS = [
    Check("lint", ["poetry", "run", "ruff", "check", "."], tool="ruff"),
    Check("format", ["poetry", "run", "ruff", "format", "--check", "."], tool="ruff"),
    Check("types", ["poetry", "run", "mypy"], tool="mypy"),
    Check("tests", ["poetry", "run", "pytest"], tool="pytest"),
]


def run(check: Check, cwd: Path) -> bool:
    print(f"== {check.name}: {' '.join(check.command)}", flush=True)
    return subprocess.run(check.command, cwd=cwd, check=False).returncode == 0


def has_tool(app: Path, tool: str) -> bool:
    """Whether `tool` is installed in the app's Poetry environment."""
    code = f"import importlib.util, sys; sys.exit(not importlib.util.find_spec({tool!r}))"
    probe = ["poetry", "run", "python", "-c", code]
    return subprocess.run(probe, cwd=app, capture_output=True, check=False).returncode == 0


def tracked_files(root: Path, app: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--", app], cwd=root, capture_output=True, text=True, check=True)
    return [name for name in out.stdout.split("\0") if name]


def check_app(root: Path, app: str) -> tuple[list[str], list[str]]:
    """Run every check of `app`; returns the names of those that failed and of those skipped."""
    folder = root / app
    failed: list[str] = []
    skipped: list[str] = []
    for check in POETRY_CHECKS:
        if not run(check, folder):
            return [check.name], []  # nothing else can run without the installed app
    for check in TOOL_CHECKS:
        if check.tool and not has_tool(folder, check.tool):
            print(f"== {check.name}: skipped, {check.tool} is not a dev dependency of {app}", flush=True)
            skipped.append(check.name)
        elif not run(check, folder):
            failed.append(check.name)
    secrets = Check("secrets", [sys.executable, "scripts/check_secrets.py", *tracked_files(root, app)])
    if not run(secrets, root):
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
    if shutil.which("poetry") is None:
        print("check_app: Poetry is not installed: https://python-poetry.org/docs/#installation", file=sys.stderr)
        return 2
    failed, skipped = check_app(root, args.app)
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
