"""A monorepo made by hand from the predecessor's guide (../shared/reference/platform.md sections 9
and 10), written here from that description: two Flask apps, one with an extra dependency, and a
Quart app served by uvicorn's gunicorn worker from its own Dockerfile.async (the predecessor's async
demo); their Poetry projects, encrypted settings, deploy workflows, and the root Dockerfiles.

The apps are locked with Poetry like the real ones. One difference for this machine only: their
pyproject.toml names PyPI's simple index as a source, because Poetry's default PyPI source does not
work here (its JSON API is unreachable); on a normal machine the apps would not need it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.template_repo import commit_all, init_repository

from .conftest import TEMPLATE, VENV_BIN, AgeKey, run

# The predecessor's shared image: Python 3.11, Poetry in the image, sops at build time, an entrypoint
# that decrypts into /code/.env, then gunicorn 2 x 4 gthread on $MODULE:$APP_NAME.
DOCKERFILE = """\
FROM python:3.11-slim
ARG MODULE
ARG APP_NAME=app
ARG ENCRYPTED_ENV_FILE=.env.enc
ARG POETRY_VERSION=1.7.1
ARG SOPS_VERSION=3.8.1
ENV MODULE=${MODULE} APP_NAME=${APP_NAME} ENCRYPTED_ENV_FILE=${ENCRYPTED_ENV_FILE}
RUN pip install "poetry==${POETRY_VERSION}"
ARG SOPS_URL=https://github.com/getsops/sops/releases/download
ADD ${SOPS_URL}/v${SOPS_VERSION}/sops-v${SOPS_VERSION}.linux.amd64 /usr/local/bin/sops
RUN chmod +x /usr/local/bin/sops
WORKDIR /code
COPY . .
RUN poetry install --only=main
RUN printf '#!/bin/sh\\nsops --decrypt --input-type=dotenv --output-type=dotenv "$ENCRYPTED_ENV_FILE" > /code/.env\\n\
exec poetry run gunicorn --workers=2 --threads=4 --worker-class=gthread -b 0.0.0.0:8080 "$MODULE:$APP_NAME"\\n' \\
    > /entrypoint.sh && chmod +x /entrypoint.sh
ENTRYPOINT ["/entrypoint.sh"]
"""
# The predecessor's async image (its last change): the same, but gunicorn runs uvicorn's worker with a
# 600 s timeout. The async app's workflow passes `dockerfile: ./Dockerfile.async`.
DOCKERFILE_ASYNC = DOCKERFILE.replace("ARG SOPS_VERSION=3.8.1\n", "ARG SOPS_VERSION=3.8.1\nARG TIMEOUT=600\n").replace(
    "--worker-class=gthread", "--worker-class=uvicorn.workers.UvicornWorker --timeout=${TIMEOUT}"
)
DOCKERFILE_LOCAL = """\
FROM python:3.11-slim
ARG MODULE
ENV MODULE=${MODULE}
WORKDIR /code
RUN pip install "poetry==1.7.1"
COPY . .
COPY .env /code/.env
RUN poetry install --only=main
CMD ["sh", "-c", "poetry run gunicorn --workers=2 --threads=4 -b 0.0.0.0:8080 $MODULE:app"]
"""
PYPROJECT = """\
[tool.poetry]
name = "{app}"
version = "0.1.0"
description = "{app}, made by hand"
authors = ["Team <team@example.com>"]
packages = [{{ include = "{app}" }}]

[tool.poetry.dependencies]
python = "^3.11"
{framework}
gunicorn = "^23.0"
python-dotenv = "^1.0"
requests = "^2.31"
{extra}
[[tool.poetry.source]]
name = "pypi-simple"
url = "https://pypi.org/simple/"
priority = "primary"

[build-system]
requires = ["poetry-core"]
build-backend = "poetry.core.masonry.api"
"""
APP_PY = """\
import os

from dotenv import load_dotenv
from flask import Flask, jsonify
{extra_import}
load_dotenv()
app = Flask(__name__)


@app.get("/")
def index():
    return jsonify(app="{app}", greeting=os.getenv("GREETING", "unset"){extra_value})


@app.post("/webhook")
def webhook():
    return jsonify(status="ok")
"""
# The predecessor's async demo, reduced to what a deploy needs: a Quart app (ASGI) answering in the request.
QUART_APP_PY = """\
import os

from dotenv import load_dotenv
from quart import Quart, jsonify, request

load_dotenv()
app = Quart(__name__)


@app.get("/")
async def index():
    return jsonify(app="{app}", greeting=os.getenv("GREETING", "unset"), asgi=request.scope["type"])


@app.post("/webhook")
async def webhook():
    await request.get_data()
    return jsonify(status="ok")
"""
COMPOSE = """\
version: '3'
services:
  {app}:
    build:
      context: .
      dockerfile: ../Dockerfile.local
      args:
        MODULE: {app}
    ports:
      - "{port}:8080"
"""
WORKFLOW = """\
name: "[{app}][env: {env}] Deploy to Azure Container Apps"
on:
  workflow_dispatch:
jobs:
  warning:
    runs-on: ubuntu-latest
    steps:
      - name: Fail off the default branch
        if: github.ref != format('refs/heads/{{0}}', github.event.repository.default_branch)
        run: exit 1
  deployment:
    needs: warning
    runs-on: ubuntu-latest
    environment: {env}
    permissions:
      id-token: write
      contents: read
    steps:
      - uses: actions/checkout@v4
      - id: deploy
        uses: Unique-AG/sdk-deploy-action@v3
        with:
          module: {app}
          environment: {env}
          resource_group_name: ${{{{ vars.AZURE_RESOURCE_GROUP }}}}
          acr_login_server: ${{{{ vars.ACR_LOGIN_SERVER }}}}
          azure_client_id: ${{{{ vars.AZURE_CLIENT_ID }}}}
          azure_tenant_id: ${{{{ vars.AZURE_TENANT_ID }}}}
          azure_subscription_id: ${{{{ vars.AZURE_SUBSCRIPTION_ID }}}}
          azure_storage_account_id: ${{{{ vars.AZURE_STORAGE_ACCOUNT_ID }}}}
          acr_username: ${{{{ secrets.ACR_USERNAME }}}}
          acr_password: ${{{{ secrets.ACR_PASSWORD }}}}
          age_private_key: ${{{{ secrets.AGE_PRIVATE_KEY }}}}{dockerfile}
      - name: Summary
        run: echo "deployed"
"""


@dataclass(frozen=True)
class HandMadeApp:
    name: str
    module_name: str  # as configured on the platform: often not the folder name
    environments: tuple[str, ...]
    port: int
    extra_dependency: str = ""  # a Poetry line, e.g. 'humanize = "^4.9"'
    asgi: bool = False  # a Quart app, deployed with the predecessor's Dockerfile.async

    @property
    def greeting(self) -> str:
        return f"hello from {self.name}"

    @property
    def worker_class(self) -> str:
        """How its own image served it: the answer adoption needs (gunicorn_worker_class)."""
        return "uvicorn.workers.UvicornWorker" if self.asgi else "gthread"


QUOTES = HandMadeApp("quotes", "QUOTES_OF_THE_DAY_APP", ("dev", "prod"), 5001)
REPORTS = HandMadeApp("reports", "REPORTS", ("prod",), 5002, 'humanize = "^4.9"')
# The predecessor's versions of its async demo's server (platform.md section 10).
ASYNC = HandMadeApp("async_jokes", "ASYNC_UNIQUE_ASSISTANT_APP", ("dev",), 5003, asgi=True)
APPS = (QUOTES, REPORTS, ASYNC)
FLASK = 'flask = "^3.0"'
QUART = 'quart = "^0.19.6"\nuvicorn = "^0.30.1"'


def write_app(repo: Path, app: HandMadeApp, key: AgeKey, lock: Path | None) -> None:
    folder = repo / app.name
    (folder / app.name).mkdir(parents=True)
    framework = QUART if app.asgi else FLASK
    (folder / "pyproject.toml").write_text(
        PYPROJECT.format(app=app.name, framework=framework, extra=app.extra_dependency + "\n")
    )
    humanize = bool(app.extra_dependency)
    (folder / app.name / "app.py").write_text(
        QUART_APP_PY.format(app=app.name)
        if app.asgi
        else APP_PY.format(
            app=app.name,
            extra_import="import humanize\n" if humanize else "",
            extra_value=", size=humanize.naturalsize(2048)" if humanize else "",
        )
    )
    (folder / app.name / "__init__.py").write_text('from .app import app\n\n__all__ = ["app"]\n')
    (folder / ".flaskenv").write_text(f"FLASK_APP={app.name}\n")
    (folder / ".python-version").write_text("3.11\n")
    (folder / "docker-compose.yaml").write_text(COMPOSE.format(app=app.name, port=app.port))
    (folder / ".env").write_text(f'GREETING="{app.greeting}"\nAPI_KEY=key-of-{app.name}\n')
    encrypted = run("sops", "--encrypt", "--age", key.public, "--input-type", "dotenv", "--output-type", "dotenv",
                    folder / ".env", cwd=repo)  # fmt: skip
    (folder / ".env.enc").write_text(encrypted.stdout)
    (folder / ".env").unlink()
    if lock is not None and lock.exists():
        (folder / "poetry.lock").write_bytes(lock.read_bytes())
    else:
        run(sys.executable, "-m", "poetry", "lock", "--no-interaction", cwd=folder)
        if lock is not None:
            lock.write_bytes((folder / "poetry.lock").read_bytes())
    for env in app.environments:
        workflow = repo / ".github/workflows" / f"{app.name}.{env}.deploy.yaml"
        workflow.parent.mkdir(parents=True, exist_ok=True)
        dockerfile = "\n          dockerfile: ./Dockerfile.async" if app.asgi else ""
        workflow.write_text(WORKFLOW.format(app=app.name, env=env, dockerfile=dockerfile))


def handmade_monorepo(path: Path, key: AgeKey, locks: Path) -> Path:
    """The predecessor's monorepo, committed. `locks` caches each app's poetry.lock between tests."""
    repo = init_repository(path)
    (repo / "Dockerfile").write_text(DOCKERFILE)
    (repo / "Dockerfile.async").write_text(DOCKERFILE_ASYNC)
    (repo / "Dockerfile.local").write_text(DOCKERFILE_LOCAL)
    (repo / ".dockerignore").write_text(".env\n.venv\n")
    (repo / ".gitignore").write_text("# the team's own rules\n.env\n.venv/\n__pycache__/\n")
    (repo / "README.md").write_text("# Our apps\n\nMade by hand.\n")
    locks.mkdir(parents=True, exist_ok=True)
    for app in APPS:
        write_app(repo, app, key, locks / f"{app.name}.lock")
    commit_all(repo, "Our hand-made apps")
    return repo


def readme_adoption_command(template: Path, app: HandMadeApp, key: AgeKey, overwrite: bool = True) -> str:
    """The README's command, with its placeholders filled in for `app` and the source made local."""
    readme = (TEMPLATE / "README.md").read_text()
    section = readme[readme.index("## Adopt an existing app") :]
    block = section[section.index("```sh\n") + 6 : section.index("```", section.index("```sh\n") + 6)]
    [command] = [line.split("#")[0].strip() for line in block.splitlines() if "copier@latest copy" in line]
    filled = {
        "uvx copier@latest": str(VENV_BIN / "copier"),  # the pinned copier of this repository, no download
        "gh:<org>/sdk-deploy-template": str(template),
        "<app>": app.name,
        "<its Python, e.g. 3.11>": "3.11",
        "<its module name on the platform>": app.module_name,
        "<its environments, e.g. dev, prod>": ", ".join(app.environments),
        "<a path it answers 200 on, e.g. /health>": "/",
        "<how its image served it: gthread, or the worker its Dockerfile names>": app.worker_class,
        "<the repository's age public key>": key.public,
    }
    for placeholder, value in filled.items():
        assert placeholder in command, f"the README's command no longer holds {placeholder!r}"
        command = command.replace(placeholder, value)
    assert "<" not in command, command
    return command if overwrite else command.replace(" --overwrite", "")


def adopt(repo: Path, template: Path, app: HandMadeApp, key: AgeKey, overwrite: bool = True, extra: str = "") -> Any:
    """Run the README's adoption command for `app` in `repo` (`extra`: arguments added at its end)."""
    command = readme_adoption_command(template, app, key, overwrite) + (f" {extra}" if extra else "")
    return run("bash", "-c", command, cwd=repo, check=False)


def encrypt(repo: Path, key: AgeKey, path: Path, settings: str) -> None:
    """`path` (an .enc file) encrypted by sops for `key`, from `settings` in dotenv."""
    plain = path.with_suffix("")
    plain.write_text(settings)
    encrypted = run("sops", "--encrypt", "--age", key.public, "--input-type", "dotenv", "--output-type", "dotenv",
                    plain, cwd=repo)  # fmt: skip
    path.write_text(encrypted.stdout)
    plain.unlink()


def use_per_environment_env_files(repo: Path, app: HandMadeApp, key: AgeKey) -> None:
    """The app's settings in one file per environment, each workflow passing its own, committed."""
    (repo / app.name / ".env.enc").unlink()
    for env in app.environments:
        settings = f'GREETING="{app.greeting} in {env}"\nAPI_KEY=key-{env}\nENDPOINT_SECRET=secret-{env}\n'
        encrypt(repo, key, repo / app.name / f".env.{env}.enc", settings)
        workflow = repo / ".github/workflows" / f"{app.name}.{env}.deploy.yaml"
        text = workflow.read_text()
        workflow.write_text(text.replace("          age_private_key:", f"          encrypted_env_file: .env.{env}.enc\n"
                                         "          age_private_key:"))  # fmt: skip
    commit_all(repo, f"{app.name}: one env file per environment")


# The team's own repository configuration, which adoption must keep.
TEAM_SOPS = """\
# our rules
creation_rules:
  - path_regex: infra/.*\\.yaml$
    age: {key}
"""
TEAM_PRE_COMMIT = """\
default_stages: [pre-commit]
repos:
  - repo: https://github.com/pre-commit/pre-commit-hooks
    rev: v5.0.0
    hooks:
      - id: end-of-file-fixer
"""
TEAM_SCRIPT = "# Our own release helper, not the template's.\nprint('released')\n"


def add_team_configuration(repo: Path, key: AgeKey) -> None:
    (repo / ".sops.yaml").write_text(TEAM_SOPS.format(key=key.public))
    (repo / ".pre-commit-config.yaml").write_text(TEAM_PRE_COMMIT)
    (repo / "scripts").mkdir(exist_ok=True)
    (repo / "scripts" / "update_apps.py").write_text(TEAM_SCRIPT)
    commit_all(repo, "Our sops rules, hooks and scripts")
