"""One age key per environment (answer age_key_per_environment, off by default), with the real tools:
copier's answers, .sops.yaml's rules and real sops, the guard, doctor, env_secrets and rotate_key.
A dev key never reads .env.prod.enc."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import APP, AgeKey, answers, commit_all, files_of, new_age_key, new_monorepo, render, run
from .test_doctor import doctor
from .test_secrets import guard, recipients, secrets, sops_dotenv

SOPS_TOOLS = ("sops",)


class Keys:
    """The repository key and one key per environment."""

    def __init__(self) -> None:
        self.repo = new_age_key()
        self.dev = new_age_key()
        self.prod = new_age_key()

    def data(self, **overrides: Any) -> dict[str, Any]:
        data = {
            "per_environment_env_files": True,
            "age_key_per_environment": True,
            "age_environment_keys": {"dev": self.dev.public, "prod": self.prod.public},
        }
        return answers(self.repo, **{**data, **overrides})


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def env_keys_repo(tmp_path: Path, keys: Keys) -> Path:
    """A monorepo with keys per environment, .env.dev.enc and .env.prod.enc holding settings."""
    repo = new_monorepo(tmp_path / "repo", keys.data())
    for env in ("dev", "prod"):
        (repo / APP / f".env.{env}").write_text(f"API_KEY={env}-api-key\n")
        secrets(repo, "encrypt", APP, env)
    commit_all(repo, "Settings")
    return repo


def decrypts(path: Path, key: AgeKey) -> str | None:
    """The plain text of `path` with `key` alone, or None when sops cannot decrypt it with that key."""
    only = {"SOPS_AGE_KEY": key.private, "SOPS_AGE_KEY_FILE": ""}
    try:
        return sops_dotenv("--decrypt", path, **only)
    except AssertionError:
        return None


def test_off_by_default_leaves_no_trace(monorepo: Path) -> None:
    """The default render names no key per environment: one rule, one key, the repository secret."""
    for name, data in files_of(monorepo).items():
        if name.startswith("scripts/") or name == "APPS.md":
            continue  # the scripts understand both layouts; APPS.md says how to switch it on
        text = data.decode("utf-8", errors="replace")
        assert "age_key_per_environment" not in text, name
        assert "age_environment_keys" not in text, name
    rules = yaml.safe_load((monorepo / ".sops.yaml").read_text())["creation_rules"]
    assert len(rules) == 1
    assert "age_key_per_environment" not in (monorepo / APP / ".copier-answers.yml").read_text()


def test_sops_rules_encrypt_each_environment_for_its_key_only(env_keys_repo: Path, keys: Keys) -> None:
    repo = env_keys_repo
    dev, prod = repo / APP / ".env.dev.enc", repo / APP / ".env.prod.enc"
    assert recipients(dev) == {keys.dev.public}
    assert recipients(prod) == {keys.prod.public}
    assert decrypts(dev, keys.dev) == "API_KEY=dev-api-key\n"
    assert decrypts(prod, keys.prod) == "API_KEY=prod-api-key\n"
    assert decrypts(prod, keys.dev) is None, "the dev key must not read prod's settings"
    assert decrypts(prod, keys.repo) is None, "the repository key must not read prod's settings"
    assert decrypts(dev, keys.prod) is None
    settings = yaml.safe_load((repo / ".sdk-deploy.yml").read_text())
    assert settings["age_environment_keys"] == {"dev": keys.dev.public, "prod": keys.prod.public}
    result = guard(repo, f"{APP}/.env.dev.enc", f"{APP}/.env.prod.enc")
    assert result.returncode == 0, result.stderr
    assert run("python3", "scripts/check_secrets.py", "--all", cwd=repo, check=False).returncode == 0


def test_env_secrets_decrypt_needs_that_environments_key(env_keys_repo: Path, keys: Keys) -> None:
    (env_keys_repo / APP / ".env.prod").unlink()
    refused = secrets(env_keys_repo, "decrypt", APP, "prod", check=False, SOPS_AGE_KEY=keys.dev.private)
    assert refused.returncode == 1
    assert "needs that environment's private key" in refused.stderr
    assert "prod-api-key" not in refused.stdout + refused.stderr
    secrets(env_keys_repo, "decrypt", APP, "prod", SOPS_AGE_KEY=keys.prod.private)
    assert (env_keys_repo / APP / ".env.prod").read_text() == "API_KEY=prod-api-key\n"


def test_doctor_flags_a_file_encrypted_for_another_environments_key(env_keys_repo: Path) -> None:
    """Which rule of .sops.yaml applies is doctor's check (it reads YAML, and CI runs it); the guard (standard
    library only) refuses keys .sops.yaml does not name, and lets an environment's key pass."""
    repo = env_keys_repo
    (repo / APP / ".env.prod.enc").write_text((repo / APP / ".env.dev.enc").read_text())  # dev's file as prod's
    commit_all(repo, "prod settings encrypted for the dev key")
    assert guard(repo, f"{APP}/.env.prod.enc").returncode == 0
    doctor(repo, *SOPS_TOOLS).finds(
        f"{APP}/.env.prod.enc", "not for the key of environment 'prod'", f"env_secrets.py encrypt {APP} prod"
    )


def test_the_guard_refuses_a_key_sops_yaml_does_not_name(env_keys_repo: Path) -> None:
    repo = env_keys_repo
    stranger = new_age_key().public
    text = (repo / APP / ".env.dev.enc").read_text()
    dev = next(line.split("=", 1)[1] for line in text.splitlines() if "__map_recipient=" in line)
    (repo / APP / ".env.dev.enc").write_text(text.replace(dev, stranger))
    commit_all(repo, "dev settings for a stranger's key")
    result = guard(repo, f"{APP}/.env.dev.enc")
    assert result.returncode == 1
    assert f"encrypted for {stranger}, a key .sops.yaml does not name" in result.stderr
    assert f"re-encrypt it: uv run scripts/env_secrets.py encrypt {APP} dev" in result.stderr


def test_doctor_accepts_keys_per_environment_and_notes_what_your_key_cannot_read(
    env_keys_repo: Path, keys: Keys
) -> None:
    result = doctor(env_keys_repo, *SOPS_TOOLS, SOPS_AGE_KEY=keys.dev.private)
    assert not [line for line in result.problems if ".env." in line], result.output
    assert f"{APP}/.env.prod.enc: not decrypted" in result.output
    assert f"{APP}/.env.dev.enc: not decrypted" not in result.output


def test_doctor_flags_settings_and_rules_that_disagree(env_keys_repo: Path, keys: Keys) -> None:
    settings = env_keys_repo / ".sdk-deploy.yml"
    other = new_age_key()
    settings.write_text(settings.read_text().replace(keys.prod.public, other.public))
    commit_all(env_keys_repo, "a prod key .sops.yaml does not name")
    doctor(env_keys_repo).finds(".sdk-deploy.yml", f"age_environment_keys.prod is {other.public}", "update_apps.py")


@pytest.mark.slow
def test_rotate_one_environment_leaves_the_others_to_their_keys(
    env_keys_repo: Path, keys: Keys, tmp_path: Path
) -> None:
    repo = env_keys_repo
    dev_before = (repo / APP / ".env.dev.enc").read_bytes()
    key_file = tmp_path / "keys.txt"
    key_file.write_text(f"{keys.prod.private}\n")
    result = run("python3", "scripts/rotate_key.py", "--environment", "prod", cwd=repo, SOPS_AGE_KEY_FILE=str(key_file))
    assert "gh secret set AGE_PRIVATE_KEY --env prod" in result.stdout
    [public] = re.findall(r"rotated the key of environment 'prod' to (age1\w{58})", result.stdout)
    new_prod = AgeKey(private=key_file.read_text().splitlines()[-1], public=public)
    assert new_prod.private.startswith("AGE-SECRET-KEY-1")
    prod = repo / APP / ".env.prod.enc"
    assert recipients(prod) == {new_prod.public}
    assert decrypts(prod, new_prod) == "API_KEY=prod-api-key\n"
    assert decrypts(prod, keys.prod) is None, "the old prod key reads none of the new file"
    assert decrypts(prod, keys.dev) is None
    assert (repo / APP / ".env.dev.enc").read_bytes() == dev_before, "dev's file is left as it is"
    assert decrypts(repo / APP / ".env.dev.enc", keys.dev) == "API_KEY=dev-api-key\n"
    for name in (".sops.yaml", ".sdk-deploy.yml", f"{APP}/.copier-answers.yml"):
        text = (repo / name).read_text()
        assert keys.prod.public not in text, name
        assert new_prod.public in text, name
        assert keys.dev.public in text, name
    assert keys.repo.public in (repo / ".sops.yaml").read_text()
    assert guard(repo, f"{APP}/.env.dev.enc", f"{APP}/.env.prod.enc").returncode == 0


def test_rotate_one_environment_changes_nothing_without_its_key(
    env_keys_repo: Path, keys: Keys, tmp_path: Path
) -> None:
    """All or nothing: with the dev key only, prod's rotation fails before anything is written."""
    before = files_of(env_keys_repo)
    key_file = tmp_path / "keys.txt"
    key_file.write_text(f"{keys.dev.private}\n")
    result = run(
        "python3", "scripts/rotate_key.py", "--environment", "prod", "--to", new_age_key().public,
        cwd=env_keys_repo, check=False, SOPS_AGE_KEY_FILE=str(key_file),
    )  # fmt: skip
    assert result.returncode == 1
    assert "the repository is unchanged" in result.stderr
    assert files_of(env_keys_repo) == before
    unknown = run("python3", "scripts/rotate_key.py", "--environment", "qa", cwd=env_keys_repo, check=False)
    assert "names no key for environment 'qa' (its environments: dev, prod)" in unknown.stderr


def test_workflows_take_the_environments_secret(env_keys_repo: Path) -> None:
    for env in ("dev", "prod"):
        workflow = env_keys_repo / ".github/workflows" / f"{APP}.{env}.deploy.yaml"
        deploy = yaml.safe_load(workflow.read_text())["jobs"]["deploy"]
        assert deploy["environment"] == env, "the environment's secrets are only there for a job that names it"
        [step] = [s for s in deploy["steps"] if "sdk-deploy-action" in s.get("uses", "")]
        assert step["with"]["age_private_key"] == "${{ secrets.AGE_PRIVATE_KEY }}"
        assert step["with"]["encrypted_env_file"] == f".env.{env}.enc"
        assert f"the secret of the GitHub environment '{env}'" in workflow.read_text()


BAD_RECIPIENTS = {
    "missing-environment": (lambda k: {"dev": k.dev.public}, "age_environment_keys has no key for 'prod'"),
    "typo": (
        lambda k: {"dev": k.dev.public, "prod": k.prod.public[:-1] + ("q" if k.prod.public[-1] != "q" else "p")},
        "age_environment_keys.prod is not an age public key:\nThis age public key has a typo",
    ),
    "private-key": (
        lambda k: {"dev": k.dev.public, "prod": k.prod.private},
        "age_environment_keys.prod is not an age public key:\nThat is an age PRIVATE key",
    ),
    "not-a-key": (
        lambda k: {"dev": k.dev.public, "prod": "prod-key"},
        "age_environment_keys.prod is not an age public key:\nNot an age",
    ),
    "shared": (lambda k: {"dev": k.dev.public, "prod": k.dev.public}, "has the key of another environment"),
    "repository-key": (lambda k: {"dev": k.repo.public, "prod": k.prod.public}, "dev is the repository key"),
    "not-a-mapping": (lambda k: [k.dev.public, k.prod.public], "must map each environment to its age public key"),
}


@pytest.mark.parametrize("case", BAD_RECIPIENTS)
def test_copier_refuses_bad_recipients(tmp_path: Path, keys: Keys, case: str) -> None:
    make, message = BAD_RECIPIENTS[case]
    with pytest.raises(ValueError, match="age_environment_keys") as refused:
        render(tmp_path / "out", keys.data(age_environment_keys=make(keys)))
    assert message in str(refused.value)
    first_line = str(refused.value).split(": ", 1)[-1].splitlines()[0]
    assert len(first_line) <= 80, f"copier shows one line at the prompt; this one is cut: {first_line!r}"
    assert str(refused.value).splitlines()[0].startswith("Validation error for question 'age_environment_keys'")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir()), "nothing is written"


def test_copier_takes_recipients_as_yaml_text(tmp_path: Path, keys: Keys) -> None:
    """--data age_environment_keys='{dev: age1..., prod: age1...}', as a script passes it."""
    text = json.dumps({"dev": keys.dev.public, "prod": keys.prod.public})
    render(tmp_path, keys.data(age_environment_keys=text))
    assert len(yaml.safe_load((tmp_path / ".sops.yaml").read_text())["creation_rules"]) == 3


def test_a_second_app_follows_the_repositorys_keys(env_keys_repo: Path, keys: Keys) -> None:
    repo = env_keys_repo
    render(repo, {"app_name": "second_app", "per_environment_env_files": True})  # the keys come from the repo
    second = yaml.safe_load((repo / "second_app/.copier-answers.yml").read_text())
    assert second["age_key_per_environment"] is True
    assert second["age_environment_keys"] == {"dev": keys.dev.public, "prod": keys.prod.public}
    with pytest.raises(ValueError, match="every\napp needs one env file per environment"):
        render(repo, {"app_name": "third_app"})
    other = {"dev": keys.dev.public, "prod": new_age_key().public}
    with pytest.raises(ValueError, match="keys per environment are other ones"):
        render(repo, {"app_name": "fourth_app", "per_environment_env_files": True, "age_environment_keys": other})


@pytest.mark.slow
def test_switching_an_existing_monorepo_on_as_apps_md_says(tmp_path: Path, keys: Keys) -> None:
    """APPS.md "A key per environment", steps 2 to 4, on a monorepo that encrypted dev and prod for
    the repository key: afterwards each file opens with its environment's key only."""
    import copier

    repo = new_monorepo(tmp_path / "repo", answers(keys.repo, per_environment_env_files=True))
    for env in ("dev", "prod"):
        (repo / APP / f".env.{env}").write_text(f"API_KEY={env}-api-key\n")
        secrets(repo, "encrypt", APP, env)
    commit_all(repo, "Settings for the repository key")
    assert decrypts(repo / APP / ".env.prod.enc", keys.repo) == "API_KEY=prod-api-key\n"
    mapping = {"dev": keys.dev.public, "prod": keys.prod.public}
    settings = repo / ".sdk-deploy.yml"
    block = "age_key_per_environment: true\nage_environment_keys:\n" + "".join(
        f"  {e}: {k}\n" for e, k in mapping.items()
    )
    settings.write_text(settings.read_text() + block)  # step 2
    commit_all(repo, "Keys per environment")
    copier.run_update(  # step 3
        repo,
        answers_file=f"{APP}/.copier-answers.yml",
        data={"age_key_per_environment": True, "age_environment_keys": mapping},
        defaults=True, overwrite=True, unsafe=False, quiet=True, vcs_ref="HEAD",
    )  # fmt: skip
    assert len(yaml.safe_load((repo / ".sops.yaml").read_text())["creation_rules"]) == 3
    commit_all(repo, "Update")
    found = doctor(repo, *SOPS_TOOLS)
    found.finds(f"{APP}/.env.prod.enc", "not for the key of environment 'prod'", f"encrypt {APP} prod")
    for env in ("dev", "prod"):  # step 4
        (repo / APP / f".env.{env}").unlink()
        secrets(repo, "decrypt", APP, env, SOPS_AGE_KEY=keys.repo.private)
        secrets(repo, "encrypt", APP, env)
    commit_all(repo, "Settings for the keys per environment")
    assert decrypts(repo / APP / ".env.prod.enc", keys.prod) == "API_KEY=prod-api-key\n"
    assert decrypts(repo / APP / ".env.prod.enc", keys.repo) is None
    assert decrypts(repo / APP / ".env.prod.enc", keys.dev) is None
    assert not [line for line in doctor(repo, *SOPS_TOOLS).problems if ".env." in line]
    assert run("python3", "scripts/check_secrets.py", "--all", cwd=repo, check=False).returncode == 0


def test_doctor_names_a_team_rule_that_overrides_an_environments_key(env_keys_repo: Path, keys: Keys) -> None:
    """An adoption keeps the team's own .sops.yaml rules first; one matching .env.<env> wins over the
    environment's key (sops takes the first rule that matches), and doctor says so."""
    config = env_keys_repo / ".sops.yaml"
    team_rule = f"  - path_regex: \\.env\\.prod$\n    age: {keys.repo.public}\n"
    config.write_text(config.read_text().replace("creation_rules:\n", "creation_rules:\n" + team_rule, 1))
    commit_all(env_keys_repo, "a team rule first")
    doctor(env_keys_repo).finds(
        ".sdk-deploy.yml", f"age_environment_keys.prod is {keys.prod.public}, but .sops.yaml encrypts", "update"
    )
