"""Open one pull request per sdk-deploy-template release: what the scheduled workflow
.github/workflows/template-updates.yaml runs (APPS.md, "Update pull requests").

    python scripts/update_pr.py --remote <push URL> [--update-command "uv run scripts/update_apps.py"]

It asks copier for the newest release of the template, and does nothing when every app is on it or when
the remote already has the branch template-update/<release> (its pull request is open, merged or closed:
the next release gets a new one). Otherwise it runs the update command (scripts/update_apps.py: one
commit per app, checks included) on that branch, pushes it and opens the pull request with `gh`
(GH_TOKEN). When an app needs a person (conflicts, failing checks), what the update left is committed
as it is and the pull request is a draft that says what to do. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ANSWERS = ".copier-answers.yml"
BRANCH_PREFIX = "template-update/"
NEEDS_A_PERSON = 1  # scripts/update_apps.py: an app's conflicts or checks need a person


def run(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise SystemExit(f"update_pr: {shlex.join(command[:3])} ... failed: {result.stderr.strip()}")
    return result


def newest_release(apps: list[str], copier: list[str]) -> str | None:
    """The newest template release any app can update to (copier check-update), or None."""
    newest: list[str] = []
    for app in apps:
        result = run(*copier, "check-update", "--output-format", "json", "--answers-file", f"{app}/{ANSWERS}")
        report = json.loads(result.stdout)
        if report["update_available"]:
            newest.append(report["latest_version"])
    # Apps copied from one template report the same newest release.
    return newest[0] if newest else None


def branch_exists(remote: str, branch: str) -> bool:
    result = run("git", "ls-remote", "--exit-code", "--heads", remote, branch, check=False)
    if result.returncode not in (0, 2):  # 2: no such branch
        raise SystemExit(f"update_pr: cannot read {branch} from the remote: {result.stderr.strip()}")
    return result.returncode == 0


def update(branch: str, command: list[str]) -> tuple[int, str]:
    """Run the update command on a new branch; commit whatever it left uncommitted. Returns its exit code
    and output."""
    run("git", "switch", "--create", branch)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    print(output, flush=True)
    if run("git", "status", "--porcelain").stdout:
        run("git", "add", "--all")
        message = "Template update: an app needs attention (see the pull request)"
        run("git", "commit", "--quiet", "--no-verify", "--message", message)
    return result.returncode, output


def body(release: str, code: int, output: str) -> str:
    text = [
        f"Updates the apps to sdk-deploy-template {release}, one commit per app, made by "
        "`scripts/update_apps.py` (each app's checks ran before its commit).",
        "",
        "Before merging: read the template's CHANGELOG for the releases in between (what you must do), "
        "and follow APPS.md, 'Update pull requests'. A pull request opened by a workflow's GITHUB_TOKEN "
        "starts no other workflow: close and reopen it to run CI.",
    ]
    if code == NEEDS_A_PERSON:
        tail = "\n".join(output.strip().splitlines()[-15:])
        text += [
            "",
            "**An app needs attention**: the update stopped there, and its state is committed as the last "
            "commit. Check out this branch, fix what the output below says (conflict markers, failing "
            "checks), commit, run `python scripts/update_apps.py` again for the apps after it, and push.",
            "",
            "```",
            tail,
            "```",
        ]
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--remote", default="origin", help="where to push and look for the branch (URL or name)")
    parser.add_argument("--update-command", default="uv run scripts/update_apps.py", help="the update to run")
    args = parser.parse_args(argv)
    root = Path(run("git", "rev-parse", "--show-toplevel").stdout.strip())
    os.chdir(root)
    apps = sorted(path.parent.name for path in root.glob(f"*/{ANSWERS}"))
    release = newest_release(apps, shlex.split(os.environ.get("COPIER", "copier")))
    if release is None:
        print(f"update_pr: every app ({', '.join(apps)}) is on the newest template release")
        return 0
    branch = BRANCH_PREFIX + release
    if branch_exists(args.remote, branch):
        print(f"update_pr: {branch} exists already: its pull request is open, merged or closed; nothing to do")
        return 0
    start = run("git", "rev-parse", "HEAD").stdout.strip()
    code, output = update(branch, shlex.split(args.update_command))
    if code not in (0, NEEDS_A_PERSON):
        print(f"update_pr: the update could not start (exit code {code}); nothing was pushed", file=sys.stderr)
        return code
    if run("git", "rev-parse", "HEAD").stdout.strip() == start:
        print("update_pr: the update changed nothing; nothing to push")
        return 0
    run("git", "push", "--quiet", args.remote, f"HEAD:refs/heads/{branch}")
    title = f"Update apps to sdk-deploy-template {release}"
    pr = ["gh", "pr", "create", "--head", branch, "--title", title, "--body", body(release, code, output)]
    if subprocess.run([*pr, *(["--draft"] if code else [])], check=False).returncode != 0:
        # Without its pull request the branch would only block the next run: remove it.
        run("git", "push", "--quiet", args.remote, "--delete", branch)
        print(f"update_pr: gh could not open the pull request (above); {branch} was removed again", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
