"""Update every app of this monorepo from sdk-deploy-template, one app and one commit at a time.

    python scripts/update_apps.py                    # newest template release, every app
    python scripts/update_apps.py --vcs-ref v1.2.0   # a given release
    python scripts/update_apps.py my_app             # only these apps

`copier update` needs a clean git tree, so after each app that updates cleanly this commits the
result ("Update <app> from sdk-deploy-template"). It stops at the first app whose update leaves
conflict markers or .rej files, and names the files to fix; resolve them, commit, run it again.
Needs `copier` on PATH (or COPIER="uvx copier"). Standard library only.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

ANSWERS = ".copier-answers.yml"
CONFLICT_MARKERS = ("<<<<<<< ", ">>>>>>> ")


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


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
            lines = path.read_text(encoding="utf-8").splitlines()
        except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError):
            continue
        if any(line.startswith(CONFLICT_MARKERS) for line in lines):
            found.append(name)
    return found


def update(app: str, copier: list[str], vcs_ref: str | None) -> list[str]:
    """Update one app; returns the files left in conflict (empty when the update is clean)."""
    command = [*copier, "update", "--defaults", "--answers-file", f"{app}/{ANSWERS}"]
    if vcs_ref:
        command += ["--vcs-ref", vcs_ref]
    print(f"== {app}: {shlex.join(command)}", flush=True)
    subprocess.run(command, check=True)
    files = changed_files()
    if problems := conflicted(files):
        return problems
    if files:
        git("add", "--all")
        git("commit", "--quiet", "--message", f"Update {app} from sdk-deploy-template")
        print(f"== {app}: updated and committed ({len(files)} files)")
    else:
        print(f"== {app}: already up to date")
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("apps", nargs="*", help="apps to update (default: every app)")
    parser.add_argument("--vcs-ref", help="template git ref to update to (default: its newest release tag)")
    args = parser.parse_args(argv)
    root = Path(git("rev-parse", "--show-toplevel").strip())
    os.chdir(root)
    known = apps(root)
    unknown = sorted(set(args.apps) - set(known))
    if unknown:
        print(f"update_apps: not apps here: {', '.join(unknown)} (apps: {', '.join(known)})", file=sys.stderr)
        return 2
    if git("status", "--porcelain"):
        print(
            "update_apps: the working tree has uncommitted changes; commit or stash them first "
            "(copier update needs a clean tree)",
            file=sys.stderr,
        )
        return 2
    copier = shlex.split(os.environ.get("COPIER", "copier"))
    for app in args.apps or known:
        if problems := update(app, copier, args.vcs_ref):
            print(
                f"update_apps: {app} needs attention: conflicts in {', '.join(problems)}.\n"
                "Resolve them (keep what you need between <<<<<<< and >>>>>>>, delete .rej files), run "
                "`python scripts/check_secrets.py --all`, commit, then run this command again.",
                file=sys.stderr,
            )
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
