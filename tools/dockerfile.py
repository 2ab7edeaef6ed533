"""Read what a rendered Dockerfile makes the container do, for tests that run it without Docker."""

from __future__ import annotations

import json
import re


def instructions(dockerfile: str) -> list[str]:
    """The Dockerfile's instructions, each on one line (continuation lines joined as Docker joins them)."""
    joined = re.sub(r"\\\n", "", dockerfile)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def entrypoint(dockerfile: str) -> list[str]:
    """The runtime stage's ENTRYPOINT (exec form). Run in a copy of the app folder (what `COPY . .` puts
    in /app) with the app's virtualenv first on PATH (the image's /app/.venv/bin), it is what the
    container runs."""
    runtime = dockerfile[dockerfile.index("AS runtime") :]
    [*_, last] = [line for line in instructions(runtime) if line.startswith("ENTRYPOINT ")]
    return list(json.loads(last.removeprefix("ENTRYPOINT ")))


def runs_after_copy(dockerfile: str) -> list[str]:
    """The shell commands of the runtime stage's RUN instructions after `COPY . .`: what the build does
    to the app folder once it is in /app."""
    runtime = instructions(dockerfile[dockerfile.index("AS runtime") :])
    after = runtime[runtime.index("COPY . .") + 1 :]
    return [line.removeprefix("RUN ") for line in after if line.startswith("RUN ")]
