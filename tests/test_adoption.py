"""Bringing a hand-made monorepo (the predecessor's layout, tests/handmade.py) under the template,
by the README's "Adopt an existing app" command, followed as written."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools import dockerfile
from tools.net import free_port, wait_for_http
from tools.template_repo import TemplateRepo, commit_all

from . import handmade
from .conftest import VENV_BIN, AgeKey, files_of, poetry_install, run

pytestmark = pytest.mark.slow

APP = handmade.QUOTES  # adopted
OTHER = handmade.REPORTS  # stays hand-made


@pytest.fixture
def template(tmp_path: Path) -> TemplateRepo:
    """The working tree as a release, so `copier copy <path>` takes it as the newest tag."""
    return TemplateRepo.from_working_tree(tmp_path / "template", tag="v1.0.0")


@pytest.fixture(scope="session")
def locks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hand-made apps' poetry.lock files, made once per session."""
    return tmp_path_factory.mktemp("handmade-locks")


@pytest.fixture
def repo(tmp_path: Path, locks: Path, age_key: AgeKey) -> Path:
    return handmade.handmade_monorepo(tmp_path / "monorepo", age_key, locks)


def own_files(repo: Path, app: handmade.HandMadeApp) -> dict[str, bytes]:
    """What belongs to the team: the app's code and dependencies, its secrets, the team's root files."""
    keep = (f"{app.name}/{app.name}/", f"{app.name}/pyproject.toml", f"{app.name}/poetry.lock", f"{app.name}/.env.enc",
            f"{app.name}/.flaskenv", f"{app.name}/.python-version")  # fmt: skip
    return {
        name: data
        for name, data in files_of(repo).items()
        if name.startswith(keep) or name in {"README.md", ".gitignore"}
    }


def test_adoption_keeps_the_apps_code_and_writes_the_plumbing(
    repo: Path, template: TemplateRepo, age_key: AgeKey
) -> None:
    before = files_of(repo)
    result = handmade.adopt(repo, template.path, APP, age_key)
    assert result.returncode == 0, result.stdout + result.stderr
    after = files_of(repo)

    # Kept byte for byte: the adopted app's code, dependencies and secrets, the team's root files,
    # and everything of the other hand-made app.
    assert own_files(repo, APP) == {name: before[name] for name in own_files(repo, APP)}
    other = {
        name: data
        for name, data in before.items()
        if name.startswith((f"{OTHER.name}/", f".github/workflows/{OTHER.name}."))
    }
    assert {name: after.get(name) for name in other} == other
    assert not [name for name in after if name.startswith(f"{APP.name}/{APP.name}/") and name not in before]
    assert not (repo / APP.name / "tests").exists(), "no empty folder for the template's tests"

    # Written: the plumbing, under the same workflow file names (GitHub keeps their run history).
    for env in APP.environments:
        workflow = yaml.safe_load(after[f".github/workflows/{APP.name}.{env}.deploy.yaml"])
        assert workflow["jobs"]["deploy"]["needs"] == "checks"
        health = next(s for s in workflow["jobs"]["deploy"]["steps"] if s["name"].startswith("Wait until"))
        assert health["env"]["HEALTH_PATH"] == "/"  # the hand-made app has no /health
    assert {f"{APP.name}/gunicorn.conf.py", f"{APP.name}/.copier-answers.yml", "APPS.md", "scripts/doctor.py"} <= set(
        after
    )
    assert b"managed by sdk-deploy-template" in after["Dockerfile"]
    answers = yaml.safe_load(after[f"{APP.name}/.copier-answers.yml"])
    assert (answers["adopt"], answers["python_version"], answers["platform_module_name"]) == (
        True,
        "3.11",
        APP.module_name,
    )
    assert answers["environments"] == list(APP.environments)
    assert yaml.safe_load(after[".sdk-deploy.yml"])["age_public_key"] == age_key.public


def test_a_copy_that_stopped_half_way_changes_nothing_for_the_next_run(
    tmp_path: Path, repo: Path, locks: Path, template: TemplateRepo, age_key: AgeKey
) -> None:
    stopped = handmade.adopt(repo, template.path, APP, age_key, overwrite=False)  # no terminal to answer "Overwrite?"
    assert stopped.returncode != 0
    assert "--overwrite" in stopped.stderr
    finished = handmade.adopt(repo, template.path, APP, age_key)
    assert finished.returncode == 0, finished.stdout + finished.stderr

    clean = handmade.handmade_monorepo(tmp_path / "clean", age_key, locks)
    assert handmade.adopt(clean, template.path, APP, age_key).returncode == 0
    got, want = files_of(repo), files_of(clean)
    secrets = {name for name in got if name.endswith(".env.enc")}  # encrypted anew for each repository
    assert sorted(got) == sorted(want)
    assert [name for name in got if name not in secrets and got[name] != want[name]] == []


def test_copier_update_works_for_the_adopted_app_and_never_touches_its_code(
    repo: Path, template: TemplateRepo, age_key: AgeKey
) -> None:
    assert handmade.adopt(repo, template.path, APP, age_key).returncode == 0
    commit_all(repo, "Adopt quotes")
    code = own_files(repo, APP)
    template.edit(
        "template/{{app_name}}/gunicorn.conf.py.jinja",
        '"""',
        '"""Release 2 of the serving settings.\n',
    )
    template.release("v2.0.0")
    run(VENV_BIN / "copier", "update", "--defaults", "-a", f"{APP.name}/.copier-answers.yml", cwd=repo)
    assert own_files(repo, APP) == code
    assert "Release 2 of the serving settings." in (repo / APP.name / "gunicorn.conf.py").read_text()
    assert yaml.safe_load((repo / APP.name / ".copier-answers.yml").read_text())["_commit"] == "v2.0.0"
    assert not [name for name in files_of(repo) if name.endswith(".rej")]
    assert run("git", "diff", "--name-only", cwd=repo).stdout.split() == [
        f"{APP.name}/.copier-answers.yml",
        f"{APP.name}/gunicorn.conf.py",
    ]


# ---- Settings and configuration the team already has ----------------------------------------


def test_adoption_keeps_per_environment_env_files_and_their_wiring(
    repo: Path, template: TemplateRepo, age_key: AgeKey
) -> None:
    """The README's command as written: the workflows tell which env files the app deploys."""
    handmade.use_per_environment_env_files(repo, APP, age_key)
    before = files_of(repo)
    result = handmade.adopt(repo, template.path, APP, age_key)
    assert result.returncode == 0, result.stdout + result.stderr
    after = files_of(repo)
    secrets = sorted(name for name in after if name.startswith(f"{APP.name}/.env"))
    assert secrets == [f"{APP.name}/.env.{name}" for name in ("dev.enc", "example", "prod.enc")]  # no .env.enc
    assert all(after[name] == before[name] for name in secrets if name.endswith(".enc"))
    for env in APP.environments:
        workflow = yaml.safe_load(after[f".github/workflows/{APP.name}.{env}.deploy.yaml"])
        deploy = next(s for s in workflow["jobs"]["deploy"]["steps"] if "sdk-deploy-action" in s.get("uses", ""))
        assert deploy["with"]["encrypted_env_file"] == f".env.{env}.enc"
    assert yaml.safe_load(after[f"{APP.name}/.copier-answers.yml"])["per_environment_env_files"] is True


def test_adoption_refuses_an_answer_that_would_rewire_the_env_files(
    repo: Path, template: TemplateRepo, age_key: AgeKey
) -> None:
    handmade.use_per_environment_env_files(repo, APP, age_key)
    before = files_of(repo)
    result = handmade.adopt(repo, template.path, APP, age_key, extra="--data per_environment_env_files=false")
    assert result.returncode != 0
    assert "quotes deploys .env.dev.enc to 'dev'" in result.stderr
    assert "--data per_environment_env_files=true" in result.stderr
    assert files_of(repo) == before


def test_adoption_keeps_the_teams_sops_rules_hooks_and_scripts(
    repo: Path, template: TemplateRepo, age_key: AgeKey
) -> None:
    handmade.add_team_configuration(repo, age_key)
    result = handmade.adopt(repo, template.path, APP, age_key)
    assert result.returncode == 0, result.stdout + result.stderr
    sops = yaml.safe_load((repo / ".sops.yaml").read_text())
    assert sops["creation_rules"] == [
        {"path_regex": "infra/.*\\.yaml$", "age": age_key.public},  # the team's rule, still first
        {"path_regex": "(^|/)\\.env(\\.[a-z][a-z0-9-]*)?$", "age": age_key.public},  # the apps' env files
    ]
    hooks = yaml.safe_load((repo / ".pre-commit-config.yaml").read_text())
    assert hooks["default_stages"] == ["pre-commit"]
    assert [hook["id"] for entry in hooks["repos"] for hook in entry["hooks"]] == ["check-secrets", "end-of-file-fixer"]
    assert (repo / "scripts/update_apps.py").read_text() == handmade.TEAM_SCRIPT
    assert (repo / "scripts/doctor.py").is_file()  # the template's other scripts are written
    # sops itself reads the merged rules: an app's env file is encrypted for the repository key.
    (repo / APP.name / ".env.check").write_text("A=1\n")
    encrypted = run("sops", "--encrypt", "--input-type", "dotenv", "--output-type", "dotenv", f"{APP.name}/.env.check",
                    cwd=repo).stdout  # fmt: skip
    (repo / APP.name / ".env.check").unlink()
    assert age_key.public in encrypted
    commit_all(repo, "Adopt quotes")
    template.edit("template/{{app_name}}/gunicorn.conf.py.jinja", '"""', '"""Release 2.\n')
    template.release("v2.0.0")
    run(VENV_BIN / "copier", "update", "--defaults", "-a", f"{APP.name}/.copier-answers.yml", cwd=repo)
    changed = run("git", "status", "--porcelain", cwd=repo).stdout.split()
    assert changed == ["M", f"{APP.name}/.copier-answers.yml", "M", f"{APP.name}/gunicorn.conf.py"]


# ---- Both apps start as the new shared image starts them ---------------------------------------


def start_like_the_image(app_folder: Path, repo: Path, key: AgeKey, spawn: Any, tmp_path: Path) -> str:
    """Install the app as the image's deps stage does, run the image's ENTRYPOINT in a copy of the
    app folder (what `COPY . .` puts in /app) with the environment the deploy action gives, and
    return what GET / answers."""
    text = (repo / "Dockerfile").read_text()
    command = dockerfile.entrypoint(text)
    poetry_install(app_folder, "--only", "main", "--no-root")
    container = tmp_path / "app"
    shutil.copytree(app_folder, container, ignore=shutil.ignore_patterns(".venv", ".env", "__pycache__"))
    for step in dockerfile.runs_after_copy(text):  # as the build runs them in /app
        run("sh", "-c", step, cwd=container, MODULE=app_folder.name)
    port = free_port()
    env = {
        "PATH": f"{app_folder / '.venv/bin'}:{VENV_BIN}:/usr/bin:/bin",  # the app's venv, then sops
        "MODULE": app_folder.name, "APP_NAME": "app", "ENCRYPTED_ENV_FILE": ".env.enc", "PORT": str(port),
        "SOPS_AGE_KEY": key.private,
    }  # fmt: skip
    process = spawn(command, cwd=container, env=env)
    return wait_for_http(f"http://127.0.0.1:{port}/", process).decode()


def test_the_other_hand_made_app_keeps_deploying_with_the_new_dockerfile(
    tmp_path: Path, repo: Path, template: TemplateRepo, age_key: AgeKey, spawn: Any
) -> None:
    assert handmade.adopt(repo, template.path, APP, age_key).returncode == 0
    assert not (repo / OTHER.name / "sdk_runtime").exists()
    settings = Path("/dev/shm/settings.env")  # where the image's start decrypts a hand-made app's settings
    try:
        body = json.loads(start_like_the_image(repo / OTHER.name, repo, age_key, spawn, tmp_path))
        assert body == {"app": OTHER.name, "greeting": OTHER.greeting, "size": "2.0 kB"}  # decrypted, its own deps
        assert settings.stat().st_mode & 0o077 == 0, "only the app's user may read its settings"
    finally:
        settings.unlink(missing_ok=True)


def test_the_adopted_app_starts_with_its_own_code_and_the_templates_gunicorn_conf(
    tmp_path: Path, repo: Path, template: TemplateRepo, age_key: AgeKey, spawn: Any
) -> None:
    assert handmade.adopt(repo, template.path, APP, age_key).returncode == 0
    body = json.loads(start_like_the_image(repo / APP.name, repo, age_key, spawn, tmp_path))
    assert body == {"app": APP.name, "greeting": APP.greeting}


# ---- An ASGI app keeps its server ----------------------------------------------------------------


def test_an_adopted_quart_app_keeps_uvicorns_worker_and_answers_through_the_start_program(
    tmp_path: Path, repo: Path, template: TemplateRepo, age_key: AgeKey, spawn: Any
) -> None:
    """The predecessor's async demo (Quart, Dockerfile.async: gunicorn with uvicorn.workers.UvicornWorker,
    --timeout=600), adopted by the README's command, is served by the shared image's start program and
    real gunicorn with the worker its own image ran: a WSGI worker would answer it with errors only."""
    result = handmade.adopt(repo, template.path, handmade.ASYNC, age_key)
    assert result.returncode == 0, result.stdout + result.stderr
    folder = repo / handmade.ASYNC.name
    answers = yaml.safe_load((folder / ".copier-answers.yml").read_text())
    assert answers["gunicorn_worker_class"] == "uvicorn.workers.UvicornWorker"
    config = (folder / "gunicorn.conf.py").read_text()
    assert 'worker_class = "uvicorn.workers.UvicornWorker"' in config
    assert "uvicorn-worker" in config, "says what to move to (uvicorn deprecates uvicorn.workers)"
    assert 'timeout = int(os.environ.get("TIMEOUT", "600"))' in config  # as Dockerfile.async had it
    assert sorted(p.name for p in (folder / "sdk_runtime").iterdir()) == ["__init__.py", "start.py"]

    body = json.loads(start_like_the_image(folder, repo, age_key, spawn, tmp_path))
    assert body == {"app": handmade.ASYNC.name, "greeting": handmade.ASYNC.greeting, "asgi": "http"}


def test_of_the_templates_runtime_an_adopted_app_gets_the_start_program_only(
    repo: Path, template: TemplateRepo, age_key: AgeKey
) -> None:
    """The runtime (sdk_runtime/) is the template's code for its own apps; an adopted app keeps its own
    and needs only what its image runs. Files and folders the runtime holds besides stay out."""
    runtime = template.path / "template/{{app_name}}/sdk_runtime"
    (runtime / "only_for_template_apps.py").write_text('WORKER = "the template apps\' worker"\n')
    (runtime / "plugins").mkdir(exist_ok=True)
    (runtime / "plugins/__init__.py").write_text("")
    template.release("v1.1.0")
    assert handmade.adopt(repo, template.path, APP, age_key).returncode == 0
    runtime_files = sorted(str(p.relative_to(repo / APP.name)) for p in (repo / APP.name / "sdk_runtime").rglob("*"))
    assert runtime_files == ["sdk_runtime/__init__.py", "sdk_runtime/start.py"]
    assert (repo / APP.name / "sdk_runtime/start.py").read_bytes() == (runtime / "start.py").read_bytes()


def copy_without_worker_class(
    repo: Path, template: TemplateRepo, app: handmade.HandMadeApp, key: AgeKey, *extra: str
) -> Any:
    """The README's adoption command without its gunicorn_worker_class answer (the default decides), plus `extra`."""
    command = handmade.readme_adoption_command(template.path, app, key)
    command = re.sub(r" --data gunicorn_worker_class=\S+", "", command)
    return run("bash", "-c", " ".join([command, *extra]), cwd=repo, check=False)


def test_the_default_server_comes_from_the_dockerfile_the_workflow_builds(
    repo: Path, template: TemplateRepo, age_key: AgeKey
) -> None:
    assert copy_without_worker_class(repo, template, handmade.ASYNC, age_key).returncode == 0
    answers = yaml.safe_load((repo / handmade.ASYNC.name / ".copier-answers.yml").read_text())
    assert answers["gunicorn_worker_class"] == "uvicorn.workers.UvicornWorker"  # Dockerfile.async
    commit_all(repo, "Adopt async_jokes")
    assert copy_without_worker_class(repo, template, APP, age_key).returncode == 0
    assert yaml.safe_load((repo / APP.name / ".copier-answers.yml").read_text())["gunicorn_worker_class"] == "gthread"
    assert 'worker_class = "gthread"' in (repo / APP.name / "gunicorn.conf.py").read_text()


def test_an_own_dockerfile_without_a_known_server_needs_the_answer(
    repo: Path, template: TemplateRepo, age_key: AgeKey
) -> None:
    for env in APP.environments:
        workflow = repo / ".github/workflows" / f"{APP.name}.{env}.deploy.yaml"
        workflow.write_text(workflow.read_text().replace(
            "age_private_key: ${{ secrets.AGE_PRIVATE_KEY }}",
            "age_private_key: ${{ secrets.AGE_PRIVATE_KEY }}\n          dockerfile: ./quotes/Dockerfile",
        ))  # fmt: skip
    commit_all(repo, "quotes builds its own image")
    before = files_of(repo)
    refused = copy_without_worker_class(repo, template, APP, age_key)
    assert refused.returncode != 0
    assert "Its workflow builds ./quotes/Dockerfile: say how that image serves the app." in refused.stderr
    assert "--data gunicorn_worker_class=<one of these>" in refused.stderr
    assert files_of(repo) == before, "nothing written"

    wrong = copy_without_worker_class(repo, template, APP, age_key, "--data gunicorn_worker_class=uvicorn")
    assert wrong.returncode != 0
    assert "gunicorn_worker_class 'uvicorn' is not one this template can serve an adopted app with." in wrong.stderr
    assert "uvicorn_worker.UvicornWorker: ASGI (Quart, FastAPI)" in wrong.stderr
    assert files_of(repo) == before

    given = copy_without_worker_class(repo, template, APP, age_key, "--data gunicorn_worker_class=gthread")
    assert given.returncode == 0, given.stderr


def test_the_move_to_uvicorn_worker_that_gunicorn_conf_names_works(
    repo: Path, template: TemplateRepo, age_key: AgeKey
) -> None:
    """The command the generated gunicorn.conf.py gives (uvicorn deprecates uvicorn.workers), run as written."""
    assert handmade.adopt(repo, template.path, handmade.ASYNC, age_key).returncode == 0
    commit_all(repo, "Adopt async_jokes")
    config = repo / handmade.ASYNC.name / "gunicorn.conf.py"
    lines = config.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#   copier update"))
    command = " ".join(line.lstrip("# ").rstrip("\\ ") for line in lines[start : start + 2])
    assert command == (
        f"copier update --defaults -a {handmade.ASYNC.name}/.copier-answers.yml"
        " --data gunicorn_worker_class=uvicorn_worker.UvicornWorker"
    )
    run("bash", "-c", f"{VENV_BIN}/{command}", cwd=repo)
    assert 'worker_class = "uvicorn_worker.UvicornWorker"' in config.read_text()
    answers = yaml.safe_load((repo / handmade.ASYNC.name / ".copier-answers.yml").read_text())
    assert answers["gunicorn_worker_class"] == "uvicorn_worker.UvicornWorker"
