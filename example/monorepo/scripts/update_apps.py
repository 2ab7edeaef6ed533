"""Update every app of this monorepo from sdk-deploy-template, one app and one commit at a time.

    uv run scripts/update_apps.py                    # newest template release, every app
    uv run scripts/update_apps.py --vcs-ref v1.2.0   # a given release
    uv run scripts/update_apps.py my_app             # only these apps
    uv run scripts/update_apps.py --no-app-checks    # skip each app's checks (say so in the commit)

`copier update` needs a clean git tree, so after each app that updates cleanly this runs the
checks (scripts/check_secrets.py --all, scripts/doctor.py and the app's own checks,
scripts/check_app.py) and commits the result ("Update <app> from sdk-deploy-template <version>").
It stops at the first app whose update leaves conflict markers or .rej files, or whose checks
fail, and names what to fix. Fix it without committing and run it again: it checks that app, then
commits it and goes on with the others. copier comes from COPIER (e.g. COPIER="uvx copier"), else
PATH, else uvx or pipx (copier from PyPI). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from check_secrets import conflict_lines  # a sibling: scripts/ is on sys.path when run as a script

ANSWERS = ".copier-answers.yml"
COPIER_SPEC = "copier>=9.19"  # the template's _min_copier_version
# Where copier is found when it is not on PATH: (the runner that must be on PATH, the command).
RUNNERS = (
    ("uvx", ["uvx", "--from", COPIER_SPEC, "copier"]),
    ("uv", ["uv", "tool", "run", "--from", COPIER_SPEC, "copier"]),
    ("pipx", ["pipx", "run", "--spec", COPIER_SPEC, "copier"]),
)
PENDING = "sdk-update-apps.json"  # in .git: the app whose update stopped, until it is checked and committed


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
    """COPIER if set, else copier on PATH, else copier from PyPI through uvx, uv or pipx."""
    if "COPIER" in os.environ:
        command = shlex.split(os.environ["COPIER"])
        if not command or shutil.which(command[0]) is None:
            raise SetupError(f"COPIER: '{command[0] if command else ''}' not found: fix COPIER or unset it")
        return command
    if shutil.which("copier"):
        return ["copier"]
    for runner, command in RUNNERS:
        if shutil.which(runner):
            return command
    raise SetupError(
        "copier not found, nor uv or pipx to fetch it: install uv (https://docs.astral.sh/uv/), "
        "or copier (uv tool install copier, pipx install copier)"
    )


def template_version(app: str) -> str:
    """The template release an app's answers file records (copier's _commit), or ''."""
    text = Path(app, ANSWERS).read_text(encoding="utf-8")
    found = re.search(r"^_commit:\s*['\"]?([^'\"\s]+)", text, re.MULTILINE)
    return found[1] if found else ""


def pending_file() -> Path:
    return Path(git("rev-parse", "--git-dir").strip()) / PENDING


def pending() -> str | None:
    """The app whose update stopped last time (conflicts or failing checks), if any."""
    path = pending_file()
    return str(json.loads(path.read_text())["app"]) if path.is_file() else None


def set_pending(app: str | None) -> None:
    path = pending_file()
    if app is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(json.dumps({"app": app}))


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
            failed.append(shlex.join(["uv", "run", *command[1:]]))
    return failed


def check_and_commit(app: str, files: list[str], with_app_checks: bool) -> None:
    """Refuse what is left unresolved, run the checks, commit the update naming the template version."""
    if problems := conflicted(files):
        set_pending(app)
        raise UpdateError(
            f"{app} needs attention: conflicts in {', '.join(problems)}.\n"
            "Resolve them (keep what you need between <<<<<<< and >>>>>>>, delete .rej files), "
            "then run this command again, without committing: it checks the app, then commits it."
        )
    if failed := failed_checks(app, with_app_checks):
        set_pending(app)
        raise UpdateError(
            f"{app} was updated but its checks fail: {'; '.join(failed)}.\n"
            "The update is left uncommitted: fix what the checks say, then run this command again "
            "(without committing): it checks the app again, then commits it."
        )
    version = template_version(app)
    note = "" if with_app_checks else "\n\nApp checks (scripts/check_app.py) were not run (--no-app-checks)."
    git("add", "--all")
    git("commit", "--quiet", "--message", f"Update {app} from sdk-deploy-template {version}".rstrip() + note)
    set_pending(None)
    print(f"== {app}: updated to {version or 'the template'}, checked and committed ({len(files)} files)")


def resume(app: str, with_app_checks: bool) -> None:
    """Finish the update that stopped at `app`: its resolved files are checked, then committed."""
    files = changed_files()
    if not files:  # committed by hand: check it all the same before going on
        print(f"== {app}: the update was committed by hand; checking it", flush=True)
        if failed := failed_checks(app, with_app_checks):
            raise UpdateError(f"{app}'s checks fail: {'; '.join(failed)}. Fix what they say, then run this again.")
        set_pending(None)
        return
    print(f"== {app}: finishing its update ({len(files)} changed files)", flush=True)
    check_and_commit(app, files, with_app_checks)


def update(app: str, copier: list[str], vcs_ref: str | None, with_app_checks: bool) -> None:
    """Update one app, check it, commit it; raises UpdateError with what to fix."""
    command = [*copier, "update", "--defaults", "--answers-file", f"{app}/{ANSWERS}"]
    if vcs_ref:
        command += ["--vcs-ref", vcs_ref]
    print(f"== {app}: {shlex.join(command)}", flush=True)
    if subprocess.run(command, check=False).returncode != 0:
        raise UpdateError(f"copier update failed for {app} (see its message above); nothing was committed")
    files = changed_files()
    if not files:
        print(f"== {app}: already up to date")
        return
    check_and_commit(app, files, with_app_checks)


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
        stopped = pending()
        if stopped in known:
            resume(stopped, with_app_checks=not args.no_app_checks)
        elif git("status", "--porcelain"):
            raise SetupError(
                "the working tree has uncommitted changes; commit or stash them first "
                "(copier update needs a clean tree)"
            )
        for app in args.apps or known:
            if app != stopped:
                update(app, copier, args.vcs_ref, with_app_checks=not args.no_app_checks)
    except UpdateError as error:
        print(f"update_apps: {error}", file=sys.stderr)
        return 2 if isinstance(error, SetupError) else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
