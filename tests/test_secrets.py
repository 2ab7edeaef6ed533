"""Secrets end to end with the real tools: .sops.yaml rules, scripts/env_secrets.py, the guards
(scripts/check_secrets.py, through real pre-commit and git commit too), the ignore files, and the
README's own commands. The image side is in test_container.py."""

from __future__ import annotations

import importlib
import importlib.util
import io
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import (
    APP,
    AgeKey,
    answers,
    commit_all,
    files_of,
    new_age_key,
    new_monorepo,
    render,
    require_tool,
    run,
    tool_env,
)

SETTINGS = 'API_KEY=sk-123\nENDPOINT_SECRET="with space # and hash"\n'
LEAK = "S3CRET-do-not-print"  # a value that no message may ever show
DEPLOY = ".env.deploy"  # the deployed settings, plain (local runs read .env)


@pytest.fixture
def repo(tmp_path: Path, age_key: AgeKey) -> Path:
    return new_monorepo(tmp_path / "repo", answers(age_key))


@pytest.fixture
def per_env_repo(tmp_path: Path, age_key: AgeKey) -> Path:
    return new_monorepo(
        tmp_path / "repo", answers(age_key, per_environment_env_files=True, environments=["dev", "prod"])
    )


def secrets(repo: Path, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    return run("python3", "scripts/env_secrets.py", *args, cwd=repo, check=check, **env)


def guard(repo: Path, *files: str) -> subprocess.CompletedProcess[str]:
    return run("python3", "scripts/check_secrets.py", *files, cwd=repo, check=False)


def sops_dotenv(*args: str | Path, cwd: Path | None = None, **env: str) -> str:
    """Real sops with the dotenv types, as the image and the helper script call it; returns stdout."""
    return run(require_tool("sops"), "--input-type", "dotenv", "--output-type", "dotenv", *args, cwd=cwd, **env).stdout


def recipients(path: Path) -> set[str]:
    return {line.split("=", 1)[1] for line in path.read_text().splitlines() if "__map_recipient=" in line}


def without_sops_keys(home: Path, **env: str) -> dict[str, str]:
    """A user's environment with no SOPS_AGE_* variables and `home` as HOME: sops must use its key file."""
    base = {k: v for k, v in tool_env(HOME=str(home), **env).items() if not k.startswith("SOPS_AGE_")}
    return {k: v for k, v in base.items() if k != "XDG_CONFIG_HOME" or "XDG_CONFIG_HOME" in env}


def sh_block(readme: Path, heading: str) -> list[str]:
    """The lines of the first ```sh block after `heading` in a rendered README."""
    text = readme.read_text()
    section = text[text.index(heading) :]
    start = section.index("```sh\n") + len("```sh\n")
    return [line for line in section[start : section.index("```", start)].splitlines() if line.strip()]


# ---- .sops.yaml ---------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["root", "app folder"])
def test_plain_sops_needs_no_key_flag(repo: Path, age_key: AgeKey, where: str) -> None:
    (repo / APP / ".env").write_text(SETTINGS)
    cwd, path = (repo, f"{APP}/.env") if where == "root" else (repo / APP, ".env")
    (repo / APP / ".env.enc").write_text(sops_dotenv("--encrypt", path, cwd=cwd))
    assert recipients(repo / APP / ".env.enc") == {age_key.public}
    assert guard(repo, f"{APP}/.env.enc").returncode == 0


# ---- The README, followed literally --------------------------------------------------------


@pytest.mark.parametrize("per_environment", [False, True], ids=["one-file", "per-environment"])
def test_readme_secret_steps_work_as_written(tmp_path: Path, age_key: AgeKey, per_environment: bool) -> None:
    """new, fill ONE key in $EDITOR, encrypt, git add, git commit through the pre-commit hook."""
    data = answers(age_key, per_environment_env_files=per_environment, environments=["dev", "prod"])
    repo = new_monorepo(tmp_path / "repo", data)
    readme = repo / "APPS.md"
    [install] = re.findall(r"`(\S+ pre-commit install)` once per clone", readme.read_text())
    run("bash", "-c", install, cwd=repo)  # uvx pre-commit install: pre-commit from PyPI, on demand
    editor = tmp_path / "fill-one-key"  # what a person does in $EDITOR: fill in the one key they have
    editor.write_text(
        f"#!/usr/bin/env python3\nimport pathlib, sys\np = pathlib.Path(sys.argv[1])\n"
        f"p.write_text(p.read_text().replace('\\nUNIQUE_APP_KEY=\\n', '\\nUNIQUE_APP_KEY={LEAK}\\n'))\n"
    )
    editor.chmod(0o755)
    env = "dev" if per_environment else ""
    steps = sh_block(readme, '## From "I have a secret"')
    assert len(steps) == 4
    for step in steps:
        command = step.replace("<app>", APP).replace(" [<env>]", f" {env}" * bool(env))
        command = command.replace("[.<env>]", f".{env}" * bool(env))
        command = command.replace(f"{APP}/.env.deploy", f"{APP}/.env.{env}" if env else f"{APP}/.env.deploy")
        result = run("bash", "-c", command, cwd=repo, check=False, EDITOR=str(editor))
        assert result.returncode == 0, f"{step}\n{result.stdout}\n{result.stderr}"
    assert "no secrets in clear text" in result.stdout + result.stderr, "the commit ran the pre-commit hook"
    name = f".env.{env}.enc" if env else ".env.enc"
    committed = run("git", "show", f"HEAD:{APP}/{name}", cwd=repo).stdout
    assert LEAK not in committed
    assert "\nUNIQUE_APP_ENDPOINT_SECRET=\n" in committed, "an empty value stays empty (sops leaves it in clear)"
    decrypted = sops_dotenv("--decrypt", repo / APP / name, SOPS_AGE_KEY=age_key.private)
    assert f"\nUNIQUE_APP_KEY={LEAK}\n" in decrypted
    assert run("python3", "scripts/check_secrets.py", "--all", cwd=repo, check=False).returncode == 0


# ---- scripts/env_secrets.py ---------------------------------------------------------------


def test_new_encrypt_decrypt_round_trip(repo: Path, age_key: AgeKey) -> None:
    assert "created" in secrets(repo, "new", APP).stdout
    assert (repo / APP / DEPLOY).read_text() == (repo / APP / ".env.example").read_text()
    (repo / APP / DEPLOY).write_text(SETTINGS)
    secrets(repo, "encrypt", APP)
    encrypted = (repo / APP / ".env.enc").read_text()
    assert "sk-123" not in encrypted
    assert recipients(repo / APP / ".env.enc") == {age_key.public}
    # Encrypted: readable by the image's user when an image is built from the working tree.
    assert (repo / APP / ".env.enc").stat().st_mode & 0o777 == 0o644
    (repo / APP / DEPLOY).unlink()
    secrets(repo, "decrypt", APP, SOPS_AGE_KEY=age_key.private)
    assert (repo / APP / DEPLOY).read_text() == SETTINGS
    assert (repo / APP / DEPLOY).stat().st_mode & 0o777 == 0o600


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
        ("repo", ["encrypt", APP], f"{APP}/.env.deploy not found"),
        ("repo", ["decrypt", APP], ""),  # empty .env.enc decrypts to an empty .env.deploy
        ("repo", ["local", APP, "prod"], "local takes no environment"),
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
    (repo / APP / DEPLOY).write_text(SETTINGS)
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
    # The plain copy follows the edit, so encrypting it again (as the docs' other way does) keeps the edit.
    assert (repo / APP / DEPLOY).read_text() == SETTINGS + "NEW_SETTING=added\n"
    secrets(repo, "encrypt", APP)
    assert "NEW_SETTING=added" in sops_dotenv("--decrypt", repo / APP / ".env.enc", SOPS_AGE_KEY=age_key.private)


def test_edit_refuses_while_a_different_plain_copy_would_undo_it(repo: Path, age_key: AgeKey) -> None:
    (repo / APP / DEPLOY).write_text(SETTINGS)
    secrets(repo, "encrypt", APP)
    (repo / APP / DEPLOY).write_text(SETTINGS + "NOT_YET_ENCRYPTED=1\n")
    before = (repo / APP / ".env.enc").read_text()
    result = secrets(repo, "edit", APP, check=False, SOPS_AGE_KEY=age_key.private, EDITOR="true")
    assert result.returncode != 0
    assert f"{APP}/{DEPLOY} differs from {APP}/.env.enc: encrypt it first, or move it away" in result.stderr
    assert (repo / APP / ".env.enc").read_text() == before


@pytest.mark.parametrize("config", ["HOME", "XDG_CONFIG_HOME"])
def test_decrypt_and_edit_find_the_key_where_the_readme_puts_it(
    repo: Path, age_key: AgeKey, tmp_path: Path, config: str
) -> None:
    """The README's key file (One-time setup) is where sops and env_secrets.py look, with no SOPS_AGE_*."""
    readme = (repo / "APPS.md").read_text()
    home = tmp_path / "home"
    if config == "HOME":
        [linux_path] = re.findall(r"`(~/\.config/\S+)` on Linux", readme)  # the Linux default
        key_file, env = home / linux_path.removeprefix("~/"), without_sops_keys(home)
    else:
        assert "`$XDG_CONFIG_HOME/sops/age/keys.txt`" in readme
        key_file = tmp_path / "xdg" / "sops" / "age" / "keys.txt"
        env = without_sops_keys(home, XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    key_file.parent.mkdir(parents=True)
    key_file.write_text(f"# public key: {age_key.public}\n{age_key.private}\n")  # as age-keygen writes it
    (repo / APP / DEPLOY).write_text(SETTINGS)
    secrets(repo, "encrypt", APP)
    (repo / APP / DEPLOY).unlink()

    def helper(*args: str) -> subprocess.CompletedProcess[str]:
        command = ["python3", "scripts/env_secrets.py", *args]
        return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, check=False)

    decrypted = helper("decrypt", APP)
    assert decrypted.returncode == 0, decrypted.stderr
    assert (repo / APP / DEPLOY).read_text() == SETTINGS
    editor = tmp_path / "editor.sh"
    editor.write_text('#!/bin/sh\necho "EDITED=yes" >> "$1"\n')
    editor.chmod(0o755)
    env["EDITOR"] = str(editor)
    edited = helper("edit", APP)
    assert edited.returncode == 0, edited.stderr
    assert "EDITED=yes" in sops_dotenv("--decrypt", repo / APP / ".env.enc", SOPS_AGE_KEY=age_key.private)


def test_decrypt_without_a_key_says_where_the_key_goes(repo: Path, tmp_path: Path) -> None:
    (repo / APP / DEPLOY).write_text(SETTINGS)
    secrets(repo, "encrypt", APP)
    (repo / APP / DEPLOY).unlink()
    env = without_sops_keys(tmp_path / "home")
    result = subprocess.run(
        ["python3", "scripts/env_secrets.py", "decrypt", APP], cwd=repo, env=env, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "needs the repository's private age key" in result.stderr
    assert f"put it in sops' key file {tmp_path / 'home/.config/sops/age/keys.txt'}" in result.stderr
    wrong = secrets(repo, "decrypt", APP, check=False, SOPS_AGE_KEY=new_age_key().private)
    assert wrong.returncode == 1
    assert "could not decrypt" in wrong.stderr
    assert not (repo / APP / DEPLOY).exists(), "a failed decrypt must not leave a file"


def test_failed_encrypt_leaves_the_previous_file(repo: Path) -> None:
    (repo / APP / DEPLOY).write_text(SETTINGS)
    secrets(repo, "encrypt", APP)
    before = (repo / APP / ".env.enc").read_text()
    (repo / ".sops.yaml").write_text("creation_rules:\n  - path_regex: nothing-matches$\n    age: age1x\n")
    result = secrets(repo, "encrypt", APP, check=False)
    assert result.returncode == 1
    assert "could not encrypt" in result.stderr
    assert (repo / APP / ".env.enc").read_text() == before
    assert sorted(p.name for p in (repo / APP).glob(".env*")) == [DEPLOY, ".env.enc", ".env.example"]


def test_local_settings_are_apart_from_deployed_ones(repo: Path, age_key: AgeKey) -> None:
    """Local runs read <app>/.env; the deployed settings come from .env.deploy and never touch it."""
    assert "local runs" in secrets(repo, "local", APP).stdout
    assert (repo / APP / ".env").read_text() == (repo / APP / ".env.example").read_text()
    local = (repo / APP / ".env").read_text()
    secrets(repo, "new", APP)
    (repo / APP / DEPLOY).write_text(f"API_KEY=sk-123\nENDPOINT_SECRET={LEAK}\n")
    secrets(repo, "encrypt", APP)
    assert (repo / APP / ".env").read_text() == local, "encrypting the deployed settings leaves .env alone"
    assert LEAK in sops_dotenv("--decrypt", repo / APP / ".env.enc", SOPS_AGE_KEY=age_key.private)
    again = secrets(repo, "local", APP, check=False)
    assert again.returncode == 1
    assert "exists already" in again.stderr
    # Only a local .env (the old layout): encrypt says how to move it rather than encrypting it.
    (repo / APP / DEPLOY).unlink()
    moved = secrets(repo, "encrypt", APP, check=False)
    assert moved.returncode == 1
    assert f"mv {APP}/.env {APP}/{DEPLOY}" in moved.stderr


def test_dotenv_forms_are_read_as_sops_and_the_app_read_them(repo: Path, age_key: AgeKey) -> None:
    """A byte-order mark, `export NAME=` and spaces around `=` become NAME=value; the guard accepts the result."""
    text = "\ufeffexport A=1\r\nB = two words\r\n# a comment\r\nC=\r\n"
    (repo / APP / DEPLOY).write_bytes(text.encode())
    secrets(repo, "encrypt", APP)
    encrypted = (repo / APP / ".env.enc").read_bytes()
    assert b"\r" not in encrypted, "LF on every OS"
    assert guard(repo, f"{APP}/.env.enc").returncode == 0
    plain = sops_dotenv("--decrypt", repo / APP / ".env.enc", SOPS_AGE_KEY=age_key.private)
    assert plain == "A=1\nB=two words\n# a comment\nC=\n"


def test_guard_accepts_what_sops_writes_for_export_and_spaces(repo: Path, age_key: AgeKey) -> None:
    """Plain sops on `export A=1` and `B = 2` writes those names as they are: valid, and read as A and B."""
    (repo / APP / ".env.enc").write_text(encrypted_for(repo, age_key, settings="export A=1\nB = 2\n"))
    result = guard(repo, f"{APP}/.env.enc")
    assert result.returncode == 0, result.stderr


def test_multi_line_values_are_refused_with_the_way_to_write_them(repo: Path, age_key: AgeKey) -> None:
    pem = f"-----BEGIN KEY-----\n{LEAK}\n-----END KEY-----"
    (repo / APP / DEPLOY).write_text(f'API_KEY=sk-123\nTLS_KEY="{pem}"\n')
    refused = secrets(repo, "encrypt", APP, check=False)
    assert refused.returncode == 1
    assert "lines 3, 4: not NAME=value" in refused.stderr
    assert "with \\n for each line break" in refused.stderr
    assert LEAK not in refused.stdout + refused.stderr
    assert (repo / APP / ".env.enc").read_text() == "", "nothing written"
    escaped = pem.replace("\n", "\\n")
    (repo / APP / DEPLOY).write_text(f'API_KEY=sk-123\nTLS_KEY="{escaped}"\n')
    secrets(repo, "encrypt", APP)
    # The container reads sops' output with python-dotenv, as the app reads .env locally: a real PEM.
    from dotenv import dotenv_values

    plain = sops_dotenv("--decrypt", repo / APP / ".env.enc", SOPS_AGE_KEY=age_key.private)
    assert dotenv_values(stream=io.StringIO(plain))["TLS_KEY"] == pem


def test_values_too_long_for_a_container_are_refused(repo: Path, age_key: AgeKey) -> None:
    """Linux refuses one variable over 128 KiB: env_secrets and the guard refuse it first."""
    big = "x" * (128 * 1024)
    (repo / APP / DEPLOY).write_text(f"API_KEY=sk-123\nBIG={big}\n")
    refused = secrets(repo, "encrypt", APP, check=False)
    assert refused.returncode == 1
    assert "BIG (line 2) longer than 128 KiB" in refused.stderr
    (repo / APP / ".env.enc").write_text(encrypted_for(repo, age_key, settings=f"BIG={big}\n"))
    result = guard(repo, f"{APP}/.env.enc")
    assert result.returncode == 1
    assert "BIG is longer than 128 KiB" in result.stderr
    fits = "x" * (128 * 1024 - len("FITS=") - 1)
    (repo / APP / ".env.enc").write_text(encrypted_for(repo, age_key, settings=f"FITS={fits}\n"))
    assert guard(repo, f"{APP}/.env.enc").returncode == 0


def test_sops_messages_are_never_shown(repo: Path, age_key: AgeKey) -> None:
    """sops' own message can quote the file; env_secrets says why in its own words."""
    (repo / APP / DEPLOY).write_text(f"API_KEY={LEAK}\n")
    secrets(repo, "encrypt", APP)
    text = (repo / APP / ".env.enc").read_text()
    (repo / APP / ".env.enc").write_text(text.replace("API_KEY=", "OTHER_NAME=", 1))  # the MAC no longer matches
    (repo / APP / DEPLOY).unlink()
    result = secrets(repo, "decrypt", APP, check=False, SOPS_AGE_KEY=age_key.private)
    assert result.returncode == 1
    assert "sops could not decrypt" in result.stderr
    assert LEAK not in result.stdout + result.stderr
    assert "Error" not in result.stderr, "sops' own words are withheld"


def test_guard_finds_a_merged_or_crlf_file_without_the_key(repo: Path, age_key: AgeKey) -> None:
    """What the container could not decrypt, CI finds with no key: two encryptions merged, CRLF."""
    one = encrypted_for(repo, age_key, settings="API_KEY=a\n")
    two = encrypted_for(repo, age_key, settings="API_KEY=b\nOTHER=c\n")
    body = [line for line in two.splitlines(keepends=True) if not line.startswith("sops_")]
    (repo / APP / ".env.enc").write_text("".join(body) + one)  # "keep both sides" of a conflict
    merged = guard(repo, f"{APP}/.env.enc")
    assert merged.returncode == 1
    assert "API_KEY twice: two encryptions merged" in merged.stderr
    (repo / APP / ".env.enc").write_bytes(one.replace("\n", "\r\n").encode())
    crlf = guard(repo, f"{APP}/.env.enc")
    assert crlf.returncode == 1
    assert "line 1: CRLF line ends" in crlf.stderr


def test_git_keeps_enc_files_lf_and_never_merges_them(repo: Path, age_key: AgeKey) -> None:
    """.gitattributes: a CRLF .enc file is committed LF; a conflicting change is not merged line by line."""
    attributes = run("git", "check-attr", "eol", "merge", "--", f"{APP}/.env.enc", cwd=repo).stdout
    assert "eol: lf" in attributes
    assert "merge: binary" in attributes
    text = encrypted_for(repo, age_key)
    (repo / APP / ".env.enc").write_bytes(text.replace("\n", "\r\n").encode())
    commit_all(repo)
    committed = run("git", "show", f"HEAD:{APP}/.env.enc", cwd=repo).stdout
    assert "\r" not in committed


# ---- scripts/check_secrets.py -------------------------------------------------------------


def encrypted_for(repo: Path, *keys: AgeKey, settings: str = SETTINGS) -> str:
    """`settings` encrypted by real sops for `keys`, outside the repository (no .sops.yaml rules)."""
    scratch = repo.parent / "scratch"
    scratch.mkdir(exist_ok=True)
    (scratch / "plain.env").write_text(settings)
    return sops_dotenv("--encrypt", "--age", ",".join(k.public for k in keys), "plain.env", cwd=scratch)


def without(text: str, fragment: str) -> str:
    return "\n".join(line for line in text.splitlines() if fragment not in line) + "\n"


def replaced(text: str, key: str, value: str) -> str:
    return re.sub(rf"^{key}=.*$", f"{key}={value}", text, flags=re.MULTILINE)


def load_guard(repo: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_secrets", repo / "scripts" / "check_secrets.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def metadata_keys(text: str) -> set[str]:
    """The sops_ keys of a sops dotenv file, with each recipient's index as N."""
    names = (line.split("=", 1)[0] for line in text.splitlines() if line.startswith("sops_"))
    return {re.sub(r"(?<=__list_)\d+(?=__)", "N", name) for name in names}


def test_guard_knows_exactly_the_metadata_sops_writes(repo: Path, age_key: AgeKey, tmp_path: Path) -> None:
    """The guard's table of sops metadata is what the real sops writes: one key, two keys, empty, edited."""
    (repo / APP / DEPLOY).write_text(SETTINGS)
    secrets(repo, "encrypt", APP)
    through_helper = (repo / APP / ".env.enc").read_text()
    editor = tmp_path / "editor.sh"
    editor.write_text('#!/bin/sh\necho "MORE=1" >> "$1"\n')
    editor.chmod(0o755)
    secrets(repo, "edit", APP, SOPS_AGE_KEY=age_key.private, EDITOR=str(editor))
    edited = (repo / APP / ".env.enc").read_text()
    two_keys = encrypted_for(repo, age_key, new_age_key())
    empty = encrypted_for(repo, age_key, settings="")
    written = set().union(*(metadata_keys(text) for text in [through_helper, edited, two_keys, empty]))
    assert written == set(load_guard(repo).SOPS_METADATA)
    for name, text in {".env.enc": through_helper, ".env.dev.enc": edited, ".env.qa.enc": empty}.items():
        (repo / APP / name).write_text(text)
        assert guard(repo, f"{APP}/{name}").returncode == 0, text


AGE_KEY_TEXT = "# created: 2026-01-01T00:00:00Z\n{private}\n"
CONFLICT = "a: 1\n<<<<<<< before updating\nb: 2\n=======\nb: 3\n>>>>>>> after updating\n"
Make = Callable[[Path, AgeKey], "str | bytes"]
CASES: dict[str, tuple[str, Make, str]] = {
    "plain-env": (f"{APP}/.env", lambda r, k: SETTINGS, "env file in clear text: never commit it"),
    "plain-env-per-environment": (f"{APP}/.env.prod", lambda r, k: SETTINGS, "env file in clear text"),
    "plain-envrc": (f"{APP}/.envrc", lambda r, k: f"export API_KEY={LEAK}\n", "env file in clear text"),
    "plain-upper-case": (f"{APP}/.ENV", lambda r, k: SETTINGS, "env file in clear text"),
    "plain-prod-env": (f"{APP}/prod.env", lambda r, k: SETTINGS, "env file in clear text"),
    "plain-secrets-env": ("secrets.env", lambda r, k: SETTINGS, "env file in clear text"),
    "plain-inside-env-folder": (f"{APP}/.envs/.production/django", lambda r, k: SETTINGS, "env file in clear text"),
    "enc-never-encrypted": (f"{APP}/.env.enc", lambda r, k: SETTINGS, "line 1: API_KEY is in clear text"),
    "enc-never-encrypted-metadata": (f"{APP}/.env.enc", lambda r, k: SETTINGS, "no sops metadata"),
    "enc-mixed-case-name": (f"{APP}/.env.Prod.enc", lambda r, k: SETTINGS, "API_KEY is in clear text"),
    "enc-two-dots-name": (f"{APP}/.env.a.b.enc", lambda r, k: SETTINGS, "API_KEY is in clear text"),
    "enc-utf-16": (f"{APP}/.env.enc", lambda r, k: f"API_KEY={LEAK}\n".encode("utf-16"), "not UTF-8 text"),
    "enc-latin-1": (
        f"{APP}/.env.enc",
        lambda r, k: f"A=1\nAPI_KEY={LEAK}\xe9\n".encode("latin-1"),
        "line 2: not UTF-8",
    ),
    "enc-one-value-in-clear": (
        f"{APP}/.env.enc",
        lambda r, k: encrypted_for(r, k) + f"EXTRA={LEAK}\n",
        "EXTRA is in clear text",
    ),
    "enc-unencrypted-suffix": (
        f"{APP}/.env.enc",
        lambda r, k: encrypted_for(r, k, settings=f"TOKEN_unencrypted={LEAK}\n"),  # sops leaves it clear
        "TOKEN_unencrypted is in clear text",
    ),
    "enc-sops-prefixed-setting": (
        f"{APP}/.env.enc",
        lambda r, k: encrypted_for(r, k) + f"sops_token={LEAK}\n",
        "sops_token is not sops metadata",
    ),
    "enc-metadata-holds-text": (
        f"{APP}/.env.enc",
        lambda r, k: replaced(encrypted_for(r, k), "sops_lastmodified", LEAK),
        "sops_lastmodified is not what sops writes there",
    ),
    "enc-metadata-twice": (
        f"{APP}/.env.enc",
        lambda r, k: encrypted_for(r, k) + f"sops_version={LEAK}\n",
        "sops_version is not what sops writes there",
    ),
    "enc-comment-in-clear": (
        f"{APP}/.env.enc",
        lambda r, k: f"# {LEAK}\n" + encrypted_for(r, k),
        "line 1: comment in clear text",
    ),
    "enc-comment-looks-encrypted": (
        f"{APP}/.env.enc",
        lambda r, k: f"#ENC[ {LEAK} ]\n" + encrypted_for(r, k),
        "line 1: comment in clear text",
    ),
    "enc-not-name-value": (f"{APP}/.env.enc", lambda r, k: f"NOEQUALS {LEAK}\n", "line 1: not NAME=value"),
    "enc-no-mac": (f"{APP}/.env.enc", lambda r, k: without(encrypted_for(r, k), "sops_mac"), "no sops_mac"),
    "enc-no-recipient": (f"{APP}/.env.enc", lambda r, k: without(encrypted_for(r, k), "recipient"), "no age recipient"),
    "enc-binary-json": (f"{APP}/.env.dev.enc", lambda r, k: '{\n "data": "ENC[...]"\n}\n', "sops wrote JSON"),
    "enc-foreign-key": (
        f"{APP}/.env.enc",
        lambda r, k: encrypted_for(r, new_age_key()),
        "a key .sops.yaml does not name",
    ),
    "enc-extra-recipient": (
        f"{APP}/.env.enc",
        lambda r, k: encrypted_for(r, k, new_age_key()),
        "a key .sops.yaml does not name",
    ),
    "key-in-key-file": (
        "key.txt",
        lambda r, k: AGE_KEY_TEXT.format(private=k.private),
        "line 2: holds an age private key",
    ),
    "key-inside-other-text": (
        "docs/setup.md",
        lambda r, k: f"# Setup\n\nOur key is {k.private} (do not share).\n",
        "line 3: holds an age private key",
    ),
    "key-lower-case": ("notes", lambda r, k: f"x {k.private.lower()}\n", "line 1: holds an age private key"),
    "key-in-utf-16-text": (
        f"{APP}/settings.txt",
        lambda r, k: AGE_KEY_TEXT.format(private=k.private).encode("utf-16"),
        "holds an age private key",
    ),
    "key-as-a-setting": (
        f"{APP}/.env.example",
        lambda r, k: f"AGE_KEY={k.private}\n",
        "line 1: holds an age private key",
    ),
    "conflict-markers": (".github/workflows/x.yaml", lambda r, k: CONFLICT, "merge-conflict markers on lines 2, 6"),
}
WHAT_TO_DO = ("re-encrypt it: uv run scripts/env_secrets.py encrypt", "never commit it", "resolve them")


@pytest.mark.parametrize("case", CASES)
def test_guard_refuses_bad_files(repo: Path, age_key: AgeKey, case: str) -> None:
    path, make, message = CASES[case]
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    content = make(repo, age_key)
    (repo / path).write_bytes(content if isinstance(content, bytes) else content.encode())
    result = guard(repo, path)
    assert result.returncode == 1
    problems = [line for line in result.stderr.splitlines() if line.startswith(f"{path}: ")]
    assert any(message in line for line in problems), result.stderr
    assert all(any(fix in line for fix in WHAT_TO_DO) for line in problems), "each line says what to do"
    assert result.stderr.splitlines()[-1].startswith("check_secrets: "), "nothing else is printed"
    assert len(result.stderr.splitlines()) == len(problems) + 1
    for secret in (LEAK, age_key.private, age_key.private.lower(), "sk-123"):
        assert secret not in result.stdout + result.stderr


def test_guard_names_the_command_for_the_file(per_env_repo: Path) -> None:
    (per_env_repo / APP / ".env.prod.enc").write_text(SETTINGS)
    result = guard(per_env_repo, f"{APP}/.env.prod.enc")
    assert f"re-encrypt it: uv run scripts/env_secrets.py encrypt {APP} prod" in result.stderr


def test_guard_accepts_good_files(repo: Path, age_key: AgeKey) -> None:
    (repo / APP / ".env.enc").write_text(encrypted_for(repo, age_key))
    (repo / APP / ".env.dev.enc").write_text("")  # empty: no secrets yet
    (repo / APP / ".env.qa.enc").write_text(encrypted_for(repo, age_key, settings="# comment\nA=\nB=\n"))
    (repo / "logo.png").write_bytes(bytes(range(256)) * 4)  # binary, not text: nothing to check
    files = [f"{APP}/.env.enc", f"{APP}/.env.dev.enc", f"{APP}/.env.qa.enc", f"{APP}/.env.example", "README.md"]
    assert guard(repo, *files, "logo.png").returncode == 0
    commit_all(repo)
    result = run("python3", "scripts/check_secrets.py", "--all", cwd=repo, check=False)
    assert result.returncode == 0, result.stderr


def test_pre_commit_runs_the_guards(repo: Path, age_key: AgeKey) -> None:
    pre_commit = require_tool("pre-commit")
    (repo / APP / ".env").write_text(SETTINGS)
    run("git", "add", "-f", f"{APP}/.env", cwd=repo)
    refused = run(pre_commit, "run", cwd=repo, check=False)
    assert refused.returncode == 1
    assert "env file in clear text" in refused.stdout + refused.stderr
    run("git", "rm", "-q", "--cached", f"{APP}/.env", cwd=repo)
    (repo / "age.txt").write_text(AGE_KEY_TEXT.format(private=age_key.private))
    run("git", "add", "age.txt", cwd=repo)
    refused = run(pre_commit, "run", cwd=repo, check=False)
    assert refused.returncode == 1
    assert "age.txt: line 2: holds an age private key" in refused.stdout + refused.stderr
    run("git", "rm", "-q", "--cached", "age.txt", cwd=repo)
    (repo / APP / DEPLOY).write_text(SETTINGS)
    run("python3", "scripts/env_secrets.py", "encrypt", APP, cwd=repo)
    run("git", "add", f"{APP}/.env.enc", cwd=repo)
    accepted = run(pre_commit, "run", cwd=repo, check=False)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr


# ---- One table of names: the guard, git and the images -------------------------------------
# What each of them must do with a file of that name in an app folder:
#   plain: an env file in clear text. The guard refuses it, git ignores it, no image gets it.
#   sops:  an encrypted env file. The guard checks its content; git and the images keep it.
#   key:   a usual name for a private age key file. Git and the images leave it out; the guard goes
#          by content (any file holding a key is refused), so it does not mind the name.
#   other: nobody minds it.
# tests/test_docker.py checks the .dockerignore files against the same table.
NAMES: dict[str, str] = {
    ".env": "plain",
    ".ENV": "plain",
    ".Env": "plain",
    ".env.dev": "plain",
    ".env.local": "plain",
    ".env.prod.bak": "plain",
    ".env.enc.orig": "plain",
    ".env~": "plain",
    ".envrc": "plain",
    "prod.env": "plain",
    "secrets.env": "plain",
    "PROD.ENV": "plain",
    "app.env.local": "plain",
    ".env.sample": "plain",
    ".envs/.production/django": "plain",
    ".env.enc": "sops",
    ".env.dev.enc": "sops",
    ".env.Prod.enc": "sops",
    ".env.a.b.enc": "sops",
    ".ENV.ENC": "sops",
    "prod.env.enc": "sops",
    "key.txt": "key",
    "keys.txt": "key",
    "KEY.TXT": "key",
    "age.agekey": "key",
    "age.key": "key",
    "age-key.txt": "key",
    ".env.example": "other",
    "settings.py": "other",
    "environment.yml": "other",
    "env/config.py": "other",
    "dotenv_loader.py": "other",
    "monkey.txt": "other",
    ".flaskenv": "other",  # Flask's committed settings (FLASK_APP=...), common in hand-made apps
}


def test_guard_follows_the_table_of_names(repo: Path, age_key: AgeKey) -> None:
    good = encrypted_for(repo, age_key)
    for name, kind in NAMES.items():
        (repo / APP / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / APP / name).write_text(good if kind == "sops" else "A=\n")
    result = guard(repo, *(f"{APP}/{name}" for name in NAMES))
    refused = {line.split(": ", 1)[0].removeprefix(f"{APP}/") for line in result.stderr.splitlines()[:-1]}
    assert refused == {name for name, kind in NAMES.items() if kind == "plain"}, result.stderr
    for name in (name for name, kind in NAMES.items() if kind == "sops"):  # their content is checked
        (repo / APP / name).write_text(SETTINGS)
    result = guard(repo, *(f"{APP}/{name}" for name, kind in NAMES.items() if kind == "sops"))
    clear = {line.split(": ", 1)[0] for line in result.stderr.splitlines() if "API_KEY is in clear text" in line}
    assert clear == {f"{APP}/{name}" for name, kind in NAMES.items() if kind == "sops"}


def ignored_by_git(repo: Path, paths: list[str]) -> set[str]:
    command = ["git", "check-ignore", "--stdin"]
    result = subprocess.run(command, cwd=repo, env=tool_env(), input="\n".join(paths), capture_output=True, text=True)
    assert result.returncode in (0, 1), result.stderr
    return set(result.stdout.splitlines())


@pytest.mark.parametrize("root_gitignore", ["generated", "the repository's own"])
def test_git_ignores_plain_env_and_key_files_by_the_table(repo: Path, root_gitignore: str) -> None:
    """Each app's own .gitignore holds the rules, so an existing root .gitignore cannot weaken them."""
    if root_gitignore != "generated":
        (repo / ".gitignore").write_text("node_modules/\n")  # a team that kept its own
    for folder in [APP, f"{APP}/{APP}"]:
        paths = [f"{folder}/{name}" for name in NAMES]
        expected = {f"{folder}/{name}" for name, kind in NAMES.items() if kind in ("plain", "key")}
        assert ignored_by_git(repo, paths) == expected
    if root_gitignore == "generated":  # and at the root, outside any app
        expected = {name for name, kind in NAMES.items() if kind in ("plain", "key")}
        assert ignored_by_git(repo, list(NAMES)) == expected


def test_decrypt_right_after_encrypt_keeps_the_plain_file(repo: Path, age_key: AgeKey) -> None:
    """new, encrypt, decrypt: the plain file still holds the same settings (sops drops only blank
    lines), so decrypt says so instead of refusing; a plain file that differs is still refused."""
    secrets(repo, "new", APP)
    plain = repo / APP / DEPLOY
    plain.write_text(plain.read_text().replace("\nUNIQUE_APP_KEY=\n", "\nUNIQUE_APP_KEY=sk-same\n"))
    before = plain.read_text()
    secrets(repo, "encrypt", APP)
    result = secrets(repo, "decrypt", APP, SOPS_AGE_KEY=age_key.private)
    assert "already holds what" in result.stdout
    assert plain.read_text() == before, "the user's file, blank lines and all, is left as it is"
    plain.write_text(before.replace("sk-same", "sk-changed"))
    refused = secrets(repo, "decrypt", APP, check=False, SOPS_AGE_KEY=age_key.private)
    assert refused.returncode == 1
    assert "exists and differs" in refused.stderr


# ---- scripts/rotate_key.py ------------------------------------------------------------------


def rotation_repo(tmp_path: Path, age_key: AgeKey) -> Path:
    """Two apps, one of them with one env file per environment, every env file holding settings."""
    repo = new_monorepo(tmp_path / "repo", answers(age_key))
    render(repo, {"app_name": "second_app", "environments": ["dev", "qa"], "per_environment_env_files": True})
    commit_all(repo, "Add second_app")
    (repo / APP / DEPLOY).write_text(f"API_KEY={LEAK}\n")
    secrets(repo, "encrypt", APP)
    (repo / "second_app" / ".env.dev").write_text("API_KEY=dev-key\n")
    secrets(repo, "encrypt", "second_app", "dev")  # .env.qa.enc stays empty
    commit_all(repo, "Settings")
    return repo


ROTATED = [".sops.yaml", ".sdk-deploy.yml", "APPS.md", f"{APP}/.copier-answers.yml", "second_app/.copier-answers.yml"]


@pytest.mark.slow
def test_rotate_key_moves_every_app_in_one_go(tmp_path: Path, age_key: AgeKey) -> None:
    repo = rotation_repo(tmp_path, age_key)
    key_file = tmp_path / "keys.txt"
    key_file.write_text(f"{age_key.private}\n")
    result = run("python3", "scripts/rotate_key.py", cwd=repo, SOPS_AGE_KEY_FILE=str(key_file))
    assert age_key.private not in result.stdout + result.stderr
    [new_public] = re.findall(r"rotated to (age1\w{58})", result.stdout)
    new_private = key_file.read_text().splitlines()[-1]
    assert new_private.startswith("AGE-SECRET-KEY-1")
    assert new_private not in result.stdout
    assert key_file.stat().st_mode & 0o777 == 0o600
    for name in ROTATED:
        text = (repo / name).read_text()
        assert age_key.public not in text, name
        assert new_public in text, name
    assert recipients(repo / APP / ".env.enc") == {new_public}
    assert recipients(repo / "second_app" / ".env.dev.enc") == {new_public}
    assert (repo / "second_app" / ".env.qa.enc").read_text() == ""
    only_new = {"SOPS_AGE_KEY": new_private, "SOPS_AGE_KEY_FILE": ""}
    assert sops_dotenv("--decrypt", repo / APP / ".env.enc", **only_new) == f"API_KEY={LEAK}\n"
    old = run(require_tool("sops"), "--decrypt", "--input-type", "dotenv", "--output-type", "dotenv",
              repo / APP / ".env.enc", check=False, SOPS_AGE_KEY=age_key.private, SOPS_AGE_KEY_FILE="")  # fmt: skip
    assert old.returncode != 0, "the old key opens none of the new files"
    commit_all(repo, "Rotate")
    assert run("python3", "scripts/check_secrets.py", "--all", cwd=repo, check=False).returncode == 0
    # A new app takes the new key from .sdk-deploy.yml as its default.
    render(repo, {"app_name": "third_app"})
    assert f"age_public_key: {new_public}" in (repo / "third_app" / ".copier-answers.yml").read_text()


@pytest.mark.slow
def test_rotate_key_changes_nothing_when_one_file_cannot_be_moved(tmp_path: Path, age_key: AgeKey) -> None:
    """All or nothing: an env file the current key cannot open stops the rotation before any write."""
    repo = rotation_repo(tmp_path, age_key)
    (repo / "second_app" / ".env.qa.enc").write_text(encrypted_for(repo, new_age_key()))  # someone else's key
    before = files_of(repo)
    key_file = tmp_path / "keys.txt"
    key_file.write_text(f"{age_key.private}\n")
    result = run("python3", "scripts/rotate_key.py", cwd=repo, check=False, SOPS_AGE_KEY_FILE=str(key_file))
    assert result.returncode == 1
    assert "second_app/.env.qa.enc" in result.stderr
    assert "the repository is unchanged" in result.stderr
    assert files_of(repo) == before
    assert key_file.read_text() == f"{age_key.private}\n", "no new key was saved either"


def test_rotate_key_puts_back_what_it_wrote_when_a_write_fails(
    tmp_path: Path, age_key: AgeKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupted half way through writing (the third file fails): every file gets its old text back."""
    repo = new_monorepo(tmp_path / "repo", answers(age_key))
    render(repo, {"app_name": "second_app"})
    commit_all(repo, "Add second_app")
    before = files_of(repo)
    monkeypatch.chdir(repo)
    monkeypatch.syspath_prepend(str(repo / "scripts"))
    for name in ("rotate_key", "env_secrets"):
        sys.modules.pop(name, None)
    rotate_key = importlib.import_module("rotate_key")
    env_secrets = importlib.import_module("env_secrets")
    real_replace, calls = os.replace, []

    def failing_replace(source: str, target: str) -> None:
        calls.append(target)
        if len(calls) == 3:
            raise OSError(28, "No space left on device", target)
        real_replace(source, target)

    monkeypatch.setattr(env_secrets.os, "replace", failing_replace)
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(tmp_path / "keys.txt"))
    assert rotate_key.main([]) == 1
    assert len(calls) == 3
    assert files_of(repo) == before
    for name in ("rotate_key", "env_secrets"):
        sys.modules.pop(name, None)


# ---- .env.example: committed, never in an image (issue 20 item 5) ----------------------------

# Values the guard refuses in .env.example, by the name (secret-like) or by the value (credentials).
REAL_EXAMPLE_VALUES = {
    "API_KEY": "sk-live-4f9a8b7c6d5e",
    "UNIQUE_APP_KEY": "ukey_2c1d9f0e",
    "ENDPOINT_SECRET": "whsec_8d7e6f5a4b3c",
    "UNIQUE_APP_ENDPOINT_SECRET": '"whsec_8d7e6f5a4b3c"',
    "GITHUB_TOKEN": "ghp_abcdef0123456789",
    "DB_PASSWORD": "hunter2",
    "AZURE_STORAGE_CONNECTION_STRING": "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=Zm9vYmFy==",
    "REDIS_URL": "redis://cache:s3cr3t@redis.example.com:6379/0",  # not a secret-like name: the value tells
}
PLACEHOLDER_VALUES = ["", "<your API key>", "change-me", "CHANGEME", "xxx", "XXXXXXXX", "your-api-key", "...", '""']


def test_guard_refuses_real_looking_secrets_in_env_example(repo: Path) -> None:
    example = repo / APP / ".env.example"
    assert guard(repo, f"{APP}/.env.example").returncode == 0, "the template's own .env.example passes"
    lines = [f"{name}={value}" for name, value in REAL_EXAMPLE_VALUES.items()]
    lines.insert(3, f"# SOPS_KEY={REAL_EXAMPLE_VALUES['API_KEY']}")  # a commented-out line is committed too
    example.write_text(example.read_text() + "\n".join(lines) + "\n")
    result = guard(repo, f"{APP}/.env.example")
    assert result.returncode == 1
    problems = result.stderr.splitlines()[:-1]
    named = sorted(line.split(": ")[2].split(" ")[0] for line in problems)
    assert named == sorted([*REAL_EXAMPLE_VALUES, "SOPS_KEY"]), result.stderr
    assert all(line.startswith(f"{APP}/.env.example: line ") for line in problems), "one line names file and line"
    assert all("leave it empty or write a placeholder: <...>, change-me" in line for line in problems)
    for value in REAL_EXAMPLE_VALUES.values():
        assert value.strip('"') not in result.stderr, "the value is never quoted"


def test_guard_accepts_placeholders_and_plain_settings_in_env_example(repo: Path) -> None:
    example = repo / APP / ".env.example"
    lines = [f"API_KEY_{n}={value}" for n, value in enumerate(PLACEHOLDER_VALUES)]
    lines += [
        "AZURE_STORAGE_CONNECTION_STRING=UseDevelopmentStorage=true",  # Azurite, the local emulator
        "UNIQUE_API_BASE_URL=https://gateway.unique.app",  # not secret-like, no credentials
        "UNIQUE_AUTH_COMPANY_ID=company-123",
        "MAX_TOKENS_PER_ANSWER=<a number>",
        "LOG_LEVEL=INFO  # a comment",
        "KEYWORDS=finance,news",
    ]
    example.write_text(example.read_text() + "\n".join(lines) + "\n")
    result = guard(repo, f"{APP}/.env.example")
    assert result.returncode == 0, result.stderr


def test_env_example_stays_out_of_every_image(monorepo: Path) -> None:
    """All three ignore files (production, local, the app's) leave .env.example out of the build context,
    in any case and in any folder; .gitignore keeps it (it is committed on purpose)."""
    import pathspec

    for ignore_file in ["Dockerfile.dockerignore", "Dockerfile.local.dockerignore", f"{APP}/.dockerignore"]:
        spec = pathspec.PathSpec.from_lines("gitignore", (monorepo / ignore_file).read_text().splitlines())
        for path in [".env.example", f"{APP}/.env.example", f"{APP}/.ENV.Example"]:
            assert spec.match_file(path), f"{path} reaches the image through {ignore_file}"
    gitignore = pathspec.PathSpec.from_lines("gitignore", (monorepo / APP / ".gitignore").read_text().splitlines())
    assert not gitignore.match_file(".env.example")


@pytest.mark.docker
@pytest.mark.slow
def test_env_example_never_reaches_a_real_build_context(monorepo: Path, tmp_path: Path) -> None:
    """A real `docker build` of the app folder with the classic builder, which reads <app>/.dockerignore
    (BuildKit reads Dockerfile.dockerignore, the same rules: test_docker.py; this machine has no buildx):
    .env.example and plain env files stay out, the encrypted env files and the code go in. FROM scratch:
    nothing is pulled."""
    from tools.images import engine_problem

    if problem := engine_problem():
        if os.environ.get("REQUIRE_DOCKER") == "1":
            pytest.fail(f"REQUIRE_DOCKER=1 but no engine: {problem}", pytrace=False)
        pytest.skip(f"needs a Docker engine: {problem}")
    context = tmp_path / "context"
    run("cp", "-r", monorepo / APP, context)
    (context / ".env.deploy").write_text("API_KEY=plain\n")
    dockerfile = tmp_path / "build" / "Dockerfile"
    dockerfile.parent.mkdir()
    dockerfile.write_text("FROM scratch\nCOPY . /context/\n")
    tag = "sdk-deploy-template-test/env-example"
    run("docker", "build", "--quiet", "-t", tag, "-f", dockerfile, context, DOCKER_BUILDKIT="0")
    container = run("docker", "create", tag, "none").stdout.strip()
    try:
        exported = subprocess.run(["docker", "export", container], capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(exported)) as archive:
            names = {name.removeprefix("context/") for name in archive.getnames() if name.startswith("context/")}
    finally:
        run("docker", "rm", container)
        run("docker", "rmi", tag, check=False)
    assert ".env.example" not in names
    assert ".env.deploy" not in names
    assert {".env.enc", "pyproject.toml", f"{APP}/handler.py"} <= names
