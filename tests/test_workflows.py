"""The rendered workflows: valid, clean under zizmor, complete for the pinned deploy action, gated by
the app's checks, guarded by the deployment policy, and checked after the deploy."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from tools import pins

from .conftest import APP, AgeKey, answers, load_yaml, new_monorepo, require_tool, run

# The inputs `required: true` in the pinned action's action.yaml (Unique-AG/sdk-deploy-action at
# extensions/versions.jinja's DEPLOY_ACTION sha), and the optional ones the workflows set.
REQUIRED_INPUTS = {
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
OPTIONAL_INPUTS_SET = {
    "encrypted_env_file",
    "dockerfile",
    "poetry_version",
    "sops_version",
    "location",
    "cpu",
    "memory",
    "min_replicas",
    "max_replicas",
}
# The action's outputs (same action.yaml).
OUTPUTS = {"fqdn", "app_name", "location", "environment", "resource_group_name"}
ACTION = pins.uses(pins.versions().DEPLOY_ACTION)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, age_key: AgeKey) -> Path:
    """Two apps: three environments with per-environment files, custom sizing and region, dev and
    staging allowed from any branch; and a second app with the defaults."""
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
            location="westeurope",
            any_branch_environments=["dev", "staging"],
        ),
    )
    return new_monorepo(repo, {"app_name": "second_app", "environments": ["dev", "prod"]})


def workflows(repo: Path) -> list[Path]:
    return sorted((repo / ".github/workflows").glob("*.yaml"))


def deploy_workflow(repo: Path, app: str, env: str) -> dict[str, Any]:
    return load_yaml(repo / f".github/workflows/{app}.{env}.deploy.yaml")


def step(workflow: dict[str, Any], name_or_id: str) -> dict[str, Any]:
    steps = workflow["jobs"]["deploy"]["steps"]
    return next(s for s in steps if name_or_id in (s.get("id"), s.get("name")))


def test_workflows_match_github_schema(repo: Path, monorepo: Path) -> None:
    files = [*workflows(repo), *workflows(monorepo)]
    assert len(files) == 2 * 2 + 5 + 2  # apps.ci + app.checks in each; 5 and 2 deploy workflows
    run(require_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *files)


def test_zizmor_finds_nothing(repo: Path, monorepo: Path) -> None:
    for path in [repo, monorepo]:
        result = run(require_tool("zizmor"), "--offline", "--no-progress", path / ".github/workflows", check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "No findings" in result.stdout + result.stderr


def test_deploy_step_has_every_input_with_the_answers(repo: Path) -> None:
    for env in ["dev", "staging", "prod"]:
        path = repo / f".github/workflows/{APP}.{env}.deploy.yaml"
        inputs = step(load_yaml(path), "deploy")["with"]
        assert set(inputs) == REQUIRED_INPUTS | OPTIONAL_INPUTS_SET
        assert (inputs["module"], inputs["environment"]) == (APP, env)
        assert inputs["encrypted_env_file"] == f".env.{env}.enc"
        assert inputs["azure_storage_account_id"] == "${{ vars.AZURE_STORAGE_ACCOUNT_ID }}"
        assert inputs["age_private_key"] == "${{ secrets.AGE_PRIVATE_KEY }}"
        assert inputs["location"] == "westeurope"
        assert (inputs["cpu"], inputs["memory"]) == ("1.25", "2.5")
        assert (inputs["min_replicas"], inputs["max_replicas"]) == ("2", "4")
        assert inputs["poetry_version"] == "2.4.1"
        assert inputs["sops_version"] == pins.versions().SOPS_VERSION  # empty answer: the template's version
        text = path.read_text()
        assert f"uses: {ACTION}\n" in text
        assert re.search(r"billed", text), "cpu/memory must say they cost money"
        assert "where the app runs and where its data and logs live" in text
    second = step(deploy_workflow(repo, "second_app", "prod"), "deploy")["with"]
    assert (second["module"], second["environment"], second["encrypted_env_file"]) == ("second_app", "prod", ".env.enc")
    assert (second["location"], second["min_replicas"]) == ("switzerlandnorth", "1")


def test_permissions_concurrency_and_names(repo: Path) -> None:
    for path in workflows(repo):
        workflow = load_yaml(path)
        assert workflow["permissions"] == {}, path.name
        for job in workflow["jobs"].values():
            assert "permissions" in job, f"{path.name}: every job states its permissions"
        if not path.name.endswith(".deploy.yaml"):
            continue
        app, env = path.name.split(".")[:2]
        assert workflow["name"] == f"[{app}][env: {env}] Deploy to Azure Container Apps"
        assert set(workflow[True]) == {"workflow_dispatch"}  # YAML 1.1 reads the key `on` as True
        jobs = workflow["jobs"]
        assert jobs["deploy"]["permissions"] == {"id-token": "write", "contents": "read"}
        assert jobs["checks"]["permissions"] == {"contents": "read"}
        assert jobs["deploy"]["environment"] == env
        assert workflow["concurrency"] == {"group": f"deploy-{app}-{env}", "cancel-in-progress": False}


def test_red_code_never_reaches_azure(repo: Path) -> None:
    """The deploy job needs the app's checks, which run the same gate as CI: scripts/check_app.py."""
    for app, env in [(APP, "dev"), (APP, "prod"), ("second_app", "prod")]:
        jobs = deploy_workflow(repo, app, env)["jobs"]
        assert jobs["deploy"]["needs"] == "checks"
        assert jobs["checks"]["uses"] == "$/.github/workflows/app.checks.yaml"
        assert jobs["checks"]["with"] == {"app": app, "python-version": "3.12"}
    checks = load_yaml(repo / ".github/workflows/app.checks.yaml")
    assert set(checks[True]["workflow_call"]["inputs"]) == {"app", "python-version"}
    runs = [s.get("run", "") for s in checks["jobs"]["checks"]["steps"]]
    assert 'python scripts/check_app.py "${APP}"' in runs
    assert f'python -m pip install "poetry=={pins.versions().POETRY_VERSION}"' in runs
    uses = [s.get("uses") for s in checks["jobs"]["checks"]["steps"] if s.get("uses")]
    pinned = [pins.versions().CHECKOUT_ACTION, pins.versions().SETUP_PYTHON_ACTION]
    assert uses == [f"{action['name']}@{action['sha']}" for action in pinned]  # YAML drops the `# tag` comment


def test_default_branch_guard_by_default_and_where_not_allowed(repo: Path) -> None:
    def guarded(app: str, env: str) -> bool:
        jobs = deploy_workflow(repo, app, env)["jobs"]
        if "branch" not in jobs:
            return False
        assert jobs["checks"]["needs"] == "branch"
        [guard] = jobs["branch"]["steps"]
        assert guard["if"] == "github.ref != format('refs/heads/{0}', github.event.repository.default_branch)"
        return True

    assert guarded(APP, "prod")
    assert not guarded(APP, "dev")
    assert not guarded(APP, "staging")
    assert guarded("second_app", "prod")
    assert guarded("second_app", "dev"), "the default (no any_branch_environments) keeps the policy for dev too"


def test_no_expression_is_interpolated_into_a_script(repo: Path) -> None:
    for path in workflows(repo):
        for job in load_yaml(path)["jobs"].values():
            for s in job.get("steps", []):
                assert "${{" not in s.get("run", ""), f"{path.name}: {s.get('name')}"


def test_summary_shows_the_deploy_outputs_and_the_webhook_to_register(repo: Path) -> None:
    summary = step(deploy_workflow(repo, APP, "prod"), "Summary")
    assert {f"steps.deploy.outputs.{output}" for output in OUTPUTS} <= set(
        re.findall(r"steps\.deploy\.outputs\.\w+", yaml.safe_dump(summary["env"]))
    )
    assert "Webhook endpoint to register on the platform | https://${FQDN}/webhook" in summary["run"]
    assert "GITHUB_STEP_SUMMARY" in summary["run"]


def test_apps_ci_checks_every_app_and_the_repository(monorepo: Path) -> None:
    ci = load_yaml(monorepo / ".github/workflows/apps.ci.yaml")
    repository = " ".join(str(s.get("run", "")) for s in ci["jobs"]["repository"]["steps"])
    for command in ["check_secrets.py --all", "python scripts/doctor.py", "ruff check", "mypy --strict scripts"]:
        assert command in repository
    assert ci["jobs"]["app"]["uses"] == "$/.github/workflows/app.checks.yaml"
    assert ci["jobs"]["app"]["strategy"]["matrix"]["app"] == "${{ fromJSON(needs.discover.outputs.apps) }}"


# ---- The post-deploy health check, run as the workflow runs it (bash, curl) ----------------------


class Revision(BaseHTTPRequestHandler):
    """A container app whose new revision answers /health with the scripted statuses, then 200."""

    statuses: ClassVar[list[int]] = []

    def do_GET(self) -> None:
        status = Revision.statuses.pop(0) if Revision.statuses else 200
        self.send_response(status if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def revision() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Revision)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def run_health_step(repo: Path, tmp_path: Path, url: str, wait_seconds: int) -> tuple[Any, str]:
    health = step(deploy_workflow(repo, APP, "prod"), "Wait until the new revision answers /health")
    assert health["env"]["URL"] == "https://${{ steps.deploy.outputs.fqdn }}"
    assert health["env"]["HEALTH_PATH"] == "/health"
    summary = tmp_path / "summary.md"
    summary.touch()
    result = run(
        "bash", "-e", "-c", health["run"], check=False,
        URL=url, HEALTH_PATH="/health", WAIT_SECONDS=str(wait_seconds), INTERVAL_SECONDS="0.2",
        GITHUB_STEP_SUMMARY=str(summary),
    )  # fmt: skip
    return result, summary.read_text()


def test_health_check_waits_for_the_new_revision(repo: Path, tmp_path: Path, revision: str) -> None:
    Revision.statuses = [503, 503, 404]
    result, summary = run_health_step(repo, tmp_path, revision, wait_seconds=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{revision}/health answers 200" in result.stdout
    assert Revision.statuses == []  # it kept asking until the revision was ready
    assert summary == ""


def test_health_check_fails_with_an_error_and_a_summary(repo: Path, tmp_path: Path, revision: str) -> None:
    Revision.statuses = [503] * 1000
    result, summary = run_health_step(repo, tmp_path, revision, wait_seconds=2)
    assert result.returncode == 1
    assert f"::error title=Health check failed::{revision}/health did not answer 200 within 2 s" in result.stdout
    assert "(last status: 503)" in result.stdout
    assert f"`{revision}/health` did not answer 200 within 2 s" in summary
