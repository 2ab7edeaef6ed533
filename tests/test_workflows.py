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

from .conftest import APP, TEMPLATE, AgeKey, answers, load_yaml, new_monorepo, require_tool, run

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
    assert len(files) == 3 * 2 + 5 + 2  # apps.ci, app.checks, template-updates in each; 5 and 2 deploy workflows
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


# ---- Node 24: every action a workflow runs declares a runtime GitHub still has ------------------------

RUNTIMES: dict[str, dict[str, Any]] = {
    record["uses"]: record for record in load_yaml(Path(__file__).parent / "action_runtimes.yaml")["actions"]
}
RUNTIMES_GITHUB_RUNS = {"composite", "docker"}  # besides node24 and newer


def action_uses(workflow: dict[str, Any]) -> list[str]:
    """Every action a workflow runs: its steps' `uses`, and jobs calling another repository's workflow.
    A job calling a workflow of the same repository (`$/` or `./`) is not an action: that file is checked itself."""
    found = []
    for job in workflow["jobs"].values():
        if "uses" in job and not job["uses"].startswith(("$/", "./")):
            found.append(job["uses"])
        found += [s["uses"] for s in job.get("steps", []) if "uses" in s]
    return found


def runtime_problems(workflow: dict[str, Any]) -> list[str]:
    """One line per action whose recorded runtime is Node 20 or older, or that has no recorded runtime."""
    problems = []
    for uses in action_uses(workflow):
        record = RUNTIMES.get(uses)
        if record is None:
            problems.append(f"{uses}: runtime unknown (read its action.yml, record it in tests/action_runtimes.yaml)")
            continue
        using = record["runs"]["using"]
        node = re.fullmatch(r"node(\d+)", using)
        if (node and int(node[1]) <= 20) or (not node and using not in RUNTIMES_GITHUB_RUNS):
            problems.append(f"{uses} ({record['tag']}): runs on {using}, which GitHub's runners no longer have")
    return problems


def own_workflows() -> list[Path]:
    return sorted((TEMPLATE / ".github/workflows").glob("*.yaml"))


def test_every_action_runs_on_node_24_or_later(repo: Path, monorepo: Path) -> None:
    """The rendered workflows (every kind: guarded, any-branch, per-environment files) and this
    repository's own CI use only actions whose action.yml, read at the pinned commit, declares node24+."""
    files = [*workflows(repo), *workflows(monorepo), *own_workflows()]
    assert {path.name for path in own_workflows()} == {"ci.yaml", "release.yaml"}
    for path in files:
        assert runtime_problems(load_yaml(path)) == [], path.name
    used = {uses for path in files for uses in action_uses(load_yaml(path))}
    versions = pins.versions()
    pinned = [versions.CHECKOUT_ACTION, versions.SETUP_PYTHON_ACTION, versions.DEPLOY_ACTION]
    assert used == {f"{action['name']}@{action['sha']}" for action in pinned}


def test_the_runtime_check_refuses_node_20_and_unknown_actions(monorepo: Path) -> None:
    """A rendered workflow with the previous (Node 20) pins, or with an action nobody recorded, is refused."""
    versions = pins.versions()
    text = (monorepo / ".github/workflows/app.checks.yaml").read_text()
    old = {record["uses"].split("@")[0]: record for record in RUNTIMES.values() if record["runs"]["using"] == "node20"}
    for action in [versions.CHECKOUT_ACTION, versions.SETUP_PYTHON_ACTION]:
        text = text.replace(f"{action['name']}@{action['sha']}", old[action["name"]]["uses"])
    problems = runtime_problems(yaml.safe_load(text))
    assert problems == [
        f"{old[name]['uses']} ({old[name]['tag']}): runs on node20, which GitHub's runners no longer have"
        for name in ["actions/checkout", "actions/setup-python"]
    ]
    unknown = yaml.safe_load(text.replace(old["actions/checkout"]["uses"], "actions/cache@v4"))
    assert "actions/cache@v4: runtime unknown" in runtime_problems(unknown)[0]
    called = "octo/ci/.github/workflows/build.yaml@v1"
    remote = {"jobs": {"x": {"uses": called}, "y": {"uses": "$/.github/w.yaml"}}}
    assert [problem.split(":")[0] for problem in runtime_problems(remote)] == [called]


def test_each_pin_keeps_the_runtime_its_action_yml_declares() -> None:
    versions = pins.versions()
    for action in [versions.CHECKOUT_ACTION, versions.SETUP_PYTHON_ACTION, versions.DEPLOY_ACTION]:
        record = RUNTIMES[f"{action['name']}@{action['sha']}"]
        assert (action["tag"], action["runtime"]) == (record["tag"], record["runs"]["using"]), action["name"]
        assert action["sha"] in record["read"], "say where the runtime was read"


def test_apps_md_says_what_the_deploy_actions_own_node_20_steps_mean(monorepo: Path) -> None:
    """The deploy action's composite steps use actions by major tag, several on Node 20: the guide names each
    one that is Node 20 or was not read, says what GitHub does with them, and what to watch."""
    apps_md = (monorepo / "APPS.md").read_text()
    deploy = pins.versions().DEPLOY_ACTION
    inner = RUNTIMES[f"{deploy['name']}@{deploy['sha']}"]["runs"]["steps"]
    for step_ in inner:
        if step_["using"] in {"node20", None}:
            assert f"`{step_['uses']}`" in apps_md, step_["uses"]
    for fact in ["2026-06-02", "2026-09-16", "Node 24", deploy["sha"]]:
        assert fact in apps_md


def test_template_updates_workflow_is_least_privilege(monorepo: Path) -> None:
    """Scheduled and dispatchable only, no trigger that runs other people's code; it may push a branch and
    open a pull request and nothing else; the checkout keeps no credentials; uv, Poetry and copier pinned."""
    versions = pins.versions()
    workflow = load_yaml(monorepo / ".github/workflows/template-updates.yaml")
    assert set(workflow[True]) == {"schedule", "workflow_dispatch"}
    [job] = workflow["jobs"].values()
    assert job["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert job["if"] == "github.event_name == 'workflow_dispatch' || vars.TEMPLATE_UPDATE_PRS == 'true'"
    checkout, setup_python, install, update = job["steps"]
    assert checkout["with"] == {"persist-credentials": False}
    assert setup_python["with"] == {"python-version": "3.12"}
    assert install["run"] == f'python -m pip install "uv=={versions.UV_VERSION}" "poetry=={versions.POETRY_VERSION}"'
    assert update["env"]["COPIER"] == f"uvx copier@{versions.COPIER_VERSION}"
    assert update["env"]["GH_TOKEN"] == "${{ github.token }}"
    assert (
        'uv run scripts/update_pr.py --remote "${remote}" --update-command "uv run scripts/update_apps.py"'
        in (update["run"])
    )
    for path in workflows(monorepo):
        assert "pull_request_target" not in load_yaml(path)[True], path.name


def test_keys_per_environment_keep_workflows_valid_and_clean(tmp_path: Path) -> None:
    """With one age key per environment each deploy job names its GitHub environment, whose secret
    AGE_PRIVATE_KEY it takes; the workflows stay schema-valid and zizmor-clean."""
    from .conftest import new_age_key

    keys = {"dev": new_age_key().public, "prod": new_age_key().public}
    data = {"per_environment_env_files": True, "age_key_per_environment": True, "age_environment_keys": keys}
    repo = new_monorepo(tmp_path / "repo", answers(new_age_key(), **data))
    files = workflows(repo)
    run(require_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *files)
    result = run(require_tool("zizmor"), "--offline", "--no-progress", repo / ".github/workflows", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    for env in keys:
        deploy = load_yaml(repo / f".github/workflows/{APP}.{env}.deploy.yaml")["jobs"]["deploy"]
        assert deploy["environment"] == env
