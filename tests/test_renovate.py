"""Update pull requests: the renovate.json a copy renders is valid for Renovate's own validator (npm `renovate`,
installed by tools/npm_tools.py), and it leaves the template's own pins to `copier update`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pathspec
import pytest

from tools import npm_tools

from .conftest import AgeKey, answers, new_monorepo, run

VALIDATOR_ENV = {"RENOVATE_X_IGNORE_RE2": "true"}  # re2 is a native optional module; the config has no regex


@pytest.fixture(scope="module")
def validator() -> list[str]:
    return npm_tools.renovate_config_validator()


@pytest.fixture(scope="module")
def two_apps(tmp_path_factory: pytest.TempPathFactory, age_key: AgeKey) -> Path:
    repo = new_monorepo(tmp_path_factory.mktemp("renovate"), answers(age_key, environments=["dev", "qa", "prod"]))
    return new_monorepo(repo, {"app_name": "second_app"})


def config(repo: Path) -> dict[str, Any]:
    return dict(json.loads((repo / "renovate.json").read_text()))


def validate(validator: list[str], repo: Path) -> tuple[int, str]:
    """Renovate's validator as a repository runs it: no file argument, so it finds the repository config where
    Renovate looks for it, and --strict also fails on warnings and on options that need a migration."""
    result = run(*validator, "--strict", cwd=repo, check=False, **VALIDATOR_ENV)
    return result.returncode, result.stdout + result.stderr


def test_renovate_accepts_the_rendered_configuration(validator: list[str], two_apps: Path) -> None:
    code, output = validate(validator, two_apps)
    assert code == 0, output
    assert "Validating renovate.json" in output
    assert "Config validated successfully" in output


def test_renovate_refuses_a_broken_configuration(validator: list[str], two_apps: Path, tmp_path: Path) -> None:
    """The validator fails where Renovate would: an unknown manager, and an option renamed since (a migration)."""
    repo = tmp_path / "repo"
    (repo).mkdir()
    shutil.copy2(two_apps / "renovate.json", repo / "renovate.json")
    broken = config(repo)
    broken["enabledManagers"] = [*broken["enabledManagers"], "copyer"]
    (repo / "renovate.json").write_text(json.dumps(broken))
    code, output = validate(validator, repo)
    assert code == 1
    assert 'not supported: \\"copyer' in output
    old = config(two_apps)
    old["copier"] = {"fileMatch": ["(^|/)\\.copier-answers\\.yml$"]}  # before Renovate 41: managerFilePatterns
    (repo / "renovate.json").write_text(json.dumps(old))
    code, output = validate(validator, repo)
    assert code == 1
    assert "Config migration necessary" in output


def rule(repo: Path, manager: str, **having: Any) -> dict[str, Any]:
    [found] = [
        r for r in config(repo)["packageRules"]
        if r["matchManagers"] == [manager] and all(r.get(k) == v for k, v in having.items())
    ]  # fmt: skip
    return found


def test_template_updates_arrive_as_one_pull_request_per_app(two_apps: Path) -> None:
    """Renovate's copier manager runs `copier update` per answers file; copier refuses a dirty tree, so the
    apps' updates must not share a branch: the branch and the commit name the app's folder."""
    data = config(two_apps)
    assert {"copier", "poetry", "github-actions"} == set(data["enabledManagers"])
    copier = rule(two_apps, "copier")
    assert copier["additionalBranchPrefix"] == "{{packageFileDir}}-"
    assert copier["commitMessageSuffix"] == "for {{packageFileDir}}"
    assert not {"ignoreScripts", "allowScripts"} & set(data), "the template needs no --trust"
    assert rule(two_apps, "poetry", additionalBranchPrefix="{{packageFileDir}}-")


def test_renovate_leaves_the_templates_pins_to_copier_update(two_apps: Path) -> None:
    """Every workflow the template renders is excluded from the github-actions manager; a team's own is not."""
    globs = rule(two_apps, "github-actions", enabled=False)["matchFileNames"]
    spec = pathspec.PathSpec.from_lines("gitignore", globs)
    rendered = sorted(str(p.relative_to(two_apps)) for p in (two_apps / ".github/workflows").glob("*.yaml"))
    assert len(rendered) == 2 + 3 + 2  # apps.ci, app.checks; three and two deploy workflows
    assert [path for path in rendered if not spec.match_file(path)] == []
    for own in [".github/workflows/release.yaml", ".github/workflows/deploy.yaml", "app/.github/workflows/x.yaml"]:
        assert not spec.match_file(own), own
    pinned = rule(two_apps, "poetry", enabled=False)["matchDepNames"]
    assert "gunicorn" in pinned, "the runtime builds on gunicorn's internals: the template owns its pin"
