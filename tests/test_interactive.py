"""`copier copy` as a person runs it: at copier's prompts, in a terminal (a pseudo-terminal here),
typing the app name and taking the defaults. Scripted runs (`--data`) answer before any question is
asked, so they never go through the prompts' own validation; this does."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tools.template_repo import init_repository

from .conftest import APP, TEMPLATE, VENV_BIN, AgeKey, answers, new_monorepo

pytestmark = pytest.mark.slow

CURSOR_REQUEST = b"\x1b[6n"  # prompt_toolkit asks for the cursor position as it draws each prompt
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def at_the_prompts(repo: Path, typed: list[str], timeout: float = 90) -> tuple[int, str]:
    """Run `copier copy` in a terminal; answer each prompt with the next of `typed` ("" = Enter)."""
    main, terminal = pty.openpty()
    command = [str(VENV_BIN / "copier"), "copy", "--vcs-ref", "HEAD", str(TEMPLATE), "."]
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "200", "LINES": "50"}
    process = subprocess.Popen(command, cwd=repo, stdin=terminal, stdout=terminal, stderr=terminal, env=env)
    os.close(terminal)
    output, answered = b"", 0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if not select.select([main], [], [], 0.2)[0]:
                continue
            try:
                chunk = os.read(main, 65536)
            except OSError:
                break
            output += chunk
            for _ in range(chunk.count(CURSOR_REQUEST)):
                os.write(main, b"\x1b[1;1R")  # the cursor position, as a terminal answers
                time.sleep(0.2)
                os.write(main, (typed[answered] if answered < len(typed) else "").encode() + b"\r")
                answered += 1
        process.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if process.poll() is None:
            process.kill()
        os.close(main)
    return process.returncode, ESCAPES.sub("", output.decode(errors="replace"))


def test_a_first_app_at_the_prompts(tmp_path: Path, age_key: AgeKey) -> None:
    """The app name typed, then the defaults, the age key typed when it is asked."""
    repo = init_repository(tmp_path / "repo")
    typed = [APP, *[""] * 9, age_key.public]  # app_name; adopt ... max_replicas; age_public_key; then defaults
    code, output = at_the_prompts(repo, typed)
    assert code == 0, output[-3000:]
    assert "is forbidden" not in output
    recorded = yaml.safe_load((repo / APP / ".copier-answers.yml").read_text())
    assert (recorded["app_name"], recorded["age_public_key"], recorded["adopt"]) == (APP, age_key.public, False)
    assert f"App '{APP}' is ready" in output


def test_an_app_already_under_the_template_is_refused_at_the_prompt(tmp_path: Path, age_key: AgeKey) -> None:
    repo = new_monorepo(tmp_path / "repo", answers(age_key))
    code, output = at_the_prompts(repo, [APP], timeout=30)
    assert f"'{APP}' is already under the template: use copier update, not copy." in output
    assert code != 0  # the prompt keeps asking; the test's terminal closes it
