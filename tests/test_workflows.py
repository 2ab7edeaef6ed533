"""The rendered deploy workflows: valid, clean under zizmor, and complete for deploy action v3."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools import pins

from .conftest import APP, AgeKey, answers, load_yaml, new_monorepo, require_tool, run

REQUIRED_V3_INPUTS = {
    "module",
    "environment",
    "resource_group_name",
    "acr_login_server",
    "azure_client_id",
    "azure_tenant_id",
    "azure_subscription_id",
    "acr_username",
    "acr_password",
    "age_private_key",
    "azure_storage_account_id",
}
ACTION = pins.uses(pins.versions().DEPLOY_ACTION)


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory, age_key: AgeKey) -> list[Path]:
    """Two apps in one repository (three environments, per-environment files, custom sizing) and a one-env app."""
    repo = new_monorepo(
        tmp_path_factory.mktemp("wf"),
        answers(
            age_key,
            environments=["dev", "staging", "prod"],
            per_environment_env_files=True,
            cpu=1.25,
            min_replicas=2,
            max_replicas=4,
            poetry_version="2.4.1",
            any_branch_environments=["dev", "staging"],
        ),
    )
    new_monorepo(repo, {"app_name": "second_app", "environments": ["prod"]})
    return [repo]


def workflows(repo: Path) -> list[Path]:
    return sorted((repo / ".github/workflows").glob("*.yaml"))


def deploy_step(workflow: dict[str, Any]) -> dict[str, Any]:
    return next(step for step in workflow["jobs"]["deploy"]["steps"] if step.get("id") == "deploy")


def test_workflows_match_github_schema(repos: list[Path], monorepo: Path) -> None:
    files = [f for repo in [*repos, monorepo] for f in workflows(repo)]
    assert len(files) == 8  # ci.yaml + 4 deploys, ci.yaml + 2 deploys
    run(require_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *files)


def test_zizmor_finds_nothing(repos: list[Path], monorepo: Path) -> None:
    for repo in [*repos, monorepo]:
        result = run(require_tool("zizmor"), "--offline", "--no-progress", repo / ".github/workflows", check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "No findings" in result.stdout + result.stderr


def test_deploy_step_has_every_v3_input_with_the_answers(repos: list[Path]) -> None:
    repo = repos[0]
    for env in ["dev", "staging", "prod"]:
        path = repo / f".github/workflows/{APP}.{env}.deploy.yaml"
        step = deploy_step(load_yaml(path))
        inputs = step["with"]
        assert set(inputs) >= REQUIRED_V3_INPUTS
        assert inputs["module"] == APP
        assert inputs["environment"] == env
        assert inputs["encrypted_env_file"] == f".env.{env}.enc"
        assert inputs["azure_storage_account_id"] == "${{ vars.AZURE_STORAGE_ACCOUNT_ID }}"
        assert inputs["age_private_key"] == "${{ secrets.AGE_PRIVATE_KEY }}"
        assert (inputs["cpu"], inputs["memory"]) == ("1.25", "2.5")
        assert (inputs["min_replicas"], inputs["max_replicas"]) == ("2", "4")
        assert inputs["poetry_version"] == "2.4.1"
        assert inputs["sops_version"] == pins.versions().SOPS_VERSION  # empty answer: the template's tested version
        text = path.read_text()
        assert f"uses: {ACTION}\n" in text
        assert re.search(r"cost", text, re.IGNORECASE), "cpu/memory must say they cost money"
    second = deploy_step(load_yaml(repo / ".github/workflows/second_app.prod.deploy.yaml"))["with"]
    assert (second["module"], second["environment"], second["encrypted_env_file"]) == ("second_app", "prod", ".env.enc")


def test_permissions_concurrency_and_names(repos: list[Path]) -> None:
    for path in workflows(repos[0]):
        if path.name == "ci.yaml":
            continue
        app, env = path.name.split(".")[:2]
        workflow = load_yaml(path)
        assert workflow["name"] == f"[{app}][env: {env}] Deploy to Azure Container Apps"
        assert workflow["permissions"] == {}
        assert set(workflow[True]) == {"workflow_dispatch"}  # YAML 1.1 reads the key `on` as True
        job = workflow["jobs"]["deploy"]
        assert job["permissions"] == {"id-token": "write", "contents": "read"}
        assert job["environment"] == env
        assert workflow["concurrency"] == {"group": f"deploy-{app}-{env}", "cancel-in-progress": False}


def test_default_branch_guard_only_where_not_allowed(repos: list[Path]) -> None:
    def guarded(app: str, env: str) -> bool:
        steps = load_yaml(repos[0] / f".github/workflows/{app}.{env}.deploy.yaml")["jobs"]["deploy"]["steps"]
        return any("default_branch" in str(step.get("if", "")) for step in steps)

    assert guarded(APP, "prod")
    assert not guarded(APP, "dev")
    assert not guarded(APP, "staging")
    assert guarded("second_app", "prod")


def test_no_expression_is_interpolated_into_a_script(repos: list[Path]) -> None:
    for path in workflows(repos[0]):
        for job in load_yaml(path)["jobs"].values():
            for step in job["steps"]:
                assert "${{" not in step.get("run", ""), f"{path.name}: {step.get('name')}"


def test_summary_shows_deploy_outputs(repos: list[Path]) -> None:
    steps = load_yaml(repos[0] / f".github/workflows/{APP}.prod.deploy.yaml")["jobs"]["deploy"]["steps"]
    summary = next(step for step in steps if step.get("name") == "Summary")
    assert summary["env"]["FQDN"] == "${{ steps.deploy.outputs.fqdn }}"
    for output in ["app_name", "environment", "resource_group_name", "location"]:
        assert f"steps.deploy.outputs.{output}" in yaml.safe_dump(summary["env"])
    assert "GITHUB_STEP_SUMMARY" in summary["run"]


def test_ci_workflow_checks_every_app(monorepo: Path) -> None:
    ci = load_yaml(monorepo / ".github/workflows/ci.yaml")
    assert ci["permissions"] == {}
    assert "check_secrets.py --all" in str(ci["jobs"]["secrets"])
    steps = " ".join(str(step.get("run", "")) for step in ci["jobs"]["app"]["steps"])
    for command in ["poetry check --lock", "poetry install", "ruff check", "pytest"]:
        assert command in steps
    assert "fromJSON(needs.discover.outputs.apps)" in str(ci["jobs"]["app"]["strategy"])
