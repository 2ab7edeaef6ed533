"""The shared Dockerfiles, their ignore files and each app's docker-compose.yaml, as rendered."""

from __future__ import annotations

import re
from pathlib import Path

import pathspec
import pytest
import yaml

from tools import dockerfile

from .conftest import APP, PYTHONS, TEMPLATE, AgeKey, answers, render, require_tool, run
from .test_secrets import NAMES


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.local"])
def test_hadolint_passes_at_warning_level(per_python: dict[str, Path], python: str, dockerfile: str) -> None:
    result = run(
        require_tool("hadolint"), "--failure-threshold", "warning", per_python[python] / dockerfile, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("python", PYTHONS)
def test_base_image_is_a_pinned_slim_python(per_python: dict[str, Path], python: str) -> None:
    for name in ["Dockerfile", "Dockerfile.local"]:
        images = re.findall(r"^FROM (\S+) AS base$", (per_python[python] / name).read_text(), re.MULTILINE)
        assert len(images) == 1
        assert re.fullmatch(rf"python:{re.escape(python)}\.\d+-slim-bookworm", images[0])


def test_production_dockerfile_honours_the_action_contract(monorepo: Path) -> None:
    text = (monorepo / "Dockerfile").read_text()
    args = set(re.findall(r"^ARG (\w+)", text, re.MULTILINE))
    assert {"MODULE", "APP_NAME", "ENCRYPTED_ENV_FILE", "POETRY_VERSION", "SOPS_VERSION"} <= args
    assert "EXPOSE 8080" in text
    assert "PORT=8080" in text
    assert re.search(r"^USER app$", text, re.MULTILINE), "must run as the non-root user"
    # Every container starts the same way in both images: the app's own start program (copied with
    # the app folder), else, for a hand-made app without one, sops --decrypt and gunicorn.
    command = dockerfile.entrypoint(text)
    assert command[:2] == ["/bin/sh", "-c"]
    assert command[2].startswith('if [ -f sdk_runtime/start.py ]; then exec python -m sdk_runtime.start "$@"; fi;')
    assert dockerfile.entrypoint((monorepo / "Dockerfile.local").read_text()) == command
    assert (monorepo / APP / "sdk_runtime" / "start.py").read_text() == (
        TEMPLATE / "template/{{app_name}}/sdk_runtime/start.py"
    ).read_text(), "every app carries the start program as written"
    assert "printf" not in text
    # Only an app without the start program (hand-made) gets the .env link its load_dotenv() reads.
    assert dockerfile.runs_after_copy(text)[-1] == "[ -d sdk_runtime ] || ln -s /dev/shm/settings.env .env"
    # Dependencies install from pyproject.toml + poetry.lock alone, before the app code is copied.
    deps = text[text.index("AS deps") : text.index("AS runtime")]
    assert "COPY pyproject.toml poetry.lock ./" in deps
    assert "COPY . ." not in deps
    assert "poetry install --only main --no-root" in deps
    runtime = text[text.index("AS runtime") :]
    assert "poetry" not in runtime.replace("POETRY_VERSION", ""), "Poetry stays out of the runtime image"
    assert "sha256sum --check" in text, "sops must be checksum-verified"


def test_local_dockerfile_says_it_is_local_only(monorepo: Path) -> None:
    head = (monorepo / "Dockerfile.local").read_text().splitlines()[:4]
    assert any("LOCAL DEVELOPMENT ONLY" in line and "never use this file to deploy" in line for line in head)
    text = (monorepo / "Dockerfile.local").read_text()
    instructions = [line for line in text.splitlines() if line.startswith(("FROM", "COPY", "ADD", "ARG", "ENV"))]
    assert not [line for line in instructions if "sops" in line.lower()], "local images carry no sops"
    assert re.search(r"^ENV ENCRYPTED_ENV_FILE=$", text, re.MULTILINE), "nothing to decrypt locally"


@pytest.mark.parametrize(
    "ignore_file", ["Dockerfile.dockerignore", "Dockerfile.local.dockerignore", f"{APP}/.dockerignore"]
)
def test_build_context_leaves_secrets_and_tests_out(monorepo: Path, ignore_file: str) -> None:
    """The image gets what the app runs, never a plain env file, a key file or the tests (test_secrets' table)."""
    spec = pathspec.PathSpec.from_lines("gitignore", (monorepo / ignore_file).read_text().splitlines())
    for folder in ["", f"{APP}/"]:  # the context root and the app's package
        for name, kind in NAMES.items():
            left_out = kind in ("plain", "key") or name == ".env.example"  # committed, never in an image
            assert spec.match_file(folder + name) == left_out, f"{folder}{name} ({kind})"
    for path in [".venv/bin/python", "tests/test_webhook.py", "tests/conftest.py", f"{APP}/__pycache__/app.pyc"]:
        assert spec.match_file(path), f"{path} would reach the image"
    for path in [f"{APP}/__init__.py", f"{APP}/handler.py", "pyproject.toml", "poetry.lock", "gunicorn.conf.py"]:
        assert not spec.match_file(path), f"{path} must reach the image"


def test_compose_file_is_valid_and_wired_to_the_local_dockerfile(monorepo: Path) -> None:
    compose = monorepo / APP / "docker-compose.yaml"
    run(require_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", compose)
    service = yaml.safe_load(compose.read_text())["services"][APP]
    assert service["build"] == {"context": ".", "dockerfile": "../Dockerfile.local", "args": {"MODULE": APP}}
    port = yaml.safe_load((monorepo / APP / ".copier-answers.yml").read_text())["local_port"]
    # Only this machine reaches it: without ENDPOINT_SECRET the app accepts unsigned events.
    assert service["ports"] == [f"127.0.0.1:{port}:8080"]  # the default follows the app name (tests/test_doctor.py)
    assert service["env_file"] == [{"path": ".env", "required": False}]


def test_compose_port_follows_the_answer(tmp_path: Path, age_key: AgeKey) -> None:
    render(tmp_path, answers(age_key, local_port=8123))
    assert yaml.safe_load((tmp_path / APP / "docker-compose.yaml").read_text())["services"][APP]["ports"] == [
        "127.0.0.1:8123:8080"
    ]
