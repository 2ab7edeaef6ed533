"""Building and running a generated repository's images with a local Docker engine.

Shared by tests/test_image.py and benchmarks/images.py. Builds use the classic builder
(DOCKER_BUILDKIT=0): BuildKit would fetch the `# syntax=` frontend image from a registry. The classic
builder reads `<context>/.dockerignore` (the app's own), BuildKit reads `<Dockerfile>.dockerignore`
next to the Dockerfile: the template renders the same rules into all of them.

Containers run without a network (`--network none`): the engines on the test machines have no
bridge network, so ports cannot be published; HTTP requests go to the container's own port from a
process started inside it with `docker exec`, as the platform's ingress reaches the container port.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

ACTION = "Unique-AG/sdk-deploy-action"
# Unique-AG/sdk-deploy-action v3 action.yaml: the optional inputs behind the build args, and their defaults.
ACTION_DEFAULTS = {
    "app_name": "app",
    "encrypted_env_file": ".env.enc",
    "dockerfile": "./Dockerfile",
    "poetry_version": "1.7.1",
    "sops_version": "3.8.1",
}
# action.yaml's build step: `build-args: MODULE=${{ inputs.module }} ...`
ACTION_BUILD_ARGS = {
    "MODULE": "module",
    "APP_NAME": "app_name",
    "ENCRYPTED_ENV_FILE": "encrypted_env_file",
    "POETRY_VERSION": "poetry_version",
    "SOPS_VERSION": "sops_version",
}
SOPS_RELEASE_PATH = "getsops/sops/releases/download/"
SOPS_RELEASES = f"https://github.com/{SOPS_RELEASE_PATH}"


class DockerError(AssertionError):
    pass


def docker(*args: str, check: bool = True, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, check=False, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise DockerError(f"docker {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def engine_problem() -> str | None:
    """Why no Docker engine can be used here, or None when one answers."""
    if not shutil.which("docker"):
        return "the docker command is not installed (CI installs it with scripts/docker-engine)"
    try:
        result = docker("version", "--format", "{{.Server.Version}}", check=False, timeout=20)
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer `docker version` within 20 s"
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return f"no Docker engine answers ({reason}); start one with scripts/docker-engine (needs root)"
    return None


def build_network() -> list[str]:
    """Builds need the network for PyPI; without a bridge network (engines here) they share the host's."""
    has_bridge = docker("network", "inspect", "bridge", check=False).returncode == 0
    return [] if has_bridge else ["--network", "host"]


@dataclass(frozen=True)
class BuildSpec:
    """One `docker build`: what the deploy action or docker compose would run."""

    context: Path
    dockerfile: Path
    args: dict[str, str]


def action_build(repo: Path, workflow: Path) -> BuildSpec:
    """The build the deploy action runs for `workflow`: its `with:` inputs over the action's defaults."""
    steps = [step for job in yaml.safe_load(workflow.read_text())["jobs"].values() for step in job.get("steps", [])]
    [step] = [step for step in steps if str(step.get("uses", "")).startswith(f"{ACTION}@")]
    inputs = {**ACTION_DEFAULTS, **{key: str(value) for key, value in step["with"].items()}}
    args = {arg: inputs[name] for arg, name in ACTION_BUILD_ARGS.items()}
    return BuildSpec(context=repo / inputs["module"], dockerfile=repo / inputs["dockerfile"], args=args)


def compose_build(compose: Path, service: str) -> BuildSpec:
    """The build `docker compose up --build` runs for `service`: its build context, dockerfile and args."""
    build = yaml.safe_load(compose.read_text())["services"][service]["build"]
    context = (compose.parent / build.get("context", ".")).resolve()
    args = {key: str(value) for key, value in build.get("args", {}).items()}
    return BuildSpec(context=context, dockerfile=(context / build.get("dockerfile", "Dockerfile")).resolve(), args=args)


def compose_env_files(compose: Path, service: str) -> list[Path]:
    """The env files compose passes to `service` (long syntax: skipped when missing and not required)."""
    files = []
    for entry in yaml.safe_load(compose.read_text())["services"][service].get("env_file", []):
        path, required = (entry, True) if isinstance(entry, str) else (entry["path"], entry.get("required", True))
        if (compose.parent / path).is_file() or required:
            files.append(compose.parent / path)
    return files


@dataclass(frozen=True)
class Built:
    tag: str
    seconds: float
    size: int  # bytes, as `docker image inspect` reports
    cached_steps: int
    log: str


def image_size(tag: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout)


def build(spec: BuildSpec, tag: str, dockerfile_text: str | None = None, extra: Sequence[str] = ()) -> Built:
    """Run the build with the classic builder; `dockerfile_text` replaces the Dockerfile's text if given."""
    with tempfile.TemporaryDirectory() as scratch:
        dockerfile = spec.dockerfile
        if dockerfile_text is not None:
            dockerfile = Path(scratch) / spec.dockerfile.name
            dockerfile.write_text(dockerfile_text)
        args = [item for key, value in spec.args.items() for item in ("--build-arg", f"{key}={value}")]
        command = ["build", "--force-rm", *build_network(), "-f", str(dockerfile), "-t", tag, *args, *extra]
        command.append(str(spec.context))
        started = time.monotonic()
        result = docker(*command, check=False, timeout=1800, env={**os.environ, "DOCKER_BUILDKIT": "0"})
        seconds = time.monotonic() - started
    if result.returncode != 0:
        raise DockerError(f"docker build of {tag} failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
    return Built(tag, seconds, image_size(tag), result.stdout.count("Using cache"), result.stdout)


@contextmanager
def sops_mirror(binary: Path, version: str, served: Path | None = None, arch: str = "amd64") -> Iterator[SopsMirror]:
    """The two files the Dockerfile downloads from a sops release, served over HTTP on loopback.

    The checksums file is made from `binary` in the release's format (`<sha256>  <file name>`); the
    binary served is `binary`, or `served` (to check that a wrong binary is refused). Both under the
    release's own path and file names.
    """
    with tempfile.TemporaryDirectory() as root:
        release = Path(root) / SOPS_RELEASE_PATH / f"v{version}"
        release.mkdir(parents=True)
        name = f"sops-v{version}.linux.{arch}"
        digest = hashlib.sha256(binary.read_bytes()).hexdigest()
        shutil.copyfile(served or binary, release / name)
        (release / f"sops-v{version}.checksums.txt").write_text(f"{digest}  {name}\n")
        requests: list[str] = []

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                requests.append(self.path)

        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=root))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield SopsMirror(f"http://127.0.0.1:{server.server_port}/", release, requests)
        finally:
            server.shutdown()
            server.server_close()


@dataclass
class SopsMirror:
    base: str
    release: Path
    requests: list[str] = field(default_factory=list)

    def dockerfile(self, text: str) -> str:
        """`text` with only the sops download source changed: github.com's release URL prefix -> this mirror."""
        if text.count(SOPS_RELEASES) != 2:
            raise DockerError(f"expected the checksums file and the binary from {SOPS_RELEASES}, found:\n{text}")
        return text.replace(SOPS_RELEASES, self.base + SOPS_RELEASE_PATH)


# ---- Containers -----------------------------------------------------------------------------

# Runs inside the container (its own Python): one HTTP request to its port, the answer as JSON.
_HTTP = """
import json, sys, urllib.error, urllib.request
r = json.load(sys.stdin)
req = urllib.request.Request(r["url"], data=r["body"].encode("latin-1") if r["body"] is not None else None,
                             headers=r["headers"], method=r["method"])
try:
    with urllib.request.urlopen(req, timeout=10) as resp:
        print(json.dumps({"status": resp.status, "body": resp.read().decode("latin-1")}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": e.read().decode("latin-1")}))
except OSError as e:
    print(json.dumps({"status": 0, "body": repr(e)}))
"""

# Runs inside the container: every process but itself, with its user, command line and environment
# (readable for the processes of the same user; a process it cannot read is reported as such).
_PROCESSES = """
import json, os
out = []
for pid in sorted(int(p) for p in os.listdir("/proc") if p.isdigit()):
    if pid == os.getpid():
        continue
    try:
        status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":" in line)
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")
    except OSError:
        continue
    try:
        raw = open(f"/proc/{pid}/environ", "rb").read().split(b"\\0")
        env = dict(i.decode().split("=", 1) for i in raw if b"=" in i)
    except OSError as e:
        env = {"<unreadable>": repr(e)}
    out.append({"pid": pid, "ppid": int(status["PPid"]), "uid": int(status["Uid"].split()[0]),
                "cmdline": [c.decode() for c in cmdline if c], "env": env})
print(json.dumps(out))
"""

# Runs inside the container: listening TCP sockets (address, port) from /proc/net/tcp.
_LISTENING = """
import json
rows = [line.split() for line in open("/proc/net/tcp").read().splitlines()[1:]]
out = []
for row in rows:
    if row[3] == "0A":
        address, port = row[1].split(":")
        out.append([".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)), int(port, 16)])
print(json.dumps(out))
"""


@dataclass
class Container:
    """A detached container of `image`, always removed by `remove()`."""

    image: str
    name: str = field(default_factory=lambda: f"sdt-{uuid.uuid4().hex[:12]}")

    def start(self, *options: str) -> Container:
        docker("run", "--detach", "--network", "none", "--name", self.name, *options, self.image)
        return self

    def exec_python(self, code: str, stdin: str = "", *options: str) -> str:
        result = docker("exec", "-i", *options, self.name, "python3", "-c", code, input=stdin, timeout=60)
        return result.stdout

    def http(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None, port: int = 8080
    ) -> tuple[int, bytes]:
        request = {
            "url": f"http://127.0.0.1:{port}{path}",
            "method": method,
            "headers": headers or {},
            "body": body.decode("latin-1") if body is not None else None,
        }
        answer = json.loads(self.exec_python(_HTTP, json.dumps(request)))
        return answer["status"], answer["body"].encode("latin-1")

    def exec_detached(self, code: str) -> None:
        """Start Python `code` in the container, in the background, as the container's user."""
        docker("exec", "--detach", self.name, "python3", "-c", code)

    def processes(self) -> list[dict[str, Any]]:
        processes: list[dict[str, Any]] = json.loads(self.exec_python(_PROCESSES))
        return processes

    def listening(self) -> list[tuple[str, int]]:
        return [tuple(item) for item in json.loads(self.exec_python(_LISTENING))]

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(docker("inspect", "--format", "{{json .State}}", self.name).stdout)
        return state

    def logs(self) -> str:
        result = docker("logs", self.name)
        return result.stdout + result.stderr

    def wait_for_health(self, timeout: float = 90) -> bytes:
        """GET /health until 200; fails at once, with the logs, if the container stops."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.state()["Running"]:
                raise DockerError(f"container {self.image} stopped ({self.state()['ExitCode']}):\n{self.logs()}")
            status, body = self.http("GET", "/health")
            if status == 200:
                return body
            time.sleep(0.5)
        raise DockerError(f"/health of {self.image} did not answer 200 within {timeout} s:\n{self.logs()}")

    def wait_until_exited(self, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state()
            if not state["Running"]:
                return state
            time.sleep(0.3)
        raise DockerError(f"container {self.image} still runs after {timeout} s:\n{self.logs()}")

    def stop(self, grace: int) -> float:
        """`docker stop` (SIGTERM, then SIGKILL after `grace` s); returns how long it took."""
        started = time.monotonic()
        docker("stop", "--time", str(grace), self.name, timeout=grace + 60)
        return time.monotonic() - started

    def remove(self) -> None:
        docker("rm", "--force", "--volumes", self.name, check=False)


def run_in_image(image: str, code: str, *argv: str) -> Any:
    """Run Python `code` (which prints JSON) in a throwaway container of `image`, as its user; the JSON.
    The image's own start program (its ENTRYPOINT) is bypassed: this looks at the image, it starts no app."""
    result = docker(
        "run", "--rm", "--network", "none", "--entrypoint", "python3", image, "-c", code, *argv, timeout=120
    )  # fmt: skip
    return json.loads(result.stdout)
