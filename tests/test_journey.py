"""A team's first day on a bare machine: git, Python 3 and uv, nothing else on PATH (no sops, age, copier,
Poetry or pre-commit). Every command comes from the docs as rendered (the root README.md and the generated
APPS.md) and runs in a shell as a person types it; tools arrive from PyPI through uv on demand.

The order is the docs': the key pair, the first copy and a second app, pre-commit, secrets (new,
encrypt, local, decrypt, edit), the guards through a real commit, doctor and check_app, update_apps
to a new template release, and key rotation."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tools.template_repo import TemplateRepo, init_repository

from .conftest import TEMPLATE, bare_machine_path

FIRST, SECOND = "joke_of_the_day", "second_app"
LEAK = "S3CRET-first-day"  # a deployed secret: never in a message, never in git, never in the local .env


def sh_blocks(text: str, heading: str) -> list[str]:
    """The command lines of every ```sh block in the section that starts at `heading` (up to the next heading
    of its level or above)."""
    section = text[text.index(heading) :]
    level = max(2, len(heading) - len(heading.lstrip("#")))  # plain text: up to the next ## ("# " is a comment)
    ends = [found for depth in range(2, level + 1) if (found := section.find("\n" + "#" * depth + " ", 1)) >= 0]
    section = section[: min(ends)] if ends else section
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL):
        lines += [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    return lines


def command_for(lines: list[str], start: str) -> str:
    [line] = [line for line in lines if line.startswith(start)]
    return line


class Machine:
    """A shell on a bare machine: a fresh HOME, PATH of the system and uv, uv's cache shared by the tests."""

    def __init__(self, tmp: Path, uv_cache: Path, editor: Path) -> None:
        self.home = tmp / "home"
        self.home.mkdir()
        self.env = {
            "PATH": bare_machine_path(tmp / "bin", "uv", "uvx"),
            "HOME": str(self.home),
            "UV_CACHE_DIR": str(uv_cache),
            "EDITOR": str(editor),
            "GIT_AUTHOR_NAME": "A Developer",
            "GIT_AUTHOR_EMAIL": "dev@example.com",
            "GIT_COMMITTER_NAME": "A Developer",
            "GIT_COMMITTER_EMAIL": "dev@example.com",
            "LANG": "C.UTF-8",
            # This machine reaches PyPI through a proxy whose CA is only in the system bundle.
            **{k: v for k, v in os.environ.items() if k in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")},
        }

    def run(self, command: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["/bin/bash", "-c", command], cwd=cwd, env=self.env, capture_output=True, text=True, check=False
        )
        if ok:
            assert result.returncode == 0, f"{command}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        return result


@pytest.fixture(scope="session")
def uv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """uv's downloads, shared by every test of the session (PyPI is fetched once)."""
    return tmp_path_factory.mktemp("uv-cache")


def test_the_readme_and_apps_md_show_the_same_key_pair_command(monorepo: Path) -> None:
    """The root README (not rendered) repeats extensions/commands.jinja's age_keygen: they must agree."""
    readme = (TEMPLATE / "README.md").read_text()
    [from_readme] = sh_blocks(readme, "Make the key pair first")[:1]
    [from_apps_md] = sh_blocks((monorepo / "APPS.md").read_text(), "## One-time setup")[:1]
    assert from_readme == from_apps_md
    assert "age-keygen" not in from_readme, "age is not on a bare machine"


@pytest.mark.slow
def test_a_first_day_on_a_bare_machine(tmp_path: Path, uv_cache: Path) -> None:
    editor = tmp_path / "editor"  # what a person does in $EDITOR: fill in the one secret they have
    editor.write_text(
        "#!/usr/bin/python3\nimport pathlib, sys\nfor name in sys.argv[1:]:\n    p = pathlib.Path(name)\n"
        f"    p.write_text(p.read_text().replace('\\nUNIQUE_APP_KEY=\\n', '\\nUNIQUE_APP_KEY={LEAK}\\n'))\n"
    )
    editor.chmod(0o755)
    machine = Machine(tmp_path, uv_cache, editor)
    for tool in ("sops", "age-keygen", "copier", "poetry", "pre-commit"):
        assert machine.run(f"command -v {tool}", tmp_path, ok=False).returncode != 0, f"{tool} is on PATH"
    template = TemplateRepo.from_working_tree(tmp_path / "template", tag="v1.0.0")
    readme = (TEMPLATE / "README.md").read_text()
    repo = init_repository(tmp_path / "monorepo")

    # The key pair, before the first copy (README).
    keygen = sh_blocks(readme, "Make the key pair first")[0]
    made = machine.run(keygen, tmp_path)
    public = made.stdout.strip()
    assert re.fullmatch(r"age1[a-z0-9]{58}", public), made.stdout
    key_file = machine.home / ".config/sops/age/keys.txt"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.read_text().startswith(f"# public key: {public}\nAGE-SECRET-KEY-1")

    # The first copy and a second app (README), scripted with --defaults and --data as it says.
    copy = sh_blocks(readme, "## The two commands")[0]
    copy = copy.replace("gh:<org>/sdk-deploy-template", str(template.path)).replace("path/to/monorepo", str(repo))
    machine.run(f"{copy} --defaults --data app_name={FIRST} --data age_public_key={public} "
                "--data python_version=3.11", tmp_path)  # fmt: skip  # this machine's python3
    machine.run(f"{copy} --defaults --data app_name={SECOND} --data per_environment_env_files=true", tmp_path)
    machine.run("git add -A && git commit -qm 'Two apps'", repo)
    apps_md = (repo / "APPS.md").read_text()

    # The guards through pre-commit (APPS.md, One-time setup).
    [install] = re.findall(r"`(\S+ pre-commit install)` once per clone", apps_md)
    machine.run(install, repo)

    # Secrets: new, $EDITOR, encrypt, commit through the hook (APPS.md, as written).
    for step in sh_blocks(apps_md, '## From "I have a secret"')[:4]:
        machine.run(step.replace("<app>", FIRST).replace(" [<env>]", ""), repo)
    committed = machine.run(f"git show HEAD:{FIRST}/.env.enc", repo).stdout
    assert "UNIQUE_APP_KEY=ENC[" in committed
    assert LEAK not in committed
    # Local settings apart from the deployed ones.
    [local] = [line for line in sh_blocks(apps_md, '## From "I have a secret"') if " local " in line]
    machine.run(local.replace("<app>", FIRST), repo)
    assert LEAK not in (repo / FIRST / ".env").read_text()
    # decrypt and edit, as the text names them.
    script = sh_blocks(apps_md, '## From "I have a secret"')[0].split(" new ")[0]  # uv run scripts/env_secrets.py
    (repo / FIRST / ".env.deploy").unlink()
    machine.run(f"{script} decrypt {FIRST}", repo)
    assert f"UNIQUE_APP_KEY={LEAK}" in (repo / FIRST / ".env.deploy").read_text()
    (editor.parent / "append").write_text('#!/bin/sh\necho "ADDED=yes" >> "$1"\n')
    (editor.parent / "append").chmod(0o755)
    machine.env["EDITOR"] = str(editor.parent / "append")
    machine.run(f"{script} edit {FIRST}", repo)
    machine.env["EDITOR"] = str(editor)
    # The guard refuses a plain env file at commit time.
    machine.run(f"git add -f {FIRST}/.env.deploy", repo)
    refused = machine.run("git commit -qm 'oops'", repo, ok=False)
    assert refused.returncode != 0
    assert "env file in clear text" in refused.stdout + refused.stderr
    machine.run(f"git rm -q --cached {FIRST}/.env.deploy && git add -A && git commit -qm 'Edited settings'", repo)

    # doctor and check_app (APPS.md, "Check the whole monorepo").
    checks = sh_blocks(apps_md, "## Check the whole monorepo")
    doctor = machine.run(checks[0], repo)
    assert "doctor: OK" in doctor.stdout
    assert "sops not found" not in doctor.stdout, "uv run brings sops"
    machine.run(command_for(checks, "uv run scripts/check_app.py").replace("<app>", FIRST), repo)

    # update_apps to a new template release (APPS.md, "Keeping up to date").
    template.edit("template/Dockerfile.jinja", "USER app\n", 'LABEL org.example.first-day="yes"\nUSER app\n')
    template.release("v2.0.0")
    update = command_for(sh_blocks(apps_md, "## Keeping up to date"), "uv run scripts/update_apps.py")
    machine.run(update, repo)
    log = machine.run("git log --format=%s -2", repo).stdout.splitlines()
    assert log == [f"Update {app} from sdk-deploy-template v2.0.0" for app in (SECOND, FIRST)]
    assert 'first-day="yes"' in (repo / "Dockerfile").read_text()

    # Key rotation in one command (APPS.md, "Rotating the age key").
    [rotate] = sh_blocks(apps_md, "### Rotating the age key")
    rotated = machine.run(rotate, repo)
    [new_public] = re.findall(r"rotated to (age1\w{58})", rotated.stdout)
    for name in (".sops.yaml", ".sdk-deploy.yml", f"{FIRST}/.copier-answers.yml", f"{SECOND}/.copier-answers.yml"):
        assert public not in (repo / name).read_text(), name
        assert new_public in (repo / name).read_text(), name
    machine.run("git add -A && git commit -qm 'Rotate the age key'", repo)
    assert "doctor: OK" in machine.run(checks[0], repo).stdout
    (repo / FIRST / ".env.deploy").unlink()
    machine.run(f"{script} decrypt {FIRST}", repo)  # the new key, from the same key file
    assert "ADDED=yes" in (repo / FIRST / ".env.deploy").read_text()
