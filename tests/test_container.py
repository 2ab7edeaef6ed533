"""The production image's start contract, verified without a Docker engine.

The image runs `CMD ["gunicorn", "--config", "gunicorn.conf.py"]` in /app with MODULE, APP_NAME,
ENCRYPTED_ENV_FILE and PORT from its ENV and SOPS_AGE_KEY from the deploy action. These tests read
that CMD and ENV from the rendered Dockerfile and run exactly that command on the app installed from
its lock file, with real sops and a fresh age key, then talk real HTTP to the gunicorn it starts.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tools.net import free_port, wait_for_http
from tools.platform_events import chosen_event, signed_headers

from .conftest import APP, VENV_BIN, InstalledApp, new_age_key, run

pytestmark = pytest.mark.slow

SECRET = "whsec_e2e-" + "x" * 20


class FakePlatformApi(BaseHTTPRequestHandler):
    calls: ClassVar[list[tuple[str, str, dict[str, str]]]] = []

    def do_PATCH(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        FakePlatformApi.calls.append((self.command, self.path, dict(self.headers)))
        body = json.dumps({"id": self.path.rsplit("/", 1)[-1], "object": "message"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def platform_api() -> Iterator[str]:
    FakePlatformApi.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakePlatformApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@dataclass(frozen=True)
class Image:
    """What the rendered Dockerfile says the container runs, and with which environment."""

    cmd: list[str]
    env_names: set[str]
    user: str


def image_contract(dockerfile: Path) -> Image:
    text = dockerfile.read_text()
    runtime = text[text.index("AS runtime") :]
    cmd = json.loads(re.findall(r"^CMD (\[.*\])$", runtime, re.MULTILINE)[-1])
    env_names = set(re.findall(r"(?:ENV |^\s+)([A-Z_]+)=", runtime, re.MULTILINE))
    user = re.findall(r"^USER (\S+)$", runtime, re.MULTILINE)[-1]
    return Image(cmd=cmd, env_names=env_names, user=user)


@dataclass
class Container:
    folder: Path  # plays /app: the build context's files, no plain .env
    app: InstalledApp
    image: Image

    def environment(self, port: int, **extra: str) -> dict[str, str]:
        # PATH: the app's venv (/app/.venv/bin) and sops (/usr/local/bin). No HOME: the image's user has none.
        env = {
            "PATH": f"{self.app.bin}:{VENV_BIN}:/usr/bin:/bin",
            "MODULE": APP,
            "APP_NAME": "app",
            "ENCRYPTED_ENV_FILE": ".env.enc",
            "PORT": str(port),
            "HOST": "127.0.0.1",
            **extra,
        }
        assert {"MODULE", "APP_NAME", "ENCRYPTED_ENV_FILE", "PORT"} <= self.image.env_names
        return env


@pytest.fixture
def container(tmp_path: Path, installed_app: InstalledApp) -> Container:
    folder = tmp_path / "app"
    shutil.copytree(installed_app.folder, folder, ignore=shutil.ignore_patterns(".venv", ".env", "__pycache__"))
    return Container(folder=folder, app=installed_app, image=image_contract(installed_app.repo / "Dockerfile"))


def encrypt_settings(app: InstalledApp, folder: Path, text: str) -> None:
    """Encrypt `text` as the user would (scripts/env_secrets.py, real sops, the repository key)."""
    (app.folder / ".env").write_text(text)
    try:
        run("python3", "scripts/env_secrets.py", "encrypt", APP, cwd=app.repo)
        shutil.copy(app.folder / ".env.enc", folder / ".env.enc")
    finally:
        (app.folder / ".env").unlink()
        (app.folder / ".env.enc").write_text("")


def event(module: str = APP) -> bytes:
    return chosen_event(module)


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_image_runs_as_non_root_and_starts_gunicorn_from_the_app_config(container: Container) -> None:
    assert container.image.user == "app"
    assert container.image.cmd == ["gunicorn", "--config", "gunicorn.conf.py"]


def test_encrypted_settings_reach_the_app_and_webhooks_work(
    container: Container, spawn: Any, platform_api: str
) -> None:
    settings = (
        f"API_KEY=key_e2e\nAPP_ID=app_e2e\nAPI_BASE={platform_api}\nENDPOINT_SECRET={SECRET}\n"
        f'MODULE_NAME={APP}\nGREETING="hello # not a comment"\n'
    )
    encrypt_settings(container.app, container.folder, settings)
    assert "key_e2e" not in (container.folder / ".env.enc").read_text()

    port = free_port()
    process = spawn(
        container.image.cmd,
        cwd=container.folder,
        env=container.environment(port, SOPS_AGE_KEY=container.app.key.private),
    )
    base = f"http://127.0.0.1:{port}"
    assert wait_for_http(f"{base}/health", process) == b'{"status":"ok"}\n'

    body, other = event(), event("other")
    assert post(f"{base}/webhook", body, signed_headers(body, "wrong-secret")) == 401
    assert post(f"{base}/webhook", body, {"Content-Type": "application/json"}) == 401
    assert post(f"{base}/webhook", body, signed_headers(body, SECRET)) == 202
    assert post(f"{base}/webhook", other, signed_headers(other, SECRET)) == 200  # another module's event: acknowledged

    deadline = time.monotonic() + 10  # the handler answered in the chat with the decrypted API key
    while not FakePlatformApi.calls and time.monotonic() < deadline:
        time.sleep(0.05)
    [(method, path, headers)] = FakePlatformApi.calls
    assert (method, path, headers["Authorization"], headers["x-app-id"]) == (
        "PATCH",
        "/messages/m_2",
        "Bearer key_e2e",
        "app_e2e",
    )

    workers = children(process.pid)
    assert len(workers) == 2  # gunicorn_workers default
    for pid in [process.pid, *workers]:
        env = environ_of(pid)
        assert "SOPS_AGE_KEY" not in env, "the private key must not stay in the app's environment"
        assert env["ENDPOINT_SECRET"] == SECRET
        assert env["GREETING"] == "hello # not a comment"

    with ThreadPoolExecutor(16) as pool:  # more than 2 workers x 4 threads at once
        bodies = [event() for _ in range(32)]
        statuses = list(pool.map(lambda b: post(f"{base}/webhook", b, signed_headers(b, SECRET)), bodies))
    assert statuses == [202] * 32

    process.terminate()
    log = process.communicate(timeout=15)[0]
    assert "Using worker: gthread" in log
    assert log.count("Booting worker") == 2
    assert SECRET not in log
    assert "key_e2e" not in log
    assert container.app.key.private not in log


def test_empty_encrypted_file_starts_without_secrets_and_says_so(container: Container, spawn: Any) -> None:
    (container.folder / ".env.enc").write_text("")
    port = free_port()
    process = spawn(container.image.cmd, cwd=container.folder, env=container.environment(port))
    wait_for_http(f"http://127.0.0.1:{port}/health", process)
    assert post(f"http://127.0.0.1:{port}/webhook", event(), {"Content-Type": "application/json"}) == 202
    process.terminate()
    log = process.communicate(timeout=15)[0]
    assert ".env.enc is empty: starting without secrets" in log
    assert "signatures are NOT verified" in log


@pytest.mark.parametrize("case", ["wrong-key", "no-key", "missing-file"])
def test_container_stops_with_a_clear_message_when_secrets_cannot_load(container: Container, case: str) -> None:
    encrypt_settings(container.app, container.folder, f"ENDPOINT_SECRET={SECRET}\n")
    extra = {
        "wrong-key": {"SOPS_AGE_KEY": new_age_key().private},
        "no-key": {},
        "missing-file": {"SOPS_AGE_KEY": container.app.key.private, "ENCRYPTED_ENV_FILE": ".env.prod.enc"},
    }[case]
    result = run(*container.image.cmd, cwd=container.folder, check=False, **container.environment(free_port(), **extra))
    assert result.returncode != 0
    expected = {
        "wrong-key": "start: cannot decrypt .env.enc with SOPS_AGE_KEY",
        "no-key": "start: .env.enc holds encrypted settings but SOPS_AGE_KEY is not set",
        "missing-file": "start: encrypted env file .env.prod.enc not found",
    }[case]
    assert expected in result.stderr
    assert "Booting worker" not in result.stderr


# ---- A start error says what is wrong and where, never what the file holds --------------------

LEAK = "S3CRET-not-for-logs"


def _encrypted(container: Container) -> str:
    encrypt_settings(container.app, container.folder, f"API_KEY=key\nENDPOINT_SECRET={LEAK}\n")
    return (container.folder / ".env.enc").read_text()


# Each case: what the file holds, and what the start error must say (sops' own message quotes the file).
START_ERRORS: dict[str, tuple[Any, list[str]]] = {
    "plain-malformed-line": (  # the line sops echoes: "invalid dotenv input line: NOEQUALS ..."
        lambda c: f"API_KEY=key\nNOEQUALS {LEAK}\n",
        ["a line is not NAME=value", "lines not as sops writes them: 1, 2"],
    ),
    "plain-dotenv": (lambda c: f"# settings\nENDPOINT_SECRET={LEAK}\n", ["no sops metadata", "writes them: 1, 2"]),
    "plain-utf-16": (lambda c: f"ENDPOINT_SECRET={LEAK}\n".encode("utf-16"), ["a line is not NAME=value", ": 1"]),
    "plain-latin-1": (lambda c: f"ENDPOINT_SECRET={LEAK}\xe9\n".encode("latin-1"), ["no sops metadata", ": 1"]),
    "json": (lambda c: f'{{"ENDPOINT_SECRET": "{LEAK}"}}', ["a line is not NAME=value", ": 1"]),
    "value-in-clear-added": (
        lambda c: _encrypted(c) + f"EXTRA={LEAK}\n",  # sops: "Input string <value> does not match ..."
        ["a value or sops metadata is not encrypted", "lines not as sops writes them: 9"],
    ),
    "value-tampered": (
        lambda c: re.sub(
            r"^API_KEY=ENC\[AES256_GCM,data:[^,]*", "API_KEY=ENC[AES256_GCM,data:AAAA", _encrypted(c), flags=re.M
        ),
        ["a value was changed after encryption"],
    ),
}


@pytest.mark.parametrize("case", START_ERRORS)
def test_start_error_never_prints_the_file(container: Container, case: str) -> None:
    make, expected = START_ERRORS[case]
    content = make(container)
    (container.folder / ".env.enc").write_bytes(content if isinstance(content, bytes) else content.encode())
    env = container.environment(free_port(), SOPS_AGE_KEY=container.app.key.private)
    result = run(*container.image.cmd, cwd=container.folder, check=False, **env)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert LEAK not in output
    assert "start: cannot decrypt .env.enc with SOPS_AGE_KEY: " in result.stderr
    for words in expected:
        assert words in result.stderr, result.stderr
    assert "Booting worker" not in output
