"""What one copy renders: the file layout for every answer combination, two apps side by side,
the answers files, and the shared root files.

The answer matrix goes through pytest-copie, which is made for exactly that, but always passes
unsafe=True; every other render in these tests goes through copier's API without trust (conftest
`render`), and test_copy_needs_no_trust_and_template_declares_nothing_unsafe proves none is needed."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path
from typing import Any

import jinja2
import pytest
import tomlkit
import yaml

from .conftest import APP, TEMPLATE, VENV_BIN, AgeKey, answers, commit_all, files_of, new_monorepo, render, run

MATRIX = {
    "one-env": {"environments": ["prod"], "per_environment_env_files": False},
    "one-env-per-env-files": {"environments": ["prod"], "per_environment_env_files": True},
    "three-envs": {"environments": ["dev", "staging", "prod"], "per_environment_env_files": False},
    "three-envs-per-env-files": {"environments": ["dev", "staging", "prod"], "per_environment_env_files": True},
}


@pytest.fixture(scope="module")
def rendered(copie_session: Any, age_key: AgeKey) -> dict[str, Path]:
    """The render matrix, through pytest-copie (trust does not matter for the file layout)."""
    out = {}
    for name, extra in MATRIX.items():
        result = copie_session.copy(extra_answers=answers(age_key, **extra))
        assert result.exit_code == 0, result.exception
        out[name] = result.project_dir
    return out


@pytest.mark.parametrize("case", MATRIX)
def test_one_workflow_per_environment(rendered: dict[str, Path], case: str) -> None:
    workflows = sorted(p.name for p in (rendered[case] / ".github/workflows").iterdir())
    shared = ["apps.ci.yaml", "app.checks.yaml", "template-updates.yaml"]
    expected = sorted([f"{APP}.{env}.deploy.yaml" for env in MATRIX[case]["environments"]] + shared)
    assert workflows == expected


@pytest.mark.parametrize("case", MATRIX)
def test_env_files_match_the_answer_and_every_workflow_names_an_existing_one(
    rendered: dict[str, Path], case: str
) -> None:
    app = rendered[case] / APP
    envs = MATRIX[case]["environments"]
    expected = [f".env.{env}.enc" for env in envs] if MATRIX[case]["per_environment_env_files"] else [".env.enc"]
    assert sorted(p.name for p in app.glob(".env*.enc")) == sorted(expected)
    assert all((app / name).read_bytes() == b"" for name in expected)  # empty until the user encrypts settings
    for env in envs:
        workflow = yaml.safe_load((rendered[case] / f".github/workflows/{APP}.{env}.deploy.yaml").read_text())
        deploy = next(s for s in workflow["jobs"]["deploy"]["steps"] if s.get("id") == "deploy")
        assert (app / deploy["with"]["encrypted_env_file"]).is_file()


def test_copy_needs_no_trust_and_template_declares_nothing_unsafe(tmp_path: Path, age_key: AgeKey) -> None:
    config = yaml.safe_load((TEMPLATE / "copier.yml").read_text())
    assert not {"_tasks", "_jinja_extensions", "_migrations"} & set(config)
    render(tmp_path, answers(age_key))  # unsafe=False: copier refuses unsafe features without trust
    assert (tmp_path / APP / APP / "__init__.py").is_file()


def test_app_files_are_rendered_with_its_names(monorepo: Path) -> None:
    app = monorepo / APP
    for name in [
        "pyproject.toml",
        "poetry.lock",
        "gunicorn.conf.py",
        ".env.example",
        ".env.enc",
        "docker-compose.yaml",
        "README.md",
        ".dockerignore",
        f"{APP}/__init__.py",
        f"{APP}/handler.py",
        f"{APP}/settings.py",
        "tests/test_handler.py",
        "sdk_runtime/webhook.py",
        "sdk_runtime/MANIFEST",
    ]:
        assert (app / name).is_file(), name
    for name in [
        ".sdk-deploy.yml",
        ".sops.yaml",
        ".gitignore",
        ".pre-commit-config.yaml",
        "Dockerfile",
        "Dockerfile.local",
        "Dockerfile.dockerignore",
        "Dockerfile.local.dockerignore",
        "README.md",
        "APPS.md",
        "scripts/env_secrets.py",
        "scripts/check_secrets.py",
        "scripts/check_app.py",
        "scripts/doctor.py",
        "scripts/update_apps.py",
    ]:
        assert (monorepo / name).is_file(), name
    leftovers = [str(p) for p in monorepo.rglob("*") if "{{" in p.name or "{%" in p.name or p.suffix == ".jinja"]
    assert leftovers == []
    assert "joke_of_the_day:app" in (app / "README.md").read_text()
    assert f"uvx copier@latest copy {TEMPLATE} ." in (monorepo / "APPS.md").read_text()  # the real source


def test_pyproject_passes_the_deploy_actions_checks(monorepo: Path) -> None:
    text = (monorepo / APP / "pyproject.toml").read_text()
    # The action greps for these lines (Poetry table style, not a PEP 621 list).
    assert re.search(r"^gunicorn\s*=", text, re.MULTILINE)
    assert re.search(r"^python-dotenv\s*=", text, re.MULTILINE)
    poetry = tomlkit.parse(text)["tool"]["poetry"]
    assert poetry["package-mode"] is False
    assert set(poetry["dependencies"]) >= {"python", "flask", "gunicorn", "python-dotenv", "unique-sdk"}
    assert poetry["dependencies"]["python"] == "~3.12"
    assert set(poetry["group"]["dev"]["dependencies"]) >= {"pytest", "ruff"}


def test_answers_file_lives_in_the_app_and_records_only_answers(monorepo: Path, age_key: AgeKey) -> None:
    recorded = yaml.safe_load((monorepo / APP / ".copier-answers.yml").read_text())
    assert recorded["app_name"] == APP
    assert recorded["age_public_key"] == age_key.public
    assert recorded["environments"] == ["dev", "prod"]
    computed = {"memory", "effective_poetry_version", "effective_sops_version", "env_files"}
    assert not computed & set(recorded), "template-owned values must not be frozen into answers"
    assert not (monorepo / ".copier-answers.yml").exists()


def test_gitignore_keeps_plain_env_files_out_and_encrypted_ones_in(monorepo: Path) -> None:
    ignored = ["x/.env", f"{APP}/.env", f"{APP}/.env.dev", f"{APP}/.env.local", ".env"]
    kept = [f"{APP}/.env.enc", f"{APP}/.env.dev.enc", f"{APP}/.env.example"]
    for path in ignored:
        assert run("git", "check-ignore", "-q", path, cwd=monorepo, check=False).returncode == 0, path
    for path in kept:
        assert run("git", "check-ignore", "-q", path, cwd=monorepo, check=False).returncode == 1, path


def test_second_app_leaves_the_first_and_the_shared_files_byte_for_byte(tmp_path: Path, age_key: AgeKey) -> None:
    repo = new_monorepo(tmp_path / "repo", answers(age_key))
    (repo / "Dockerfile").write_text((repo / "Dockerfile").read_text() + "# a team's own note\n")
    (repo / APP / APP / "handler.py").write_text("# user code\n")
    commit_all(repo, "user edits")
    before = files_of(repo)
    render(repo, {"app_name": "second_app", "environments": ["dev", "qa"]})
    after = files_of(repo)
    assert {path: after[path] for path in before} == before, "the second copy changed existing files"
    added = set(after) - set(before)
    assert {
        ".github/workflows/second_app.dev.deploy.yaml",
        ".github/workflows/second_app.qa.deploy.yaml",
        "second_app/.copier-answers.yml",
        "second_app/second_app/__init__.py",
    } <= added
    assert all(path.startswith(("second_app/", ".github/workflows/second_app.")) for path in added)


def test_shared_root_file_list_matches_the_template() -> None:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE))
    layout = env.get_template("extensions/layout.jinja").module
    listed = set(layout.shared_root_files().split()) | set(layout.team_root_files().split())
    assert not set(layout.shared_root_files().split()) & set(layout.team_root_files().split())
    root = TEMPLATE / "template"
    actual = {
        "/" + str(p.relative_to(root)).removesuffix(".jinja") + ("/" if p.is_dir() else "")
        for p in [*root.iterdir(), *(root / ".github/workflows").iterdir()]
        if "{" not in p.name and p.name not in {".github"}
    }
    assert actual == listed


def test_message_after_copy_is_filled_in(tmp_path: Path, age_key: AgeKey, capsys: pytest.CaptureFixture[str]) -> None:
    import copier

    copier.run_copy(str(TEMPLATE), tmp_path, data=answers(age_key), defaults=True, unsafe=False, vcs_ref="HEAD")
    captured = capsys.readouterr()
    message = captured.out + captured.err
    assert "uv run scripts/env_secrets.py encrypt joke_of_the_day" in message
    assert "uv run scripts/env_secrets.py local joke_of_the_day" in message
    assert "uv run scripts/doctor.py" in message
    assert "python scripts/" not in message, "stock Debian and Ubuntu have no `python`"
    assert "joke_of_the_day.dev.deploy.yaml" in message
    assert "FQDN" in message
    assert "joke-of-the-day-dev" in message


def test_template_file_names_can_be_checked_out_on_windows() -> None:
    forbidden = set('<>:"|?*\\')
    names = [p.relative_to(TEMPLATE) for p in (TEMPLATE / "template").rglob("*")]
    assert [str(n) for n in names if forbidden & set(n.name)] == []


def test_a_description_with_backslashes_and_quotes_renders_valid_python_and_toml(
    tmp_path: Path, age_key: AgeKey
) -> None:
    description = 'Reads C:\\Users\\me\\reports and "quotes" """three""" \\N{SNOWMAN} \\u00e9'
    render(tmp_path, answers(age_key, description=description))
    package = tmp_path / APP / APP / "__init__.py"
    module = ast.parse(package.read_text())
    assert ast.get_docstring(module, clean=False).splitlines()[0] == description
    assert tomllib.loads((tmp_path / APP / "pyproject.toml").read_text())
    assert description in (tmp_path / APP / "README.md").read_text()


def test_apps_md_add_an_app_command_adds_an_app(tmp_path: Path, age_key: AgeKey) -> None:
    """The generated guide's "Add an app" command, run as written from the monorepo root, with the
    template source it names (the one the first app was copied from)."""
    repo = new_monorepo(tmp_path / "repo", answers(age_key))
    guide = (repo / "APPS.md").read_text()
    section = guide[guide.index("## Add an app") :].split("\n## ")[0]
    [command] = [line.split("#")[0].strip() for line in section.splitlines() if line.startswith("uvx copier")]
    assert command == f"uvx copier@latest copy {TEMPLATE} ."  # copier from PyPI (tests/test_journey.py runs it)
    command = command.replace("uvx copier@latest", str(VENV_BIN / "copier"))  # the pinned copier, offline
    result = run("bash", "-c", f"{command} --vcs-ref HEAD --defaults --data app_name=second_app", cwd=repo)
    assert (repo / "second_app/.copier-answers.yml").is_file(), result.stdout + result.stderr
    assert (repo / ".github/workflows/second_app.prod.deploy.yaml").is_file()


def test_the_teams_package_holds_only_the_teams_code(monorepo: Path) -> None:
    """The runtime is in sdk_runtime/; the team's package is its handler, its settings and 3 lines of wiring."""
    package = monorepo / APP / APP
    assert sorted(p.name for p in package.iterdir()) == ["__init__.py", "handler.py", "settings.py"]
    lines = sum(len(p.read_text().splitlines()) for p in package.glob("*.py") if p.name != "handler.py")
    assert lines <= 200
    for path in [*package.glob("*.py"), *(monorepo / APP / "tests").glob("*.py")]:
        assert "sdk_runtime" not in path.name
    assert "YOUR CODE" in (package / "handler.py").read_text().splitlines()[0]
    assert "TEMPLATE-OWNED" in (monorepo / APP / "sdk_runtime" / "__init__.py").read_text().splitlines()[0]
