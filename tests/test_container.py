"""The production image's start contract, verified without a Docker engine (tests/test_image.py
runs the same image under a real one).

The image's ENTRYPOINT runs the app's start program (sdk_runtime/start.py, copied with the app folder)
in /app with MODULE, APP_NAME, ENCRYPTED_ENV_FILE and PORT from its ENV and SOPS_AGE_KEY from the
deploy action: it decrypts the settings, then execs `gunicorn --config gunicorn.conf.py`. These tests
take the ENTRYPOINT and ENV from the rendered Dockerfile and run it on the app installed from its lock
file, with real sops and a fresh age key, then talk real HTTP to the gunicorn it starts.
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
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tools.dockerfile import entrypoint
from tools.net import free_port, wait_for_http
from tools.platform_events import runtime_module, signed_event

from .conftest import APP, VENV_BIN, InstalledApp, new_age_key, run

pytestmark = pytest.mark.slow

SECRET = "whsec_e2e-" + "x" * 20


@pytest.fixture
def platform(installed_app: InstalledApp) -> Iterator[Any]:
    """The app's own fake platform API (`sdk_runtime.testing.FakePlatform`) on loopback."""
    with runtime_module("testing").FakePlatform() as fake:
        yield fake


@dataclass(frozen=True)
class Image:
    """What the rendered Dockerfile says the container runs, and with which environment."""

    cmd: list[str]
    env_names: set[str]
    user: str


def image_contract(dockerfile: Path) -> Image:
    """`cmd`: the image's ENTRYPOINT, run in a copy of the app folder (what `COPY . .` puts in /app)."""
    text = dockerfile.read_text()
    runtime = text[text.index("AS runtime") :]
    cmd = entrypoint(text)
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
    image = image_contract(installed_app.repo / "Dockerfile")
    return Container(folder=folder, app=installed_app, image=image)


def encrypt_settings(app: InstalledApp, folder: Path, text: str) -> None:
    """Encrypt `text` as the user would (scripts/env_secrets.py, real sops, the repository key)."""
    (app.folder / ".env.deploy").write_text(text)  # the deployed settings, apart from local runs' .env
    try:
        run("python3", "scripts/env_secrets.py", "encrypt", APP, cwd=app.repo)
        shutil.copy(app.folder / ".env.enc", folder / ".env.enc")
    finally:
        (app.folder / ".env.deploy").unlink()
        (app.folder / ".env.enc").write_text("")


def event(container: Container, secret: str = SECRET, module: str = APP) -> tuple[bytes, dict[str, str]]:
    return signed_event(module, secret)


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
    # The app's own start program, run by the `python` of the image's PATH (the app's /app/.venv/bin).
    assert "exec python -m sdk_runtime.start" in container.image.cmd[2]
    assert 'return ["gunicorn", "--config", CONFIG]' in (container.folder / "sdk_runtime/start.py").read_text()


def test_encrypted_settings_reach_the_app_and_webhooks_work(container: Container, spawn: Any, platform: Any) -> None:
    settings = (
        f"API_KEY=key_e2e\nAPP_ID=app_e2e\nAPI_BASE={platform.url}\nENDPOINT_SECRET={SECRET}\n"
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

    body, headers = event(container)
    # Signed with another secret (a wrong or rotated one): 503, which the platform retries; unsigned: 401.
    assert post(f"{base}/webhook", body, event(container, secret="wrong-secret")[1] | {"X-Unique-Id": "x"}) == 503
    assert post(f"{base}/webhook", body, {"Content-Type": "application/json"}) == 401
    assert post(f"{base}/webhook", body, headers) == 202
    assert post(f"{base}/webhook", *event(container, module="other")) == 200  # another module's event: acknowledged

    # The example handler answered in the chat through unique_sdk, with the decrypted API key.
    stream, complete = platform.wait_for(2, timeout=30)
    assert [stream.method, stream.path, complete.method, complete.path] == [
        "POST",
        "/public/integrated/chat/stream-completions",  # a local platform URL's API path, as the toolkit infers it
        "PATCH",
        "/public/messages/msg_assistant_1",
    ]
    assert {call.headers["authorization"] for call in (stream, complete)} == {"Bearer key_e2e"}
    assert {call.headers["x-app-id"] for call in (stream, complete)} == {"app_e2e"}
    assert complete.body["completedAt"]
    assert complete.body["stoppedStreamingAt"]

    workers = children(process.pid)
    assert len(workers) == 2  # gunicorn_workers default
    for pid in [process.pid, *workers]:
        env = environ_of(pid)
        assert "SOPS_AGE_KEY" not in env, "the private key must not stay in the app's environment"
        assert env["ENDPOINT_SECRET"] == SECRET
        assert env["GREETING"] == "hello # not a comment"

    # A burst: a worker runs HANDLER_THREADS (128) events at once and acknowledges as many again, so 40
    # are all acknowledged, however they spread over the two workers.
    with ThreadPoolExecutor(16) as pool:
        deliveries = [event(container) for _ in range(40)]
        statuses = list(pool.map(lambda delivery: post(f"{base}/webhook", *delivery), deliveries))
    assert statuses == [202] * 40
    platform.wait_for(2 + 2 * statuses.count(202), timeout=30)  # every acknowledged event was answered
    assert len(platform.api_calls()) == 2 + 2 * statuses.count(202)

    process.terminate()
    log = process.communicate(timeout=40)[0]
    assert "Using worker: sdk_runtime.server.BufferingWorker" in log
    assert log.count("Booting worker") == 2
    assert SECRET not in log
    assert "key_e2e" not in log
    assert container.app.key.private not in log


def test_without_a_secret_the_deployed_app_acts_on_nothing_and_says_what_to_set(
    container: Container, spawn: Any
) -> None:
    """The first deploy has no ENDPOINT_SECRET: events get 503 (the platform retries them), none runs."""
    (container.folder / ".env.enc").write_text("")
    port = free_port()
    process = spawn(container.image.cmd, cwd=container.folder, env=container.environment(port))
    wait_for_http(f"http://127.0.0.1:{port}/health", process)
    body, _ = event(container, secret="")
    request = urllib.request.Request(f"http://127.0.0.1:{port}/webhook", data=body, method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 503
    assert int(refused.value.headers["Retry-After"]) > 0
    process.terminate()
    log = process.communicate(timeout=40)[0]
    assert ".env.enc is empty: starting without secrets" in log
    assert "Put the platform's signing secret for this webhook into UNIQUE_APP_ENDPOINT_SECRET" in log


def test_the_local_image_takes_unsigned_events_with_no_extra_step(
    container: Container, spawn: Any, platform: Any
) -> None:
    """docker compose runs Dockerfile.local's CMD with its ENV (ENCRYPTED_ENV_FILE empty) and .env."""
    local = image_contract(container.app.repo / "Dockerfile.local")
    assert re.search(r"^ENV ENCRYPTED_ENV_FILE=$", (container.app.repo / "Dockerfile.local").read_text(), re.MULTILINE)
    port = free_port()
    dotenv = {"API_KEY": "k", "APP_ID": "a", "API_BASE": platform.url}  # what compose passes from .env
    process = spawn(local.cmd, cwd=container.folder, env=container.environment(port, ENCRYPTED_ENV_FILE="", **dotenv))
    wait_for_http(f"http://127.0.0.1:{port}/health", process)
    body, headers = event(container, secret="")
    assert post(f"http://127.0.0.1:{port}/webhook", body, headers) == 202
    assert len(platform.wait_for(2, timeout=30)) == 2  # handled: answered in the chat


def test_sigterm_after_a_burst_loses_no_acknowledged_event(container: Container, spawn: Any, tmp_path: Path) -> None:
    """Azure sends SIGTERM and kills 30 s later. A 5 s handler, 100 events, then SIGTERM: a replica takes
    them all (128 threads per worker), and every event answered 2xx runs to completion before it exits."""
    encrypt_settings(container.app, container.folder, f"ENDPOINT_SECRET={SECRET}\nHANDLER_TIMEOUT=5\n")
    port = free_port()
    env = container.environment(
        port,
        SOPS_AGE_KEY=container.app.key.private,
        MODULE="sdk_runtime.testing",  # the app with a handler that takes 5 s, then records the event id
        APP_NAME="recording_app",
        RECORDING_APP_SECONDS="5",
        RECORDING_APP_DONE_FILE=str(tmp_path / "done.txt"),
    )
    process = spawn(container.image.cmd, cwd=container.folder, env=env)
    base = f"http://127.0.0.1:{port}"
    wait_for_http(f"{base}/health", process)

    deliveries = [event(container) for _ in range(100)]
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda delivery: post(f"{base}/webhook", *delivery), deliveries))
    started = time.monotonic()
    process.terminate()
    log = process.communicate(timeout=40)[0]
    stopped_after = time.monotonic() - started

    ids = [json.loads(body)["id"] for body, _ in deliveries]
    acknowledged = [event_id for event_id, status in zip(ids, statuses, strict=True) if status == 202]
    done = (tmp_path / "done.txt").read_text().split()
    assert set(statuses) == {202}, statuses
    assert sorted(done) == sorted(acknowledged), "an acknowledged event was lost"
    assert stopped_after < 30, "Azure would have killed the container"
    assert "cut by shutdown" not in log


def health(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return response.status
    except OSError:
        return 0


def test_slow_clients_cannot_starve_health_and_are_cut(container: Container, spawn: Any) -> None:
    """16 clients trickling headers or bodies (more than 2 workers x 4 threads), production defaults."""
    (container.folder / ".env.enc").write_text("")
    port = free_port()
    process = spawn(container.image.cmd, cwd=container.folder, env=container.environment(port))
    wait_for_http(f"http://127.0.0.1:{port}/health", process)
    trickle = runtime_module("testing").trickle
    firsts = [b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "] * 8
    firsts += [b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"] * 8
    stop = threading.Event()
    with ThreadPoolExecutor(16) as pool:
        slow = [pool.submit(trickle, port, first, stop, 0.5) for first in firsts]
        time.sleep(1)
        statuses = [health(port) for _ in range(8)]
        wait(slow, timeout=60)
        stop.set()
        cut_after = [future.result() for future in slow]
    assert statuses == [200] * 8
    assert None not in cut_after, "slow clients must be cut (GUNICORN_READ_TIMEOUT, 10 s by default)"
    process.terminate()
    assert "no complete request within 10 s" in process.communicate(timeout=40)[0]


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


# ---- Settings sops decrypts but Linux or Python cannot take: one line, no traceback ---------------


def encrypt_with_sops(container: Container, plain: bytes) -> None:
    """Encrypt `plain` with sops itself (as APPS.md shows), which takes what the guards may refuse."""
    source = container.folder.parent / "plain.env"
    source.write_bytes(plain)
    command = ["--encrypt", "--age", container.app.key.public, "--input-type", "dotenv", "--output-type", "dotenv"]
    encrypted = run(VENV_BIN / "sops", *command, source)
    source.unlink()
    (container.folder / ".env.enc").write_text(encrypted.stdout)


def start_fails(container: Container, **extra: str) -> str:
    """Run the image's ENTRYPOINT with the repository key (unless `extra` gives another); return its one
    line of output."""
    env = container.environment(free_port(), **{"SOPS_AGE_KEY": container.app.key.private, **extra})
    result = run(*container.image.cmd, cwd=container.folder, check=False, **env)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    assert len(lines) == 1, lines  # no traceback
    assert lines[0].startswith("start: "), lines
    assert LEAK not in lines[0]
    return lines[0]


def test_a_value_over_128_kib_stops_the_start_with_its_name(container: Container) -> None:
    """Linux refuses a program whose environment holds a NAME=value over 128 KiB (E2BIG)."""
    value = LEAK + "x" * (128 * 1024)
    encrypt_with_sops(container, f"API_KEY=key\nBIG_CERTIFICATE={value}\n".encode())
    line = start_fails(container)
    assert line.startswith(f"start: BIG_CERTIFICATE (decrypted from .env.enc) is {len(value) + 17} bytes")
    assert "over 131072 bytes" in line


def test_settings_that_are_not_utf8_stop_the_start_with_the_line(container: Container) -> None:
    encrypt_with_sops(container, f"API_KEY=key\nGREETING=caf\xe9 {LEAK}\n".encode("latin-1"))
    line = start_fails(container)
    assert line.startswith("start: .env.enc decrypts to text that is not UTF-8 (line 2, GREETING)")


def test_a_sops_that_hangs_is_stopped_after_the_timeout(container: Container) -> None:
    """Real sops, hanging: SOPS_AGE_KEY is not this file's key, so sops goes on to SOPS_AGE_KEY_CMD,
    which never returns. The start stops sops and what it started after START_SOPS_TIMEOUT."""
    encrypt_settings(container.app, container.folder, f"ENDPOINT_SECRET={LEAK}\n")
    pid_file = container.folder.parent / "key-command.pid"
    hanging = container.folder.parent / "key-command"
    hanging.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 300\n")
    hanging.chmod(0o755)
    started = time.monotonic()
    line = start_fails(
        container, SOPS_AGE_KEY=new_age_key().private, SOPS_AGE_KEY_CMD=str(hanging), START_SOPS_TIMEOUT="2"
    )
    assert time.monotonic() - started < 60, "the start waited for sops"
    assert line.startswith("start: sops did not decrypt .env.enc within 2 s (START_SOPS_TIMEOUT), so it was stopped")
    key_command = Path(f"/proc/{pid_file.read_text().strip()}")
    deadline = time.monotonic() + 10
    while key_command.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not key_command.exists(), "the key command sops started is still running"


@pytest.mark.parametrize("value", ["soon", "0"])
def test_a_timeout_that_is_not_a_positive_number_is_refused(container: Container, value: str) -> None:
    encrypt_settings(container.app, container.folder, f"ENDPOINT_SECRET={LEAK}\n")
    assert START_SOPS_TIMEOUT_WORDS[value] in start_fails(container, START_SOPS_TIMEOUT=value)


START_SOPS_TIMEOUT_WORDS = {"soon": "is not a number of seconds", "0": "must be more than 0 seconds"}
