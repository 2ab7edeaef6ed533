"""scripts/doctor.py in a generated monorepo: a fresh one (two apps) passes; each kind of problem,
planted by a small edit in a copy of it, is found on one line with its fix, and doctor exits 1.
Real copier renders, git, sops with pyrage keys and Poetry; doctor runs with only the tools a test
gives it on PATH."""

from __future__ import annotations

import ast
import functools
import importlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import jinja2
import pytest
import yaml

from tools import pins
from tools.template_repo import TemplateRepo

from . import handmade
from .conftest import APP, TEMPLATE, AgeKey, answers, commit_all, new_age_key, new_monorepo, render, require_tool, run

SECOND = "second_app"  # environments dev and qa, one env file per environment
WORKFLOWS = Path(".github/workflows")
ADOPT = 'APPS.md, section "Adopt an existing app"'


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, age_key: AgeKey) -> Path:
    """Two apps copied from one release of the working tree (so both record the same template version)."""
    template = TemplateRepo.from_working_tree(tmp_path_factory.mktemp("template"), tag="v1.0.0")
    source = {"src": template.path, "vcs_ref": "v1.0.0"}
    repo = new_monorepo(tmp_path_factory.mktemp("doctor"), answers(age_key), **source)
    render(repo, {"app_name": SECOND, "environments": ["dev", "qa"], "per_environment_env_files": True}, **source)
    commit_all(repo, f"Add {SECOND}")
    return repo


@pytest.fixture
def repo(pristine: Path, tmp_path: Path) -> Path:
    """A copy of the fresh two-app monorepo (with its git history) for one test to break."""
    return Path(shutil.copytree(pristine, tmp_path / "repo", symlinks=True))


@dataclass(frozen=True)
class Result:
    code: int
    output: str

    @property
    def problems(self) -> list[str]:
        return [line for line in self.output.splitlines() if " -> fix: " in line]

    def finds(self, where: str, what: str, fix: str) -> str:
        """The single problem line about `where` saying `what`, whose fix says `fix`."""
        assert self.code == 1, self.output
        found = [
            line
            for line in self.problems
            if line.startswith(where) and what in line.split(" -> fix: ")[0] and fix in line.split(" -> fix: ")[1]
        ]
        assert len(found) == 1, f"expected one line: {where} ... {what} ... fix: {fix}\n{self.output}"
        return found[0]


def doctor(repo: Path, *tools: str, apps: tuple[str, ...] = (), **env: str) -> Result:
    """`python scripts/doctor.py [APP...]` from the monorepo root, with git and only `tools` on PATH."""
    bin_dir = repo.parent / f"bin-{'-'.join(tools) or 'bare'}"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("git", *tools):
        if not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(require_tool(tool))
    result = subprocess.run(
        [sys.executable, "scripts/doctor.py", *apps],
        cwd=repo,
        env={"PATH": str(bin_dir), "HOME": os.environ.get("HOME", str(repo.parent)), **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert not result.stderr, result.stderr  # no traceback, nothing on stderr
    assert result.returncode in (0, 1), result.stdout
    return Result(result.returncode, result.stdout)


def edit(path: Path, old: str, new: str, regex: bool = False) -> None:
    text = path.read_text()
    changed = re.sub(old, new, text, count=1, flags=re.MULTILINE) if regex else text.replace(old, new, 1)
    assert changed != text, f"{old!r} is not in {path}: the template changed, adapt this test"
    path.write_text(changed)


def workflow(repo: Path, app: str = APP, env: str = "prod") -> Path:
    return repo / WORKFLOWS / f"{app}.{env}.deploy.yaml"


def local_port(repo: Path, app: str) -> str:
    return re.findall(r"^local_port: (\d+)$", (repo / app / ".copier-answers.yml").read_text(), re.MULTILINE)[0]


def hand_made(repo: Path, folder: str, module: str | None = None) -> Path:
    """A folder deployed by its own workflow but without answers, as teams made them before the template."""
    shutil.copytree(repo / APP, repo / folder)
    (repo / folder / ".copier-answers.yml").unlink()
    (repo / folder / "docker-compose.yaml").unlink()
    path = repo / WORKFLOWS / f"{folder}.prod.deploy.yaml"
    path.write_text(workflow(repo).read_text().replace(f"module: {APP}", f"module: {module or folder}"))
    return path


def sops_encrypt(repo: Path, key: str, path: str, settings: str = "API_KEY=sk-123\n") -> None:
    plain = repo / path.removesuffix(".enc")
    plain.write_text(settings)
    encrypted = run(
        require_tool("sops"), "--encrypt", "--input-type", "dotenv", "--output-type", "dotenv", "--age", key, plain
    ).stdout
    (repo / path).write_text(encrypted)
    plain.unlink()


# ---- a fresh monorepo ------------------------------------------------------------------------


def test_a_fresh_monorepo_passes(pristine: Path) -> None:
    result = doctor(pristine)
    assert result.code == 0, result.output
    assert result.problems == []
    assert f"doctor: OK: 2 app(s) ({APP}, {SECOND}), 4 environment(s), 4 deploy step(s)" in result.output
    # What it could not check here is said, not silently passed over.
    assert "note: poetry not found: skipped" in result.output
    assert "note: sops not found: skipped" in result.output


def test_the_deploy_step_is_found_by_what_it_uses_in_any_job(repo: Path) -> None:
    path = workflow(repo)
    edit(
        path, r"^  deploy:$", "  checks:\n    runs-on: ubuntu-latest\n    steps:\n      - run: 'true'\n  release:", True
    )
    commit_all(repo)
    assert doctor(repo).code == 0
    edit(path, 'cpu: "0.5"', 'cpu: "2"')
    found = doctor(repo).finds(f"{WORKFLOWS}/{APP}.prod.deploy.yaml (job release)", "cpu is '2'", 'set cpu: "0.5"')
    assert f"{APP}/.copier-answers.yml renders '0.5'" in found


# ---- the action's preflight and Azure's rules ------------------------------------------------


@pytest.mark.parametrize("dependency", ["gunicorn", "python-dotenv"])
def test_pyproject_without_the_line_the_action_greps_for(repo: Path, dependency: str) -> None:
    pyproject = repo / APP / "pyproject.toml"
    edit(pyproject, rf"^{dependency} = .*\n", "", regex=True)
    edit(
        pyproject,
        "[tool.poetry.dependencies]",
        f'[project]\ndependencies = ["{dependency}>=1"]\n\n[tool.poetry.dependencies]',
    )
    commit_all(repo)
    doctor(repo).finds(
        f"{APP}/pyproject.toml",
        f"no line starts with '{dependency} ='",
        f'add {dependency} = "..." under [tool.poetry.dependencies]',
    )


@pytest.mark.parametrize("style", ["poetry", "pep621"])
def test_an_asgi_app_served_by_a_wsgi_worker(repo: Path, style: str) -> None:
    """A Quart app under gthread answers no request (issue 17: adoption once wrote exactly that)."""
    pyproject, config = repo / APP / "pyproject.toml", repo / APP / "gunicorn.conf.py"
    if style == "poetry":
        edit(pyproject, "[tool.poetry.dependencies]\n", '[tool.poetry.dependencies]\nQuart = "^0.19.6"\n')
    else:
        edit(
            pyproject,
            "[tool.poetry.dependencies]",
            '[project]\ndependencies = ["fastapi[all]>=0.110"]\n\n[tool.poetry.dependencies]',
        )
    edit(config, r'^worker_class = ".*"$', 'worker_class = "gthread"', regex=True)  # the template's own is WSGI
    commit_all(repo)
    asgi = "quart" if style == "poetry" else "fastapi"
    doctor(repo).finds(
        f"{APP}/gunicorn.conf.py",
        f"worker_class 'gthread' serves WSGI, but the app depends on {asgi} (ASGI)",
        f"copier update --defaults -a {APP}/.copier-answers.yml"
        " --data gunicorn_worker_class=uvicorn.workers.UvicornWorker",
    )
    edit(config, 'worker_class = "gthread"', 'worker_class = "uvicorn_worker.UvicornWorker"')
    commit_all(repo)
    assert "serves WSGI" not in doctor(repo).output


def test_missing_env_file(repo: Path) -> None:
    run("git", "rm", "-q", f"{APP}/.env.enc", cwd=repo)
    commit_all(repo)
    doctor(repo).finds(
        f"{APP}/.env.enc", "is missing: the deploy action refuses", f"uv run scripts/env_secrets.py encrypt {APP}"
    )


def test_env_file_not_committed(repo: Path) -> None:
    run("git", "rm", "-q", "--cached", f"{SECOND}/.env.qa.enc", cwd=repo)
    run("git", "commit", "-qm", "stop tracking it", cwd=repo)  # still on disk, not in what a deploy checks out
    doctor(repo).finds(f"{SECOND}/.env.qa.enc", "is not committed", f"git add {SECOND}/.env.qa.enc")


def test_module_name_the_action_refuses(repo: Path) -> None:
    hand_made(repo, "legacy-app")
    commit_all(repo)
    doctor(repo).finds(
        f"{WORKFLOWS}/legacy-app.prod.deploy.yaml (job deploy)",
        "module name 'legacy-app' is refused by the deploy action",
        "rename the folder",
    )


UPDATE = f"uvx copier@latest update --defaults -a {APP}/.copier-answers.yml --data"


@pytest.mark.parametrize(
    ("old", "new", "what", "fix"),
    [
        (
            "- prod\n",
            "- production-eu-west\n",
            "the Azure container app name 'joke-of-the-day-production-eu-west' (34 characters) breaks Azure's rule",
            f"rename or drop 'production-eu-west': {UPDATE} 'environments=[dev]'",
        ),
        ("cpu: 0.5\n", "cpu: 0.6\n", "cpu '0.6' is not allowed", f"{UPDATE} cpu=0.5"),
        (
            "max_replicas: 1\n",
            "max_replicas: 301\n",
            "max_replicas '301' is not a whole number",
            f"{UPDATE} max_replicas=1",
        ),
        (  # appended: the last key wins, as in YAML
            r"\Z",
            "location: West Europe\n",
            "location 'West Europe' is not an Azure region name",
            f"{UPDATE} location=<region> (list them: az account list-locations",
        ),
    ],
)
def test_answers_that_azure_refuses(repo: Path, old: str, new: str, what: str, fix: str) -> None:
    edit(repo / APP / ".copier-answers.yml", old, new, regex=True)
    commit_all(repo)
    doctor(repo).finds(f"{APP}/.copier-answers.yml", what, fix)


@pytest.mark.parametrize(
    ("memory", "what", "fix"),
    [
        ("3", "memory '3' does not fit cpu 0.5", 'set memory: "1"'),
        ("1Gi", "memory '1Gi' carries a unit", 'set memory: "1"'),
    ],
)
def test_memory_that_does_not_pair_with_cpu(repo: Path, memory: str, what: str, fix: str) -> None:
    path = hand_made(repo, "legacy_app")
    edit(path, 'memory: "1"', f'memory: "{memory}"')
    commit_all(repo)
    doctor(repo).finds(f"{WORKFLOWS}/legacy_app.prod.deploy.yaml (job deploy)", what, fix)


def test_zero_min_replicas_as_earlier_releases_allowed(repo: Path) -> None:
    edit(repo / APP / ".copier-answers.yml", "min_replicas: 1\n", "min_replicas: 0\n")
    for env in ("dev", "prod"):
        edit(workflow(repo, env=env), 'min_replicas: "1"', 'min_replicas: "0"')
    commit_all(repo)
    result = doctor(repo)
    found = result.finds(
        f"{APP}/.copier-answers.yml",
        "min_replicas is 0",
        f"uvx copier@latest update --defaults -a {APP}/.copier-answers.yml --data min_replicas=1",
    )
    assert "Azure refuses a maximum of 0" in found
    assert len(result.problems) == 1, result.output  # the workflows agree with the answers: said once


def test_max_replicas_below_min(repo: Path) -> None:
    path = hand_made(repo, "legacy_app")
    edit(path, 'min_replicas: "1"', 'min_replicas: "3"')
    edit(path, 'max_replicas: "1"', 'max_replicas: "2"')
    commit_all(repo)
    doctor(repo).finds(
        f"{WORKFLOWS}/legacy_app.prod.deploy.yaml (job deploy)",
        "max_replicas 2 is below min_replicas 3",
        'set max_replicas: "3"',
    )


def test_required_input_missing(repo: Path) -> None:
    path = hand_made(repo, "legacy_app")
    edit(path, r"^ *azure_storage_account_id: .*\n", "", regex=True)
    commit_all(repo)
    doctor(repo).finds(
        f"{WORKFLOWS}/legacy_app.prod.deploy.yaml (job deploy)",
        "no 'azure_storage_account_id' input: the action requires it",
        "add it under with:",
    )


# ---- workflows against the answers -----------------------------------------------------------


@pytest.mark.parametrize(
    ("app", "env", "old", "new", "what", "fix"),
    [
        (APP, "prod", 'cpu: "0.5"', 'cpu: "1"', "cpu is '1' but", 'set cpu: "0.5"'),
        (APP, "prod", 'memory: "1"', 'memory: "2"', "memory is '2' but", 'set memory: "1"'),
        (APP, "dev", 'max_replicas: "1"', 'max_replicas: "2"', "max_replicas is '2' but", 'set max_replicas: "1"'),
        (
            SECOND,
            "qa",
            "encrypted_env_file: .env.qa.enc",
            "encrypted_env_file: .env.dev.enc",
            "is '.env.dev.enc'",
            ".env.qa.enc",
        ),
    ],
)
def test_workflow_input_that_disagrees_with_the_answers(
    repo: Path, app: str, env: str, old: str, new: str, what: str, fix: str
) -> None:
    edit(workflow(repo, app, env), old, new)
    commit_all(repo)
    doctor(repo).finds(f"{WORKFLOWS}/{app}.{env}.deploy.yaml (job deploy)", what, fix)


def test_deploy_to_an_environment_the_app_does_not_have(repo: Path) -> None:
    edit(workflow(repo), r"(?s)(.*)environment: prod", r"\1environment: staging", regex=True)  # the step's input
    commit_all(repo)
    doctor(repo).finds(
        f"{WORKFLOWS}/{APP}.prod.deploy.yaml (job deploy)",
        f"deploys {APP} to 'staging', not one of its environments (dev, prod)",
        f"add the environment: {UPDATE} 'environments=[dev, prod, staging]'",
    )


def test_job_in_another_github_environment_than_it_deploys_to(repo: Path) -> None:
    edit(workflow(repo), "environment: prod", "environment: dev")  # the job's, which picks variables and secrets
    commit_all(repo)
    doctor(repo).finds(
        f"{WORKFLOWS}/{APP}.prod.deploy.yaml (job deploy)",
        "the job runs in GitHub environment 'dev' but deploys to 'prod'",
        "set environment: prod on the job",
    )


def test_workflow_in_another_region_than_the_answers(repo: Path) -> None:
    edit(workflow(repo), "location: switzerlandnorth", "location: westeurope")
    commit_all(repo)
    doctor(repo).finds(
        f"{WORKFLOWS}/{APP}.prod.deploy.yaml (job deploy)",
        f"location is 'westeurope' but {APP}/.copier-answers.yml renders 'switzerlandnorth'",
        'set location: "switzerlandnorth"',
    )


def test_action_not_at_the_pinned_commit(repo: Path) -> None:
    sha = pins.versions().DEPLOY_ACTION["sha"]
    edit(workflow(repo), f"sdk-deploy-action@{sha}", "sdk-deploy-action@v3")
    commit_all(repo)
    doctor(repo).finds(
        f"{WORKFLOWS}/{APP}.prod.deploy.yaml (job deploy)",
        f"uses Unique-AG/sdk-deploy-action@v3, not the template's pinned Unique-AG/sdk-deploy-action@{sha}",
        f"uvx copier@latest update --defaults -a {APP}/.copier-answers.yml",
    )


def test_apps_at_different_template_versions_keep_their_pins(repo: Path) -> None:
    """While `python scripts/update_apps.py` moves the apps one by one, each keeps its own version's pins."""
    sha = pins.versions().DEPLOY_ACTION["sha"]
    edit(repo / APP / ".copier-answers.yml", r"^_commit: .*$", "_commit: v0.1.0", regex=True)
    for env in ("dev", "prod"):
        edit(workflow(repo, env=env), f"sdk-deploy-action@{sha}", "sdk-deploy-action@" + "0" * 40)
        edit(workflow(repo, env=env), r'^( *poetry_version:) ".*"$', r'\1 "1.8.5"', regex=True)
    commit_all(repo)
    result = doctor(repo)
    assert result.code == 0, result.output
    assert f"note: the apps are at different template versions ({APP} v0.1.0, {SECOND} v1.0.0)" in result.output


def test_only_the_named_apps(repo: Path) -> None:
    edit(workflow(repo, SECOND, "qa"), 'cpu: "0.5"', 'cpu: "0.75"')
    first, second = local_port(repo, APP), local_port(repo, SECOND)
    edit(repo / SECOND / ".copier-answers.yml", f"local_port: {second}", f"local_port: {first}")
    edit(repo / SECOND / "docker-compose.yaml", f'"127.0.0.1:{second}:8080"', f'"127.0.0.1:{first}:8080"')
    commit_all(repo)
    result = doctor(repo, apps=(SECOND,))
    result.finds(f"{WORKFLOWS}/{SECOND}.qa.deploy.yaml (job deploy)", "cpu is '0.75'", 'set cpu: "0.5"')
    assert f"checked 1 app(s) ({SECOND})" in result.output
    only_first = doctor(repo, apps=(APP,))
    assert "cpu is '0.75'" not in only_first.output
    only_first.finds(f"{SECOND}/", f"uses local port {first}, like {APP}", "--data local_port=")  # shared by both
    doctor(repo, apps=("joke_of_the_night",)).finds("joke_of_the_night", "is not an app here", "check the name")


def test_branch_guard_removed(repo: Path) -> None:
    path = workflow(repo)
    path.write_text(path.read_text().replace("default_branch", "ref_name"))
    commit_all(repo)
    allowed = [*yaml.safe_load((repo / APP / ".copier-answers.yml").read_text())["any_branch_environments"], "prod"]
    doctor(repo).finds(
        f"{WORKFLOWS}/{APP}.prod.deploy.yaml (job deploy)",
        "deploys 'prod' from any branch, but the answers keep the default-branch guard",
        f"restore the guard (git log -p -- {WORKFLOWS}/{APP}.prod.deploy.yaml), or allow it: "
        f"{UPDATE} 'any_branch_environments=[{', '.join(allowed)}]'",
    )


def test_workflow_without_the_poetry_version_falls_back_to_the_actions_old_default(repo: Path) -> None:
    edit(workflow(repo), r"^ *poetry_version: .*\n", "", regex=True)
    commit_all(repo)
    doctor(repo).finds(
        f"{WORKFLOWS}/{APP}.prod.deploy.yaml (job deploy)",
        f"poetry_version is '1.7.1' but {APP}/.copier-answers.yml renders '{pins.versions().POETRY_VERSION}'",
        f'set poetry_version: "{pins.versions().POETRY_VERSION}" there',
    )


def test_missing_dockerfile(repo: Path) -> None:
    run("git", "rm", "-q", "Dockerfile", cwd=repo)
    commit_all(repo)
    result = doctor(repo)
    for app, env in [(APP, "dev"), (APP, "prod"), (SECOND, "dev"), (SECOND, "qa")]:
        result.finds(
            f"{WORKFLOWS}/{app}.{env}.deploy.yaml (job deploy)",
            "dockerfile ./Dockerfile does not exist",
            "restore it (git log -p -- ./Dockerfile)",
        )


def test_environment_without_workflow_and_its_fix(repo: Path) -> None:
    run("git", "rm", "-q", str(workflow(repo)), cwd=repo)
    commit_all(repo, "delete a workflow")
    found = doctor(repo).finds(
        f"{APP}/.copier-answers.yml", "environment 'prod' has no workflow deploying it", "restore it: git checkout "
    )
    run(*found.split(" -> fix: restore it: ")[1].split(), cwd=repo)  # the fix, as printed
    commit_all(repo)
    assert doctor(repo).code == 0


def test_workflow_for_a_missing_app(repo: Path) -> None:
    edit(workflow(repo), f"module: {APP}", "module: joke_of_the_night")
    commit_all(repo)
    result = doctor(repo)
    result.finds(
        f"{WORKFLOWS}/{APP}.prod.deploy.yaml (job deploy)",
        "deploys module 'joke_of_the_night', but there is no folder joke_of_the_night/",
        f"set module to an app ({APP}, {SECOND}) or delete it",
    )
    result.finds(
        f"{APP}/.copier-answers.yml", "environment 'prod' has no workflow", f"set module: {APP} and environment: prod"
    )


def test_hand_made_app_is_listed_with_how_to_adopt_it(repo: Path) -> None:
    hand_made(repo, "legacy_app")
    commit_all(repo)
    result = doctor(repo)
    result.finds(
        "legacy_app/",
        "is deployed by .github/workflows/legacy_app.prod.deploy.yaml but has no .copier-answers.yml",
        ADOPT,
    )
    assert len(result.problems) == 1, result.output  # otherwise sound: nothing else is reported


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("<<<<<<< before updating\n", "merge-conflict markers on lines"),
        ("x-list: [unclosed\n", "cannot be read: "),  # anchors are valid: test_doctor_reads_yaml_as_github_does
    ],
)
def test_workflow_that_cannot_be_read(repo: Path, text: str, what: str) -> None:
    path = workflow(repo)
    path.write_text(text + path.read_text())
    commit_all(repo)
    doctor(repo).finds(f"{WORKFLOWS}/{APP}.prod.deploy.yaml", what, "")


# ---- secrets ---------------------------------------------------------------------------------


def test_env_file_in_clear_text(repo: Path) -> None:
    (repo / APP / ".env.enc").write_text("API_KEY=sk-123\n")
    commit_all(repo)
    doctor(repo).finds(
        f"{APP}/.env.enc",
        "API_KEY is in clear text",
        f"encrypt it again: put the settings in {APP}/.env.deploy, then: uv run",
    )


def test_env_file_for_another_key(repo: Path) -> None:
    sops_encrypt(repo, new_age_key().public, f"{SECOND}/.env.qa.enc")
    commit_all(repo)
    doctor(repo).finds(f"{SECOND}/.env.qa.enc", "not for the repository key", f"env_secrets.py encrypt {SECOND} qa")


def test_answers_with_another_age_key(repo: Path) -> None:
    other = new_age_key().public
    edit(repo / SECOND / ".copier-answers.yml", r"^age_public_key: .*$", f"age_public_key: {other}", regex=True)
    commit_all(repo)
    doctor(repo).finds(
        f"{SECOND}/.copier-answers.yml", "age_public_key is not the repository key", "--data age_public_key=age1"
    )


def test_env_file_that_does_not_decrypt_with_the_key(repo: Path, age_key: AgeKey) -> None:
    sops_encrypt(repo, age_key.public, f"{APP}/.env.enc")
    commit_all(repo)
    assert doctor(repo, "sops", SOPS_AGE_KEY=age_key.private).code == 0
    doctor(repo, "sops", SOPS_AGE_KEY=new_age_key().private).finds(
        f"{APP}/.env.enc", "does not decrypt with your key", "encrypt it again for the repository key"
    )


def test_workflow_deploying_an_empty_env_file_next_to_real_settings(repo: Path, age_key: AgeKey) -> None:
    """An adoption that answered the wrong env-file layout deployed an empty .env.enc, green, with no settings."""
    sops_encrypt(repo, age_key.public, f"{APP}/.env.dev.enc", "API_KEY=sk-123\nENDPOINT_SECRET=whsec\n")
    commit_all(repo)
    assert (repo / APP / ".env.enc").read_bytes().strip() == b""
    doctor(repo).finds(
        f"{APP}/.env.enc",
        f"deployed by {WORKFLOWS.as_posix()}/{APP}.",
        f"{APP}/.env.dev.enc holds the settings",
    )
    sops_encrypt(repo, age_key.public, f"{APP}/.env.enc")
    commit_all(repo)
    assert not [line for line in doctor(repo).problems if "is empty" in line]


def test_an_environment_without_settings_next_to_one_with_them(repo: Path, age_key: AgeKey) -> None:
    sops_encrypt(repo, age_key.public, f"{SECOND}/.env.dev.enc")
    commit_all(repo)
    doctor(repo).finds(f"{SECOND}/.env.qa.enc", "is empty", f"uv run scripts/env_secrets.py encrypt {SECOND} qa")


def test_apps_and_the_shared_image_on_different_pythons(repo: Path, age_key: AgeKey) -> None:
    """A deleted .sdk-deploy.yml: the next copy writes the shared Dockerfile again, for its own Python."""
    apps_python = yaml.safe_load((repo / APP / ".copier-answers.yml").read_text())["python_version"]
    other = next(v for v in pins.pythons() if v != apps_python)
    run("git", "rm", "-q", ".sdk-deploy.yml", cwd=repo)
    commit_all(repo)
    render(repo, answers(age_key, app_name="third_app", python_version=other), overwrite=True)
    commit_all(repo)
    assert f"FROM python:{other}." in (repo / "Dockerfile").read_text()
    result = doctor(repo)
    for app in (APP, SECOND):
        result.finds(
            f"{app}/.copier-answers.yml",
            f"python_version is {apps_python}, but the shared Dockerfile runs Python {other}",
            "Changing a repository-wide setting",
        )


# ---- local ports -----------------------------------------------------------------------------


def test_new_apps_get_their_own_port(pristine: Path) -> None:
    first, second = local_port(pristine, APP), local_port(pristine, SECOND)
    assert first != second
    assert [first, second] == [default_local_port(APP), default_local_port(SECOND)]
    assert f'"{second}:8080"' in (pristine / SECOND / "docker-compose.yaml").read_text()


def test_two_apps_on_one_port(repo: Path) -> None:
    first, second = local_port(repo, APP), local_port(repo, SECOND)
    edit(repo / SECOND / ".copier-answers.yml", f"local_port: {second}", f"local_port: {first}")
    edit(repo / SECOND / "docker-compose.yaml", f'"127.0.0.1:{second}:8080"', f'"127.0.0.1:{first}:8080"')
    commit_all(repo)
    doctor(repo).finds(
        f"{SECOND}/",
        f"uses local port {first}, like {APP}",
        f"uvx copier@latest update --defaults -a {SECOND}/.copier-answers.yml --data local_port=5",
    )


def test_one_clash_gets_one_port(repo: Path) -> None:
    """A compose file moved by hand onto another app's port: one line, one free port to move to."""
    first, second = local_port(repo, APP), local_port(repo, SECOND)
    edit(repo / SECOND / "docker-compose.yaml", f'"127.0.0.1:{second}:8080"', f'"127.0.0.1:{first}:8080"')
    commit_all(repo)
    result = doctor(repo)
    [line] = [problem for problem in result.problems if problem.startswith(f"{SECOND}/")]
    suggested = set(re.findall(r"\b5\d{3}\b", line.split(" -> fix: ")[1]))
    assert len(suggested) == 1, line
    assert suggested.isdisjoint({first, second}), line
    assert len(result.problems) == 1, result.output


def test_compose_port_that_is_not_the_answer(repo: Path) -> None:
    port = local_port(repo, APP)
    edit(repo / APP / "docker-compose.yaml", f'"127.0.0.1:{port}:8080"', '"127.0.0.1:5999:8080"')
    commit_all(repo)
    doctor(repo).finds(
        f"{APP}/",
        f"publishes port 5999 in docker-compose.yaml, but its answers say local_port {port}",
        "local_port=5999",
    )


def test_compose_file_with_anchors_is_read(repo: Path) -> None:
    """Compose files use anchors (x-common: &common); doctor reads them and still checks their ports."""
    compose = repo / APP / "docker-compose.yaml"
    compose.write_text("x-common: &common\n  restart: 'no'\n" + compose.read_text())  # valid for Docker Compose
    commit_all(repo)
    result = doctor(repo)
    assert result.code == 0, result.output
    assert "not checked" not in result.output


def test_compose_file_it_cannot_read_is_noted_not_failed(repo: Path) -> None:
    compose = repo / APP / "docker-compose.yaml"
    compose.write_text("x-list: [unclosed\n" + compose.read_text())
    commit_all(repo)
    result = doctor(repo)
    assert result.code == 0, result.output
    assert f"note: {APP}/docker-compose.yaml not checked: " in result.output


@functools.cache
def naming() -> Any:
    """extensions/naming.jinja as a module: its macros are callable."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE), autoescape=False)
    return environment.get_template("extensions/naming.jinja").module


def default_local_port(app_name: str) -> str:
    return str(naming().default_local_port(app_name))


def test_default_local_port_spreads_app_names_over_free_ports() -> None:
    names = [
        "joke_of_the_day", "second_app", "chat_bot", "news_digest", "invoice_reader", "kyc_checker", "summarizer",
        "translator", "risk_scoring", "portfolio_insights", "esg_screening", "doc_search", "meeting_notes",
        "email_triage", "contract_review", "fx_rates", "earnings_calls", "compliance_assistant", "faq_bot", "app",
        "a", "b", "ab", "ba", "my_app", "my_app_two", "report_builder", "market_news", "credit_memo", "onboarding",
    ]  # fmt: skip
    ports = [int(default_local_port(name)) for name in names]
    assert ports == [int(default_local_port(name)) for name in names]  # the same name, the same port
    assert all(5001 <= port <= 5999 for port in ports)
    assert not {5173, 5432, 5433, 5500, 5555, 5601, 5672, 5900, 5984} & set(ports)
    assert len(set(ports)) >= len(names) - 1, sorted(ports)


# ---- the whole toolset, end to end -----------------------------------------------------------


@pytest.mark.slow
def test_fresh_monorepo_with_secrets_passes_with_sops_and_poetry(repo: Path, age_key: AgeKey) -> None:
    for path in (f"{APP}/.env.enc", f"{SECOND}/.env.dev.enc", f"{SECOND}/.env.qa.enc"):
        sops_encrypt(repo, age_key.public, path)
    commit_all(repo)
    result = doctor(repo, "sops", "poetry", SOPS_AGE_KEY=age_key.private)
    assert result.code == 0, result.output
    assert "skipped" not in result.output  # every check ran
    assert "is empty" not in result.output


@pytest.mark.slow
def test_lock_out_of_sync_with_pyproject(repo: Path) -> None:
    edit(repo / APP / "pyproject.toml", r"^(flask = .*)$", r'\1\nrequests = "^2.32"', regex=True)
    commit_all(repo)
    doctor(repo, "poetry").finds(
        f"{APP}/poetry.lock", "does not match pyproject.toml: Error: pyproject.toml changed", f"cd {APP} && poetry lock"
    )


# ---- the script itself -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def doctor_module(pristine: Path) -> Iterator[ModuleType]:
    sys.path.insert(0, str(pristine / "scripts"))
    try:
        yield importlib.import_module("doctor")
    finally:
        sys.path.remove(str(pristine / "scripts"))
        for name in ("doctor", "check_secrets", "env_secrets"):
            sys.modules.pop(name, None)


def test_pins_are_the_templates(doctor_module: ModuleType) -> None:
    versions = pins.versions()
    assert versions.DEPLOY_ACTION["name"] == doctor_module.DEPLOY_ACTION
    assert versions.DEPLOY_ACTION["sha"] == doctor_module.PINNED_COMMIT
    assert (doctor_module.TEMPLATE_POETRY, doctor_module.TEMPLATE_SOPS) == (
        versions.POETRY_VERSION,
        versions.SOPS_VERSION,
    )


# Vectors for the action's preflight, Unique-AG/sdk-deploy-action action.yaml at the pinned commit
# ("Check requirements": [[ "${MODULE}" =~ ^[a-z_]+$ ]], grep -E '^gunicorn\s*=' / '^python-dotenv\s*=').
@pytest.mark.parametrize(
    ("module", "accepted"),
    [
        ("joke_of_the_day", True),
        ("a", True),
        ("_x_", True),
        ("Joke", False),
        ("joke-day", False),
        ("joke1", False),
        ("", False),
    ],
)
def test_module_rule_is_the_actions(doctor_module: ModuleType, module: str, accepted: bool) -> None:
    assert (doctor_module.module_error(module) is None) is accepted


def test_pyproject_rule_is_the_actions_grep(doctor_module: ModuleType, tmp_path: Path) -> None:
    lines = [
        'gunicorn = "^23.0"', 'gunicorn="^23"', "gunicorn   =", 'gunicorn\t= "*"', ' gunicorn = "^23"',
        'gunicorn-extras = "1"', 'dependencies = ["gunicorn>=23"]', "#gunicorn = 1", 'python-dotenv = "^1.2"',
        'python-dotenv="1"', 'python_dotenv = "1"', '"python-dotenv" = "1"',
    ]  # fmt: skip
    (tmp_path / "pyproject.toml").write_text("\n".join(lines) + "\n")
    for name, pattern in doctor_module.PYPROJECT_LINES.items():
        grep = run("grep", "-E", f"^{name}\\s*=", tmp_path / "pyproject.toml", check=False).stdout.splitlines()
        assert [line for line in lines if pattern.match(line)] == grep, name


@pytest.mark.parametrize(
    ("module", "environment", "accepted"),
    [
        ("joke_of_the_day", "prod", True),  # platform.md: joke-of-the-day-prod
        ("a", "b", True),
        ("joke_of_the_day", "Prod", False),
        ("joke_", "dev", False),  # joke--dev
        ("a_b_c_d_e_f_g_h_i_j_k_l_m_n_o", "dev", False),  # 33 characters
        ("a_b_c_d_e_f_g_h_i_j_k_l_m_n", "dev1", True),  # exactly 32
        ("app", "dev-", False),
    ],
)
def test_azure_name_rule(doctor_module: ModuleType, module: str, environment: str, accepted: bool) -> None:
    assert (doctor_module.azure_name_error(module, environment) is None) is accepted


@pytest.mark.parametrize(
    ("cpu", "memory", "accepted"),
    [*((f"{c / 4:g}", f"{c / 2:g}", True) for c in range(1, 9)), ("1.0", "2.0", True), ("0.6", "1.2", False),
     ("0", "0", False), ("2.25", "4.5", False), ("0.5", "2", False), ("x", "1", False)],
)  # fmt: skip
def test_cpu_memory_pairs(doctor_module: ModuleType, cpu: str, memory: str, accepted: bool) -> None:
    errors = [doctor_module.cpu_error(cpu), doctor_module.memory_error(cpu, memory)]
    assert (errors == [None, None]) is accepted


@pytest.mark.parametrize(
    ("minimum", "maximum", "accepted"),
    [("1", "1", True), ("2", "5", True), ("300", "300", True), ("0", "1", False), ("1", "0", False),
     ("3", "2", False), ("301", "301", False), ("-1", "1", False), ("one", "1", False)],
)  # fmt: skip
def test_replica_rule(doctor_module: ModuleType, minimum: str, maximum: str, accepted: bool) -> None:
    assert (doctor_module.replica_errors(minimum, maximum) == []) is accepted


# PyPI distribution of each module the scripts may import beyond the standard library and their siblings.
DISTRIBUTIONS = {"yaml": "pyyaml", "pyrage": "pyrage"}


def script_dependencies(text: str) -> list[str]:
    """The PEP 723 `dependencies` of a script (what `uv run` installs for it)."""
    block = re.search(r"^# /// script\n((?:#.*\n)*?)# ///$", text, re.MULTILINE)
    if block is None:
        return []
    toml = "".join(line[2:] if line.startswith("# ") else line[1:] for line in block[1].splitlines(keepends=True))
    return list(tomllib.loads(toml).get("dependencies", []))


def test_each_script_declares_what_it_imports(pristine: Path) -> None:
    """`uv run scripts/x.py` on a bare machine installs every third-party module a script imports."""
    siblings = {path.stem for path in (pristine / "scripts").glob("*.py")}
    for path in sorted((pristine / "scripts").glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = {
            alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        }
        imported |= {
            node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
        }
        third_party = imported - set(sys.stdlib_module_names) - siblings - {"__future__"}
        declared = {re.split(r"[<>=!~ ]", dep)[0].lower() for dep in script_dependencies(path.read_text())}
        needed = {DISTRIBUTIONS.get(name, name) for name in third_party}
        assert needed <= declared, (path.name, needed - declared)


def test_doctor_reads_yaml_as_github_does_anchors_included(repo: Path) -> None:
    """GitHub Actions accepts YAML anchors and aliases; doctor reads them (its old reader refused them)."""
    path = repo / WORKFLOWS / f"{APP}.prod.deploy.yaml"
    edit(path, "    runs-on: ubuntu-latest\n", "    runs-on: &runner ubuntu-latest\n")
    path.write_text(path.read_text() + "  extra:\n    runs-on: *runner\n    steps:\n      - run: echo ok\n")
    assert yaml.safe_load(path.read_text())["jobs"]["extra"]["runs-on"] == "ubuntu-latest"  # valid YAML
    commit_all(repo)
    result = doctor(repo)
    assert result.code == 0, result.output
    edit(path, "runs-on: *runner", "runs-on: *missing")  # an alias without its anchor: invalid YAML
    commit_all(repo)
    doctor(repo).finds(f"{WORKFLOWS}/{APP}.prod.deploy.yaml", "cannot be read", "correct the YAML there")


@pytest.mark.slow
def test_scripts_are_typed_and_lint_clean(pristine: Path, tmp_path: Path) -> None:
    """Every script, as rendered, under the same checks as the monorepo's CI (apps.ci.yaml)."""
    scripts = pristine / "scripts"
    names = sorted(path.name for path in scripts.glob("*.py"))
    run(sys.executable, "-m", "mypy", "--strict", "--cache-dir", tmp_path / "mypy", *names, cwd=scripts)
    lint = ["check", "--select", "E,F,W,I,B,UP,SIM", "--line-length", "120"]
    run(require_tool("ruff"), *lint, *names, cwd=scripts)
    run(require_tool("ruff"), "format", "--check", "--line-length", "120", *names, cwd=scripts)


# ---- a monorepo made by hand, with one app adopted ----------------------------------------------


@pytest.fixture(scope="session")
def handmade_locks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("doctor-handmade-locks")


@pytest.mark.slow
def test_after_adopting_one_app_the_hand_made_one_is_listed_and_nothing_else(
    tmp_path: Path, handmade_locks: Path, age_key: AgeKey
) -> None:
    repo = handmade.handmade_monorepo(tmp_path / "monorepo", age_key, handmade_locks)
    template = TemplateRepo.from_working_tree(tmp_path / "template", tag="v1.0.0")
    assert handmade.adopt(repo, template.path, handmade.QUOTES, age_key).returncode == 0
    commit_all(repo, f"Adopt {handmade.QUOTES.name}")
    result = doctor(repo, "sops", "poetry", SOPS_AGE_KEY=age_key.private)
    sha = pins.versions().DEPLOY_ACTION["sha"]
    others = (handmade.ASYNC, handmade.REPORTS)  # still hand-made
    for other in others:
        workflow = f"{other.name}.{other.environments[0]}.deploy.yaml"
        result.finds(f"{other.name}/", f"is deployed by .github/workflows/{workflow} but has no", ADOPT)
        result.finds(
            f"{WORKFLOWS}/{workflow} (job deployment)",
            "uses Unique-AG/sdk-deploy-action@v3, not the template's pinned",
            f"set uses: Unique-AG/sdk-deploy-action@{sha} # v3",
        )
    assert len(result.problems) == 2 * len(others), result.output  # the adopted app and the rest are sound
    names = sorted([handmade.QUOTES.name, *(other.name for other in others)])
    assert f"checked 3 app(s) ({', '.join(names)})" in result.output


def test_the_key_in_sops_default_key_file_is_used(repo: Path, age_key: AgeKey, tmp_path: Path) -> None:
    """Where APPS.md tells people to keep the key: doctor finds it there, as sops does."""
    sops_encrypt(repo, age_key.public, f"{APP}/.env.enc")
    commit_all(repo)
    home = tmp_path / "home"
    key_file = home / ".config/sops/age/keys.txt"
    key_file.parent.mkdir(parents=True)
    key_file.write_text(f"{new_age_key().private}\n")  # a key of another repository
    doctor(repo, "sops", HOME=str(home)).finds(
        f"{APP}/.env.enc", "does not decrypt with your key", "encrypt it again for the repository key"
    )
    key_file.write_text(f"{age_key.private}\n")
    result = doctor(repo, "sops", HOME=str(home))
    assert result.code == 0, result.output
    assert "skipped checking that the env files decrypt" not in result.output
