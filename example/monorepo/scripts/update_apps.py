"""Update every app of this monorepo from sdk-deploy-template, one app and one commit at a time.

    python scripts/update_apps.py                    # newest template release, every app
    python scripts/update_apps.py --vcs-ref v1.2.0   # a given release
    python scripts/update_apps.py my_app             # only these apps
    python scripts/update_apps.py --no-app-checks    # skip each app's checks (say so in the commit)

`copier update` needs a clean git tree, so after each app that updates cleanly this runs the
checks (scripts/check_secrets.py --all, scripts/doctor.py and the app's own checks,
scripts/check_app.py) and commits the result ("Update <app> from sdk-deploy-template"). It stops
at the first app whose update leaves conflict markers or .rej files, or whose checks fail, and
names what to fix; fix it, commit, run it again. Needs `copier` on PATH (or COPIER="uvx copier").
Standard library only.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from check_secrets import conflict_lines  # a sibling: scripts/ is on sys.path when run as a script

ANSWERS = ".copier-answers.yml"


class UpdateError(Exception):
    """An app's update needs the user (conflicts, failing checks); the message says what. Exit code 1."""


class SetupError(UpdateError):
    """Nothing could be updated (no git, no copier, a dirty tree, an unknown app). Exit code 2."""


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def repository_root() -> Path:
    if shutil.which("git") is None:
        raise SetupError("git is not installed: https://git-scm.com/downloads")
    result = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SetupError("not inside a git repository: run this from the monorepo (copier update needs git)")
    return Path(result.stdout.strip())


def copier_command() -> list[str]:
    command = shlex.split(os.environ.get("COPIER", "copier"))
    if not command or shutil.which(command[0]) is None:
        raise SetupError(
            f"'{command[0] if command else ''}' not found: install copier (pipx install copier, or "
            "uv tool install copier), or set COPIER, e.g. COPIER='uvx copier'"
        )
    return command


def apps(root: Path) -> list[str]:
    return sorted(path.parent.name for path in root.glob(f"*/{ANSWERS}"))


def changed_files() -> list[str]:
    tracked = git("diff", "--name-only", "HEAD").splitlines()
    untracked = git("ls-files", "--others", "--exclude-standard").splitlines()
    return sorted(set(tracked + untracked))


def conflicted(files: list[str]) -> list[str]:
    found = []
    for name in files:
        path = Path(name)
        if path.suffix == ".rej":
            found.append(name)
            continue
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            continue
        if conflict_lines(data):
            found.append(name)
    return found


def failed_checks(app: str, with_app_checks: bool) -> list[str]:
    """Run the checks a user runs after an update; returns the commands that failed."""
    commands = [
        [sys.executable, "scripts/check_secrets.py", "--all"],
        [sys.executable, "scripts/doctor.py"],
    ]
    if with_app_checks:
        commands.append([sys.executable, "scripts/check_app.py", app])
    failed = []
    for command in commands:
        print(f"== {app}: {shlex.join(command[1:])}", flush=True)
        if subprocess.run(command, check=False).returncode != 0:
            failed.append(shlex.join(["python", *command[1:]]))
    return failed


def update(app: str, copier: list[str], vcs_ref: str | None, with_app_checks: bool) -> None:
    """Update one app, check it, commit it; raises UpdateError with what to fix."""
    command = [*copier, "update", "--defaults", "--answers-file", f"{app}/{ANSWERS}"]
    if vcs_ref:
        command += ["--vcs-ref", vcs_ref]
    print(f"== {app}: {shlex.join(command)}", flush=True)
    if subprocess.run(command, check=False).returncode != 0:
        raise UpdateError(f"copier update failed for {app} (see its message above); nothing was committed")
    files = changed_files()
    if problems := conflicted(files):
        raise UpdateError(
            f"{app} needs attention: conflicts in {', '.join(problems)}.\n"
            "Resolve them (keep what you need between <<<<<<< and >>>>>>>, delete .rej files), "
            "commit, then run this command again."
        )
    if not files:
        print(f"== {app}: already up to date")
        return
    if failed := failed_checks(app, with_app_checks):
        raise UpdateError(
            f"{app} was updated but its checks fail: {'; '.join(failed)}.\n"
            "The update is left uncommitted: fix what the checks say, commit, then run this command again."
        )
    note = "" if with_app_checks else "\n\nApp checks (scripts/check_app.py) were not run (--no-app-checks)."
    git("add", "--all")
    git("commit", "--quiet", "--message", f"Update {app} from sdk-deploy-template{note}")
    print(f"== {app}: updated, checked and committed ({len(files)} files)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("apps", nargs="*", help="apps to update (default: every app)")
    parser.add_argument("--vcs-ref", help="template git ref to update to (default: its newest release tag)")
    parser.add_argument("--no-app-checks", action="store_true", help="skip scripts/check_app.py for each app")
    args = parser.parse_args(argv)
    try:
        root = repository_root()
        os.chdir(root)
        copier = copier_command()
        known = apps(root)
        if unknown := sorted(set(args.apps) - set(known)):
            raise SetupError(f"not apps here: {', '.join(unknown)} (apps: {', '.join(known) or 'none'})")
        if git("status", "--porcelain"):
            raise SetupError(
                "the working tree has uncommitted changes; commit or stash them first "
                "(copier update needs a clean tree)"
            )
        for app in args.apps or known:
            update(app, copier, args.vcs_ref, with_app_checks=not args.no_app_checks)
    except UpdateError as error:
        print(f"update_apps: {error}", file=sys.stderr)
        return 2 if isinstance(error, SetupError) else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
