"""Secrets end to end with the real tools: .sops.yaml rules, scripts/env_secrets.py, the guards
(scripts/check_secrets.py, through real pre-commit too). The image side is in test_container.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import APP, AgeKey, answers, commit_all, new_age_key, new_monorepo, require_tool, run

SETTINGS = 'API_KEY=sk-123\nENDPOINT_SECRET="with space # and hash"\n'


@pytest.fixture
def repo(tmp_path: Path, age_key: AgeKey) -> Path:
    return new_monorepo(tmp_path / "repo", answers(age_key))


@pytest.fixture
def per_env_repo(tmp_path: Path, age_key: AgeKey) -> Path:
    return new_monorepo(
        tmp_path / "repo", answers(age_key, per_environment_env_files=True, environments=["dev", "prod"])
    )


def secrets(repo: Path, *args: str, check: bool = True, **env: str):
    return run("python3", "scripts/env_secrets.py", *args, cwd=repo, check=check, **env)


def guard(repo: Path, *files: str):
    return run("python3", "scripts/check_secrets.py", *files, cwd=repo, check=False)


def sops_dotenv(*args: str | Path, cwd: Path | None = None, **env: str) -> str:
    """Real sops with the dotenv types, as the image and the helper script call it; returns stdout."""
    return run(require_tool("sops"), "--input-type", "dotenv", "--output-type", "dotenv", *args, cwd=cwd, **env).stdout


def recipients(path: Path) -> set[str]:
    return {line.split("=", 1)[1] for line in path.read_text().splitlines() if "__map_recipient=" in line}


# ---- .sops.yaml ---------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["root", "app folder"])
def test_plain_sops_needs_no_key_flag(repo: Path, age_key: AgeKey, where: str) -> None:
    (repo / APP / ".env").write_text(SETTINGS)
    cwd, path = (repo, f"{APP}/.env") if where == "root" else (repo / APP, ".env")
    (repo / APP / ".env.enc").write_text(sops_dotenv("--encrypt", path, cwd=cwd))
    assert recipients(repo / APP / ".env.enc") == {age_key.public}
    assert guard(repo, f"{APP}/.env.enc").returncode == 0


# ---- scripts/env_secrets.py ---------------------------------------------------------------


def test_new_encrypt_decrypt_round_trip(repo: Path, age_key: AgeKey) -> None:
    assert "created" in secrets(repo, "new", APP).stdout
    assert (repo / APP / ".env").read_text() == (repo / APP / ".env.example").read_text()
    (repo / APP / ".env").write_text(SETTINGS)
    secrets(repo, "encrypt", APP)
    encrypted = (repo / APP / ".env.enc").read_text()
    assert "sk-123" not in encrypted
    assert recipients(repo / APP / ".env.enc") == {age_key.public}
    (repo / APP / ".env").unlink()
    secrets(repo, "decrypt", APP, SOPS_AGE_KEY=age_key.private)
    assert (repo / APP / ".env").read_text() == SETTINGS
    assert (repo / APP / ".env").stat().st_mode & 0o777 == 0o600


def test_per_environment_files(per_env_repo: Path, age_key: AgeKey) -> None:
    (per_env_repo / APP / ".env.prod").write_text(SETTINGS)
    secrets(per_env_repo, "encrypt", APP, "prod")
    encrypted = per_env_repo / APP / ".env.prod.enc"
    assert encrypted.read_text().startswith("API_KEY=ENC[")  # dotenv, not sops' binary JSON
    assert (per_env_repo / APP / ".env.dev.enc").read_text() == ""
    assert guard(per_env_repo, f"{APP}/.env.prod.enc", f"{APP}/.env.dev.enc").returncode == 0
    assert sops_dotenv("--decrypt", encrypted, SOPS_AGE_KEY=age_key.private) == SETTINGS


@pytest.mark.parametrize(
    ("fixture", "args", "message"),
    [
        ("repo", ["encrypt", APP, "prod"], "uses one .env.enc for every environment"),
        ("per_env_repo", ["encrypt", APP], "one env file per environment: name one of dev, prod"),
        ("per_env_repo", ["encrypt", APP, "qa"], "has no environment 'qa'"),
        ("repo", ["encrypt", "nope"], "'nope' is not an app of this repository"),
        ("repo", ["encrypt", APP], f"{APP}/.env not found"),
        ("repo", ["decrypt", APP], ""),  # empty .env.enc decrypts to an empty .env
        ("repo", ["edit", APP], "is empty (no secrets yet)"),
    ],
)
def test_helper_refuses_mistakes_clearly(
    request: pytest.FixtureRequest, fixture: str, args: list[str], message: str
) -> None:
    repo = request.getfixturevalue(fixture)
    result = secrets(repo, *args, check=False)
    if message:
        assert result.returncode == 1, result.stderr
        assert message in result.stderr
    else:
        assert result.returncode == 0, result.stderr


def test_edit_reencrypts_through_sops_with_the_editor(repo: Path, age_key: AgeKey, tmp_path: Path) -> None:
    (repo / APP / ".env").write_text(SETTINGS)
    secrets(repo, "encrypt", APP)
    editor = tmp_path / "editor.sh"  # what a person does in $EDITOR: add a line, save, quit
    editor.write_text('#!/bin/sh\necho "NEW_SETTING=added" >> "$1"\n')
    editor.chmod(0o755)
    secrets(repo, "edit", APP, SOPS_AGE_KEY=age_key.private, EDITOR=str(editor))
    encrypted = (repo / APP / ".env.enc").read_text()
    assert "added" not in encrypted
    assert guard(repo, f"{APP}/.env.enc").returncode == 0
    assert (
        sops_dotenv("--decrypt", repo / APP / ".env.enc", SOPS_AGE_KEY=age_key.private)
        == SETTINGS + "NEW_SETTING=added\n"
    )


def test_decrypt_needs_the_private_key(repo: Path) -> None:
    (repo / APP / ".env").write_text(SETTINGS)
    secrets(repo, "encrypt", APP)
    (repo / APP / ".env").unlink()
    result = secrets(repo, "decrypt", APP, check=False, SOPS_AGE_KEY="", SOPS_AGE_KEY_FILE="")
    assert result.returncode == 1
    assert "needs the private key" in result.stderr
    wrong = secrets(repo, "decrypt", APP, check=False, SOPS_AGE_KEY=new_age_key().private)
    assert wrong.returncode == 1
    assert "could not decrypt" in wrong.stderr
    assert not (repo / APP / ".env").exists(), "a failed decrypt must not leave a file"


def test_failed_encrypt_leaves_the_previous_file(repo: Path) -> None:
    (repo / APP / ".env").write_text(SETTINGS)
    secrets(repo, "encrypt", APP)
    before = (repo / APP / ".env.enc").read_text()
    (repo / ".sops.yaml").write_text("creation_rules:\n  - path_regex: nothing-matches$\n    age: age1x\n")
    result = secrets(repo, "encrypt", APP, check=False)
    assert result.returncode == 1
    assert "could not encrypt" in result.stderr
    assert (repo / APP / ".env.enc").read_text() == before
    assert sorted(p.name for p in (repo / APP).glob(".env*")) == [".env", ".env.enc", ".env.example"]


# ---- scripts/check_secrets.py -------------------------------------------------------------


def encrypted_for(repo: Path, *keys: AgeKey) -> str:
    """SETTINGS encrypted by real sops for `keys`, outside the repository (no .sops.yaml rules)."""
    scratch = repo.parent / "scratch"
    scratch.mkdir(exist_ok=True)
    (scratch / "plain.env").write_text(SETTINGS)
    return sops_dotenv("--encrypt", "--age", ",".join(k.public for k in keys), "plain.env", cwd=scratch)


def without(text: str, fragment: str) -> str:
    return "\n".join(line for line in text.splitlines() if fragment not in line) + "\n"


CONFLICT = "a: 1\n<<<<<<< before updating\nb: 2\n=======\nb: 3\n>>>>>>> after updating\n"
CASES: dict[str, tuple[str, Callable[[Path, AgeKey], str], str]] = {
    "plain-env": (f"{APP}/.env", lambda r, k: SETTINGS, "plain env file"),
    "plain-env-per-environment": (f"{APP}/.env.prod", lambda r, k: SETTINGS, "plain env file"),
    "enc-never-encrypted": (f"{APP}/.env.enc", lambda r, k: SETTINGS, "API_KEY is in clear text"),
    "enc-one-value-in-clear": (
        f"{APP}/.env.enc",
        lambda r, k: encrypted_for(r, k) + "EXTRA=oops\n",
        "EXTRA is in clear text",
    ),
    "enc-no-mac": (f"{APP}/.env.enc", lambda r, k: without(encrypted_for(r, k), "sops_mac"), "no sops_mac"),
    "enc-no-recipient": (f"{APP}/.env.enc", lambda r, k: without(encrypted_for(r, k), "recipient"), "no age recipient"),
    "enc-binary-json": (f"{APP}/.env.dev.enc", lambda r, k: '{\n "data": "ENC[...]"\n}\n', "sops wrote JSON"),
    "enc-foreign-key": (f"{APP}/.env.enc", lambda r, k: encrypted_for(r, new_age_key()), "not for the repository key"),
    "enc-extra-recipient": (
        f"{APP}/.env.enc",
        lambda r, k: encrypted_for(r, k, new_age_key()),
        "other recipients: age1",
    ),
    "conflict-markers": (".github/workflows/x.yaml", lambda r, k: CONFLICT, "merge-conflict markers on lines 2, 6"),
}


@pytest.mark.parametrize("case", CASES)
def test_guard_refuses_bad_files(repo: Path, age_key: AgeKey, case: str) -> None:
    path, make, message = CASES[case]
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_text(make(repo, age_key))
    result = guard(repo, path)
    assert result.returncode == 1
    problems = [line for line in result.stderr.splitlines() if line.startswith(f"{path}: ")]
    assert any(message in line for line in problems), result.stderr


def test_guard_accepts_good_files(repo: Path, age_key: AgeKey) -> None:
    (repo / APP / ".env.enc").write_text(encrypted_for(repo, age_key))
    (repo / APP / ".env.dev.enc").write_text("")  # empty: no secrets yet
    assert guard(repo, f"{APP}/.env.enc", f"{APP}/.env.dev.enc", f"{APP}/.env.example", "README.md").returncode == 0
    commit_all(repo)
    result = run("python3", "scripts/check_secrets.py", "--all", cwd=repo, check=False)
    assert result.returncode == 0, result.stderr


def test_pre_commit_runs_the_guards(repo: Path, age_key: AgeKey) -> None:
    pre_commit = require_tool("pre-commit")
    (repo / APP / ".env").write_text(SETTINGS)
    run("git", "add", "-f", f"{APP}/.env", cwd=repo)
    refused = run(pre_commit, "run", cwd=repo, check=False)
    assert refused.returncode == 1
    assert "plain env file" in refused.stdout + refused.stderr
    run("git", "rm", "-q", "--cached", f"{APP}/.env", cwd=repo)
    run("python3", "scripts/env_secrets.py", "encrypt", APP, cwd=repo)
    run("git", "add", f"{APP}/.env.enc", cwd=repo)
    accepted = run(pre_commit, "run", cwd=repo, check=False)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
