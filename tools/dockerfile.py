"""Read what a rendered Dockerfile makes the container do, for tests that run it without Docker."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

START_SCRIPT = re.compile(
    r"^RUN mkdir -p \S+ && printf '%s\\n' \\\n(?P<lines>(?:    .*\\\n)+)    > (?P<path>\S+)$", re.M
)


def start_script(dockerfile: str) -> tuple[str, str]:
    """(path in the image, text) of the start script the runtime stage writes with printf."""
    match = START_SCRIPT.search(dockerfile)
    if not match:
        raise AssertionError("no start script (RUN ... printf '%s\\n' ... > path) in the Dockerfile")
    lines = [
        shlex.split(line.rstrip("\\").strip())[0] if line.strip() != "''\\" else ""
        for line in match["lines"].splitlines()
    ]
    return match["path"], "\n".join(lines) + "\n"


def entrypoint(dockerfile: str) -> list[str]:
    """The runtime stage's ENTRYPOINT (exec form)."""
    runtime = dockerfile[dockerfile.index("AS runtime") :]
    return list(json.loads(re.findall(r"^ENTRYPOINT (\[.*\])$", runtime, re.M)[-1]))


def entrypoint_here(dockerfile: str, directory: Path) -> list[str]:
    """The ENTRYPOINT, runnable outside the image: the start script written to `directory`, run by the
    `python` first on PATH (in the image: the app's /app/.venv/bin/python)."""
    path, script = start_script(dockerfile)
    local = directory / Path(path).name
    local.write_text(script)
    return [str(local) if part == path else part for part in entrypoint(dockerfile)]
