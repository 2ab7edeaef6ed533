"""Template updates as pull requests without Renovate: the scheduled workflow's command
(scripts/update_pr.py, which runs scripts/update_apps.py with `uv run`) on a monorepo whose template has
released, pushing to a local bare repository. GitHub is never reached: `gh` is a stand-in on PATH that
records how it was called (what the workflow's `gh pr create` would receive)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from tools.template_repo import TemplateRepo, commit_all

from .conftest import APP, VENV_BIN, AgeKey, answers, load_yaml, new_monorepo, run

pytestmark = pytest.mark.slow

GH_STAND_IN = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["GH_CALLS"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
"""


@pytest.fixture
def setup(tmp_path: Path, age_key: AgeKey) -> dict[str, Any]:
    template = TemplateRepo.from_working_tree(tmp_path / "template", "v1.0.0")
    repo = new_monorepo(tmp_path / "repo", answers(age_key), src=template.path, vcs_ref="v1.0.0")
    new_monorepo(repo, {"app_name": "second_app"}, src=template.path, vcs_ref="v1.0.0")
    remote = tmp_path / "remote.git"
    run("git", "clone", "--quiet", "--bare", repo, remote)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gh").write_text(GH_STAND_IN)
    (bin_dir / "gh").chmod(0o755)
    return {"template": template, "repo": repo, "remote": remote, "bin": bin_dir, "calls": tmp_path / "gh.jsonl"}


def workflow_command(repo: Path) -> list[str]:
    """The workflow's own command line, as rendered (the remote URL it builds is the one thing replaced)."""
    step = load_yaml(repo / ".github/workflows/template-updates.yaml")["jobs"]["update"]["steps"][-1]
    [line] = [line for line in step["run"].splitlines() if line.startswith("uv run ")]
    return shlex.split(line)


def update_pr(s: dict[str, Any], *extra: str) -> Any:
    command = workflow_command(s["repo"])
    command[command.index("--remote") + 1] = str(s["remote"])
    checks_skipped = command[command.index("--update-command") + 1] + " --no-app-checks"  # Poetry installs: slow
    command[command.index("--update-command") + 1] = checks_skipped
    return run(
        *command, *extra, cwd=s["repo"], check=False,
        PATH=f"{s['bin']}:{VENV_BIN}:/usr/bin:/bin", GH_CALLS=str(s["calls"]), UV_PYTHON_DOWNLOADS="never",
        COPIER=str(VENV_BIN / "copier"),
    )  # fmt: skip


def gh_calls(s: dict[str, Any]) -> list[list[str]]:
    path: Path = s["calls"]
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def remote_log(s: dict[str, Any], branch: str) -> list[str]:
    return run("git", "log", "--format=%s", f"main..{branch}", cwd=s["remote"]).stdout.splitlines()


def test_one_pull_request_per_release_and_none_twice(setup: dict[str, Any]) -> None:
    s = setup
    nothing = update_pr(s)
    assert nothing.returncode == 0, nothing.stdout + nothing.stderr
    assert "is on the newest template release" in nothing.stdout
    assert gh_calls(s) == []

    s["template"].edit("template/APPS.md.jinja", "# The apps of this monorepo", "# The apps of this monorepo (1.1)")
    s["template"].release("v1.1.0")
    result = update_pr(s)
    assert result.returncode == 0, result.stdout + result.stderr
    assert remote_log(s, "template-update/1.1.0") == [
        "Update second_app from sdk-deploy-template v1.1.0",  # update_apps names the release
        f"Update {APP} from sdk-deploy-template v1.1.0",
    ]
    [call] = gh_calls(s)
    assert call[:4] == ["pr", "create", "--head", "template-update/1.1.0"]
    assert call[call.index("--title") + 1] == "Update apps to sdk-deploy-template 1.1.0"
    assert "--draft" not in call
    assert "close and reopen it to run CI" in call[call.index("--body") + 1]

    run("git", "switch", "--quiet", "main", cwd=s["repo"])
    again = update_pr(s)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "template-update/1.1.0 exists already" in again.stdout
    assert len(gh_calls(s)) == 1, "no second pull request for the same release"


def test_an_app_that_needs_a_person_gets_a_draft_with_its_state_committed(setup: dict[str, Any]) -> None:
    s = setup
    apps_md = s["repo"] / "APPS.md"
    apps_md.write_text(apps_md.read_text().replace("# The apps of this monorepo", "# Our apps", 1))
    commit_all(s["repo"], "a colliding edit")
    run("git", "push", "--quiet", s["remote"], "main", cwd=s["repo"])
    s["template"].edit("template/APPS.md.jinja", "# The apps of this monorepo", "# The apps of this monorepo (1.1)")
    s["template"].release("v1.1.0")
    result = update_pr(s)
    assert result.returncode == 0, result.stdout + result.stderr
    [commit] = remote_log(s, "template-update/1.1.0")
    assert commit == "Template update: an app needs attention (see the pull request)"
    shown = run("git", "show", "template-update/1.1.0:APPS.md", cwd=s["remote"]).stdout
    assert "<<<<<<< before updating" in shown, "the conflict is committed for a person to resolve"
    [call] = gh_calls(s)
    assert "--draft" in call
    body = call[call.index("--body") + 1]
    assert "An app needs attention" in body
    assert f"{APP} needs attention: conflicts in APPS.md" in body
