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
from tools.template_repo import TemplateRepo, commit_all, init_repository

from .conftest import APP, AgeKey, answers, new_monorepo, render, run

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
    assert len(rendered) == 3 + 3 + 2  # apps.ci, app.checks, template-updates; three and two deploy workflows
    assert [path for path in rendered if not spec.match_file(path)] == []
    for own in [".github/workflows/release.yaml", ".github/workflows/deploy.yaml", "app/.github/workflows/x.yaml"]:
        assert not spec.match_file(own), own
    pinned = rule(two_apps, "poetry", enabled=False)["matchDepNames"]
    assert "gunicorn" in pinned, "the runtime builds on gunicorn's internals: the template owns its pin"


# ---- Renovate itself on a monorepo, against a template repository with a newer release ----------------


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory, age_key: AgeKey) -> tuple[TemplateRepo, Path]:
    """Two apps copied from release v1.0.0 of a template repository that has released v1.1.0 since. The
    source is a `git+file://` URL: copier takes it, and it is a URL, as Renovate's copier manager requires."""
    template = TemplateRepo.from_working_tree(tmp_path_factory.mktemp("template"), "v1.0.0")
    source = f"git+file://{template.path}"
    repo = init_repository(tmp_path_factory.mktemp("monorepo"))
    for data in [answers(age_key), {"app_name": "second_app"}]:
        render(repo, data, src=source, vcs_ref="v1.0.0")
        commit_all(repo, f"Add {data['app_name']}")
    template.edit("template/APPS.md.jinja", "# The apps of this monorepo", "# The apps of this monorepo (v1.1.0)")
    template.release("v1.1.0")
    return template, repo


@pytest.mark.slow
def test_renovate_proposes_each_release_as_one_branch_per_app(
    validator: list[str], released: tuple[TemplateRepo, Path], tmp_path: Path
) -> None:
    """Renovate (`--platform=local --dry-run=lookup`: it reads the repository, looks up every dependency, and
    prints the branches it would push) finds every app's answers file and the new release, one branch each.
    Lookups reach PyPI (the apps' Poetry dependencies) and the local template repository, never GitHub."""
    _, repo = released
    renovate = [validator[0], str(Path(validator[1]).with_name("renovate.js"))]
    result = run(
        *renovate, "--platform=local", "--dry-run=lookup", cwd=repo, check=False,
        LOG_LEVEL="debug", LOG_FORMAT="json", RENOVATE_BASE_DIR=str(tmp_path), **VALIDATOR_ENV,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    [found] = [
        entry["config"] for line in result.stdout.splitlines() if line.startswith("{")
        for entry in [json.loads(line)] if entry.get("msg") == "packageFiles with updates"
    ]  # fmt: skip
    copier = {f["packageFile"]: f["deps"] for f in found["copier"]}
    assert set(copier) == {f"{APP}/.copier-answers.yml", "second_app/.copier-answers.yml"}
    for package_file, [dep] in copier.items():
        app = package_file.split("/")[0]
        assert (dep["currentValue"], [u["newValue"] for u in dep["updates"]]) == ("v1.0.0", ["v1.1.0"])
        assert dep["updates"][0]["branchName"].startswith(f"renovate/{app}-")
    poetry = {f["packageFile"]: {d["depName"]: d for d in f["deps"]} for f in found["poetry"]}
    assert set(poetry) == {f"{APP}/pyproject.toml", "second_app/pyproject.toml"}
    for package_file, deps in poetry.items():
        assert deps["gunicorn"]["skipReason"] == "disabled"
        branches = {u["branchName"] for d in deps.values() for u in d.get("updates", [])}
        assert all(b.startswith(f"renovate/{package_file.split('/')[0]}-") for b in branches), branches


@pytest.mark.slow
def test_the_command_renovate_runs_updates_one_app_without_trust(released: tuple[TemplateRepo, Path]) -> None:
    """Renovate's copier manager runs this command (its artifacts.ts: no --trust unless allowScripts is set and
    ignoreScripts is false). It updates the app; a second app in the same, now dirty, tree is refused: the
    reason each app gets its own branch."""
    _, repo = released

    def renovate_update(app: str) -> Any:
        return run(
            "copier", "update", "--skip-answered", "--defaults",
            "--answers-file", f"{app}/.copier-answers.yml", "--vcs-ref", "v1.1.0", cwd=repo, check=False,
        )  # fmt: skip

    first = renovate_update(APP)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "_commit: v1.1.0" in (repo / APP / ".copier-answers.yml").read_text()
    assert (repo / "APPS.md").read_text().startswith("# The apps of this monorepo (v1.1.0)")
    second = renovate_update("second_app")
    assert second.returncode != 0
    assert "Destination repository is dirty" in second.stdout + second.stderr
