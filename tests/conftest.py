"""Shared fixtures: age keys, renders through copier's API (no trust), and one installed app."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import copier
import pyrage
import pytest
import yaml

from tools import pins
from tools.template_repo import commit_all, init_repository

TEMPLATE = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent  # sops, hadolint, zizmor, check-jsonschema, poetry, pre-commit live here
APP = "joke_of_the_day"


@dataclass(frozen=True)
class AgeKey:
    private: str
    public: str


def new_age_key() -> AgeKey:
    identity = pyrage.x25519.Identity.generate()
    return AgeKey(private=str(identity), public=str(identity.to_public()))


@pytest.fixture(scope="session")
def age_key() -> AgeKey:
    return new_age_key()


def tool_env(**extra: str) -> dict[str, str]:
    """The environment for subprocesses: this venv's tools first on PATH."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", **extra}
    env.pop("VIRTUAL_ENV", None)
    return env


def run(
    *command: str | Path, cwd: Path | None = None, check: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=tool_env(**env), capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, command))} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def answers(key: AgeKey, **overrides: Any) -> dict[str, Any]:
    return {"app_name": APP, "age_public_key": key.public, **overrides}


def render(dst: Path, data: dict[str, Any], src: Path | str = TEMPLATE, **kwargs: Any) -> Path:
    """`copier copy` of the working tree, exactly as a user runs it: no trust, defaults for the rest."""
    kwargs.setdefault("vcs_ref", "HEAD")
    copier.run_copy(str(src), dst, data=data, defaults=True, unsafe=False, quiet=True, **kwargs)
    return dst


def new_monorepo(tmp: Path, data: dict[str, Any], **kwargs: Any) -> Path:
    """A git repository with one rendered app, committed (copier update needs a clean tree)."""
    repo = init_repository(tmp)
    render(repo, data, **kwargs)
    commit_all(repo, f"Add {data['app_name']}")
    return repo


def files_of(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="session")
def monorepo(tmp_path_factory: pytest.TempPathFactory, age_key: AgeKey) -> Path:
    """The default render (environments dev and prod), shared by read-only tests."""
    return new_monorepo(tmp_path_factory.mktemp("monorepo"), answers(age_key))


PYTHONS: list[str] = pins.pythons()


@pytest.fixture(scope="session")
def per_python(tmp_path_factory: pytest.TempPathFactory, age_key: AgeKey) -> dict[str, Path]:
    """One render per supported Python, shared by the Dockerfile and lock-file tests (read-only)."""
    return {v: render(tmp_path_factory.mktemp(f"py{v}"), answers(age_key, python_version=v)) for v in PYTHONS}


# ---- Running the generated app ------------------------------------------------------------


@dataclass(frozen=True)
class InstalledApp:
    repo: Path
    folder: Path
    key: AgeKey

    @property
    def bin(self) -> Path:
        return self.folder / ".venv" / "bin"


def poetry_install(folder: Path, *args: str) -> None:
    run(
        sys.executable,
        "-m",
        "poetry",
        "install",
        "--no-interaction",
        *args,
        cwd=folder,
        POETRY_VIRTUALENVS_IN_PROJECT="true",
        POETRY_NO_INTERACTION="1",
    )


@pytest.fixture(scope="session")
def installed_app(tmp_path_factory: pytest.TempPathFactory) -> InstalledApp:
    """One app rendered for Python 3.11 (what runs here) and installed from its lock file with Poetry."""
    key = new_age_key()
    repo = new_monorepo(tmp_path_factory.mktemp("installed"), answers(key, python_version="3.11"))
    poetry_install(repo / APP)
    return InstalledApp(repo=repo, folder=repo / APP, key=key)


@pytest.fixture
def spawn() -> Iterator[Any]:
    """Start long-running processes (servers) that are always stopped after the test."""
    processes: list[subprocess.Popen[str]] = []

    def start(command: list[str | Path], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [str(c) for c in command],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            # A shell that starts the suite in the background (`cmd &`) ignores SIGINT in it, and its
            # children inherit that: the tests that press Ctrl+C need the default handler back.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, 15)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)


# What a bare machine lacks: the tools that must arrive on demand from PyPI (through uv).
NOT_ON_A_BARE_MACHINE = ("sops", "age", "age-keygen", "copier", "poetry", "pre-commit", "pipx", "uv", "uvx")
SYSTEM_PATH = "/usr/bin:/bin"  # stock Debian/Ubuntu: git, python3, a shell and coreutils


def bare_machine_path(folder: Path, *tools: str) -> str:
    """PATH of a stock Debian/Ubuntu machine with git and python3, plus `tools` from this venv (e.g. uv, uvx)."""
    present = [name for name in NOT_ON_A_BARE_MACHINE if shutil.which(name, path=SYSTEM_PATH)]
    if present:
        pytest.skip(f"{SYSTEM_PATH} holds {', '.join(present)}: not a bare machine")
    folder.mkdir(parents=True, exist_ok=True)
    for tool in tools:
        if not (folder / tool).exists():
            (folder / tool).symlink_to(require_tool(tool))
    return f"{folder}{os.pathsep}{SYSTEM_PATH}"


def require_tool(name: str) -> str:
    path = shutil.which(name, path=str(VENV_BIN)) or shutil.which(name)
    assert path, f"{name} is not installed: run ./scripts/test (it installs the dev dependencies)"
    return path
