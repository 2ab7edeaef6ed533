"""The documented local loop (issue: a team tries its handler without a platform) and the smoke test of a
running app, run as the app README writes them: `python -m sdk_runtime.local` and `python -m sdk_runtime.send`
from a rendered app's folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..conftest import APP
from .conftest import SECRET, Recorder


def run_module(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "ENCRYPTED_ENV_FILE"} | env
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=folder, env=environment, capture_output=True, text=True, check=False
    )


def test_the_local_loop_shows_what_the_chat_got(monorepo: Path) -> None:
    result = run_module(monorepo / APP, "sdk_runtime.local", "--text", "What is a bond?", SYSTEM_PROMPT="Be brief.")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()  # after the app's own log lines
    lines = lines[next(i for i, line in enumerate(lines) if line.startswith("webhook answered")) :]
    assert lines[0].startswith("webhook answered 202")
    assert "language model, streamed into the message: system: Be brief. | user: What is a bond?" in lines[1]
    assert "stoppedStreamingAt, completedAt" in lines[2]
    assert lines[-1].startswith("the message was completed, keeping the streamed answer")


def test_the_local_loop_takes_any_event_file_and_shows_a_failing_handler(monorepo: Path, tmp_path: Path) -> None:
    app = tmp_path / APP
    shutil.copytree(monorepo / APP, app)
    (app / APP / "handler.py").write_text("def handle(chat, settings):\n    raise RuntimeError('oops')\n")
    event = tmp_path / "event.json"
    event.write_text(
        '{"id": "evt_file", "event": "unique.chat.external-module.chosen", "userId": "u", "companyId": "c",'
        ' "payload": {"name": "joke_of_the_day", "chatId": "chat_9", "assistantId": "a",'
        ' "userMessage": {"id": "m1", "text": "Hi"}, "assistantMessage": {"id": "m2"}}}'
    )
    result = run_module(app, "sdk_runtime.local", "--event", str(event))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "message m2: text='Sorry, something went wrong" in result.stdout
    assert "RuntimeError: oops" in result.stdout  # the app's own log, with the traceback


def test_send_delivers_one_signed_event_to_a_running_app(monorepo: Path, webhook_url: str, recorder: Recorder) -> None:
    result = run_module(
        monorepo / APP, "sdk_runtime.send", webhook_url, "--text", "ping", UNIQUE_APP_ENDPOINT_SECRET=SECRET
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith('202 {"status": "accepted"}')
    [event] = recorder.wait_for(1)
    assert event.payload["userMessage"]["text"] == "ping"


def test_send_with_the_wrong_secret_shows_the_apps_refusal(monorepo: Path, webhook_url: str) -> None:
    result = run_module(monorepo / APP, "sdk_runtime.send", webhook_url, UNIQUE_APP_ENDPOINT_SECRET="not-it")
    assert result.returncode == 1
    assert result.stdout.startswith("503 ")  # a wrong secret: the platform would retry (README, "The webhook")
    assert "does not match the body" in result.stdout
