"""Refresh the poetry.lock files the template ships (one per supported Python version).

    .venv/bin/python -m tools.refresh_locks              # re-lock, keeping current pins where still valid
    .venv/bin/python -m tools.refresh_locks --upgrade    # re-resolve everything to the newest allowed versions

Renders the app's pyproject.toml from the working tree (uncommitted changes included) for each Python
choice in copier.yml, runs the pinned Poetry on it, and writes locks/python-<version>/poetry.lock.
tests/test_app.py fails when a lock is stale.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import copier
import pyrage

from tools import pins

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "locks"
APP = "lock_refresh"


def python_versions() -> list[str]:
    return pins.pythons()


def render_pyproject(python_version: str, destination: Path) -> Path:
    """Render one app without its lock file; returns the app folder."""
    copier.run_copy(
        str(ROOT),
        destination,
        data={
            "app_name": APP,
            "python_version": python_version,
            "age_public_key": str(pyrage.x25519.Identity.generate().to_public()),
        },
        defaults=True,
        quiet=True,
        vcs_ref="HEAD",  # the working tree, uncommitted changes included (not the newest tag)
        exclude=["*/poetry.lock"],
    )
    return destination / APP


def refresh(python_version: str, upgrade: bool) -> Path:
    target = LOCKS / f"python-{python_version}" / "poetry.lock"
    with tempfile.TemporaryDirectory() as tmp:
        app = render_pyproject(python_version, Path(tmp))
        if target.exists() and not upgrade:
            shutil.copyfile(target, app / "poetry.lock")
        command = [sys.executable, "-m", "poetry", "lock", "--no-interaction"]
        if upgrade:
            command.append("--regenerate")
        subprocess.run(command, cwd=app, check=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(app / "poetry.lock", target)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upgrade", action="store_true", help="re-resolve all dependencies from scratch")
    parser.add_argument("--python", action="append", help="only this Python version (repeatable)")
    args = parser.parse_args()
    for version in args.python or python_versions():
        print(f"locked {refresh(version, args.upgrade).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
