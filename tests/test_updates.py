"""`copier update` never loses work: real template versions are built in a temporary git repository
(the working tree, tagged; then changed and tagged again) and applied with copier's API, no trust."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import copier
import pytest
import yaml

from tools import pins, release
from tools.template_repo import TemplateRepo, configure, put_working_tree

from .conftest import (
    APP,
    TEMPLATE,
    VENV_BIN,
    AgeKey,
    answers,
    bare_machine_path,
    commit_all,
    files_of,
    new_monorepo,
    render,
    require_tool,
    run,
)

pytestmark = pytest.mark.slow

VERSIONS = "extensions/versions.jinja"
CURRENT_SHA = pins.versions().DEPLOY_ACTION["sha"]
NEW_SHA = "0123456789abcdef0123456789abcdef01234567"
TEAM_FILES = [f"{APP}/{APP}/handler.py", f"{APP}/{APP}/settings.py", f"{APP}/tests/test_handler.py"]
DEPLOY_WORKFLOW = (
    "template/.github/workflows/"
    "{% yield env from environments %}{{ app_name }}.{{ env }}.deploy.yaml{% endyield %}.jinja"
)


@pytest.fixture
def template(tmp_path: Path) -> TemplateRepo:
    """The working tree as release v1.0.0."""
    return TemplateRepo.from_working_tree(tmp_path / "template")


def release_v2(template: TemplateRepo) -> str:
    """A typical release: new action SHA, a Dockerfile fix, a new workflow step."""
    template.edit(VERSIONS, CURRENT_SHA, NEW_SHA)
    template.edit(
        "template/Dockerfile.jinja",
        "USER app\n",
        'LABEL org.opencontainers.image.vendor="sdk-deploy-template"\nUSER app\n',
    )
    template.edit(
        DEPLOY_WORKFLOW,
        "      - name: Summary\n",
        '      - name: Smoke test\n        run: echo "checking"\n\n      - name: Summary\n',
    )
    return template.release("v2.0.0")


def update(repo: Path, app: str = APP, **kwargs) -> None:
    kwargs.setdefault("defaults", True)
    copier.run_update(
        repo, answers_file=f"{app}/.copier-answers.yml", unsafe=False, overwrite=True, quiet=True, **kwargs
    )


def copy_at(tmp: Path, template: TemplateRepo, data: dict, ref: str = "v1.0.0") -> Path:
    return new_monorepo(tmp, data, src=template.path, vcs_ref=ref)


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def conflicted(repo: Path) -> list[str]:
    """Files with conflict markers at the start of a line (as copier writes them), and .rej files."""
    return sorted(
        name
        for name, content in files_of(repo).items()
        if name.endswith(".rej") or any(line.startswith((b"<<<<<<< ", b">>>>>>> ")) for line in content.splitlines())
    )


def test_release_reaches_the_app_and_user_edits_survive(
    tmp_path: Path, template: TemplateRepo, age_key: AgeKey
) -> None:
    repo = copy_at(tmp_path / "repo", template, answers(age_key))
    workflow = repo / f".github/workflows/{APP}.prod.deploy.yaml"
    append(repo / APP / APP / "handler.py", "\n\ndef my_helper() -> int:\n    return 42\n")
    append(repo / APP / "README.md", "\n## Our notes\n\nKeep this.\n")
    append(repo / APP / ".env.example", "MY_SETTING=\n")
    append(workflow, "\n      - name: Notify the team\n        run: echo deployed\n")
    commit_all(repo, "user edits")

    update(repo, vcs_ref=release_v2(template))

    assert conflicted(repo) == []
    assert NEW_SHA in workflow.read_text()
    assert CURRENT_SHA not in workflow.read_text()
    assert "Smoke test" in workflow.read_text()
    assert "Notify the team" in workflow.read_text()
    assert 'LABEL org.opencontainers.image.vendor="sdk-deploy-template"' in (repo / "Dockerfile").read_text()
    assert "def my_helper() -> int:" in (repo / APP / APP / "handler.py").read_text()
    assert "Keep this." in (repo / APP / "README.md").read_text()
    assert "MY_SETTING=" in (repo / APP / ".env.example").read_text()
    assert yaml.safe_load((repo / APP / ".copier-answers.yml").read_text())["_commit"] == "v2.0.0"
    run(require_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", workflow)


def test_colliding_edit_leaves_markers_that_the_checks_refuse(
    tmp_path: Path, template: TemplateRepo, age_key: AgeKey
) -> None:
    repo = copy_at(tmp_path / "repo", template, answers(age_key))
    workflow = repo / f".github/workflows/{APP}.prod.deploy.yaml"
    workflow.write_text(workflow.read_text().replace("timeout-minutes: 30", "timeout-minutes: 45"))
    commit_all(repo, "longer timeout")
    template.edit(
        DEPLOY_WORKFLOW,
        "timeout-minutes: 30",
        "timeout-minutes: 40",
    )
    update(repo, vcs_ref=template.release("v2.0.0"))

    assert f".github/workflows/{APP}.prod.deploy.yaml" in conflicted(repo)
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(workflow.read_text())
    guard = run("python3", "scripts/check_secrets.py", "--all", cwd=repo, check=False)
    assert guard.returncode == 1
    assert "merge-conflict markers" in guard.stderr
    pre_commit = run(require_tool("pre-commit"), "run", "--all-files", cwd=repo, check=False)
    assert pre_commit.returncode == 1
    assert "merge-conflict markers" in pre_commit.stdout


@pytest.mark.parametrize("per_environment_env_files", [False, True])
def test_adding_and_removing_environments(
    tmp_path: Path, template: TemplateRepo, age_key: AgeKey, per_environment_env_files: bool
) -> None:
    repo = copy_at(tmp_path / "repo", template, answers(age_key, per_environment_env_files=per_environment_env_files))
    workflows = repo / ".github/workflows"

    update(repo, data={"environments": ["dev", "staging", "prod"]})
    assert (workflows / f"{APP}.staging.deploy.yaml").is_file()
    assert (repo / APP / ".env.staging.enc").is_file() == per_environment_env_files
    secrets = repo / APP / (".env.dev.enc" if per_environment_env_files else ".env.enc")
    secrets.write_text("API_KEY=ENC[AES256_GCM,data:c2VjcmV0,iv:aXY=,tag:dGFn,type:str]\n")
    commit_all(repo, "add staging, encrypt settings")

    before = files_of(repo)
    update(repo, data={"environments": ["staging", "prod"]})
    after = files_of(repo)
    assert not (workflows / f"{APP}.dev.deploy.yaml").exists()
    changed = {name for name in set(before) | set(after) if before.get(name) != after.get(name)}
    assert changed == {f".github/workflows/{APP}.dev.deploy.yaml", f"{APP}/.copier-answers.yml", f"{APP}/README.md"}
    # An update never deletes encrypted secrets, even of a removed environment: that is the user's call.
    assert secrets.read_text().startswith("API_KEY=ENC[")


def test_updating_one_app_leaves_the_other_byte_for_byte(
    tmp_path: Path, template: TemplateRepo, age_key: AgeKey
) -> None:
    repo = copy_at(tmp_path / "repo", template, answers(age_key))
    new_monorepo(repo, {"app_name": "second_app"}, src=template.path, vcs_ref="v1.0.0")
    second = {n: c for n, c in files_of(repo).items() if n.startswith(("second_app/", ".github/workflows/second_app."))}
    update(repo, vcs_ref=release_v2(template))
    after = files_of(repo)
    assert {n: after.get(n) for n in second} == second
    assert NEW_SHA in (repo / f".github/workflows/{APP}.dev.deploy.yaml").read_text()


def test_renaming_an_app_on_update_is_refused(tmp_path: Path, template: TemplateRepo, age_key: AgeKey) -> None:
    repo = copy_at(tmp_path / "repo", template, answers(age_key))
    before = files_of(repo)
    with pytest.raises(
        ValueError, match=re.escape("app_name cannot change on update ('joke_of_the_day' -> 'renamed')")
    ):
        update(repo, data={"app_name": "renamed"})
    assert files_of(repo) == before


def earlier_releases() -> list[tuple[str, str]]:
    """(version, git ref) of every release before the one the CHANGELOG's newest entry announces:
    its tag, or, for a release that was never tagged, the commit its entry names."""
    tagged = set(run("git", "tag", "--list", "v*", cwd=TEMPLATE).stdout.split())
    found = []
    for entry in release.entries((TEMPLATE / "CHANGELOG.md").read_text())[1:]:
        if entry.tag in tagged:
            found.append((entry.tag, entry.tag))
        elif (
            entry.commit
            and run("git", "cat-file", "-e", f"{entry.commit}^{{commit}}", cwd=TEMPLATE, check=False).returncode == 0
        ):
            found.append((entry.tag, entry.commit))
    return found


def tree(root: Path) -> dict[str, bytes]:
    return {name: content for name, content in files_of(root).items()}


def test_updating_an_untouched_monorepo_gives_exactly_a_fresh_copy(tmp_path: Path, age_key: AgeKey) -> None:
    """From every earlier release (and a synthetic older one) to this one: the updated tree equals,
    file for file, what `copier copy` of this release renders with the same answers."""
    history = TemplateRepo(tmp_path / "history")
    run("git", "clone", "-q", TEMPLATE, history.path)
    configure(history.path)
    # A synthetic older release: another action pin, fewer Python choices, another Dockerfile comment.
    run("git", "rm", "-rq", "--ignore-unmatch", ".", cwd=history.path)
    put_working_tree(history.path)
    history.edit(VERSIONS, CURRENT_SHA, NEW_SHA)
    newest = pins.pythons()[-1]
    history.edit(VERSIONS, f'  "{newest}": "{pins.versions().BASE_IMAGES[newest]}",\n', "")
    history.edit("template/Dockerfile.jinja", "# sops, checked against", "# sops, downloaded; checked against")
    releases = [*earlier_releases(), ("v0.0.1-synthetic", history.release("v0.0.1"))]
    run("git", "rm", "-rq", ".", cwd=history.path)
    put_working_tree(history.path)
    current = history.release("v999.0.0")

    for version, ref in releases:
        data = answers(age_key, environments=["dev", "prod"], per_environment_env_files=True)
        updated = new_monorepo(tmp_path / f"from-{version}", data, src=history.path, vcs_ref=ref)
        old = tree(updated)
        update(updated, vcs_ref=current)
        assert conflicted(updated) == [], f"updating from {version} conflicts"
        recorded = yaml.safe_load((updated / APP / ".copier-answers.yml").read_text())
        assert recorded["_commit"] == current
        fresh = tmp_path / f"fresh-for-{version}"
        render(fresh, {k: v for k, v in recorded.items() if not k.startswith("_")}, src=history.path, vcs_ref=current)

        got, want = tree(updated), tree(fresh)
        if release.Version(version.lstrip("v").split("-")[0]) < release.Version("0.2.0") and "synthetic" not in version:
            # Since 0.2.0 the root README.md and .gitignore are the team's: an update keeps them as they were.
            for name in ["README.md", ".gitignore"]:
                assert got.pop(name) == old[name], f"{version}: the update changed the team's {name}"
                want.pop(name)
        if release.Version(version.lstrip("v").split("-")[0]) < release.Version("0.3.0") and "synthetic" not in version:
            # Since 0.3.0 the handler, the app's settings and its tests are the team's: an update keeps them.
            for name in TEAM_FILES:
                if name in old:
                    assert got.pop(name) == old[name], f"{version}: the update changed the team's {name}"
                    want.pop(name)
        assert sorted(got) == sorted(want), f"{version}: files differ"
        differing = [name for name in got if got[name] != want[name]]
        assert differing == [], f"{version}: content differs in {differing}"


@pytest.mark.parametrize("version", [tag for tag, _ in earlier_releases()] or ["none"])
def test_an_app_from_before_0_3_gets_the_runtime_keeps_its_code_and_is_told_once_what_to_change(
    tmp_path: Path, age_key: AgeKey, version: str
) -> None:
    """0.1.0 and 0.2.0 apps kept the runtime in their own package. The update moves it to sdk_runtime/, removes
    the old modules, keeps the team's handler.py byte for byte, and the app's tests (what check_app and
    every deploy run) stop with the one message saying what to change in it."""
    if version == "none":
        pytest.skip("this checkout has no release before 0.3.0")
    ref = dict(earlier_releases())[version]
    history = TemplateRepo(tmp_path / "history")
    run("git", "clone", "-q", TEMPLATE, history.path)
    configure(history.path)
    run("git", "rm", "-rq", ".", cwd=history.path)
    put_working_tree(history.path)
    current = history.release("v999.0.0")
    repo = new_monorepo(tmp_path / "repo", answers(age_key), src=history.path, vcs_ref=ref)
    handler = repo / APP / APP / "handler.py"
    append(handler, "\n\ndef team_helper() -> str:\n    return 'kept'\n")
    commit_all(repo, "the team's handler code")
    before = handler.read_bytes()

    update(repo, vcs_ref=current)

    assert conflicted(repo) == []
    assert handler.read_bytes() == before
    assert (repo / APP / "sdk_runtime" / "webhook.py").is_file()
    for moved in ["webhook.py", "dispatch.py", "server.py", "testing.py"]:
        assert not (repo / APP / APP / moved).exists(), f"{moved} was left in the team's package"
    result = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=repo / APP, check=False)
    assert result.returncode == 4, result.stdout + result.stderr
    said = result.stdout + result.stderr
    assert f"{APP}/handler.py was written for sdk-deploy-template before 0.3.0" in said
    assert "def handle(chat: Chat, settings: Settings) -> None" in said
    assert said.count("was written for sdk-deploy-template before 0.3.0") == 1


def test_update_apps_script_updates_every_app_and_stops_on_conflicts(
    tmp_path: Path, template: TemplateRepo, age_key: AgeKey
) -> None:
    repo = copy_at(tmp_path / "repo", template, answers(age_key))
    new_monorepo(repo, {"app_name": "second_app"}, src=template.path, vcs_ref="v1.0.0")
    copier_cli = str(VENV_BIN / "copier")
    v2 = release_v2(template)

    result = run(
        "python3",
        "scripts/update_apps.py",
        "--no-app-checks",
        "--vcs-ref",
        v2,
        cwd=repo,
        check=False,
        COPIER=copier_cli,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for checked in ["check_secrets.py --all", "doctor.py"]:
        assert f"== {APP}: scripts/{checked}" in result.stdout
    log = run("git", "log", "--format=%s", cwd=repo).stdout.splitlines()
    assert log[:2] == [f"Update {app} from sdk-deploy-template {v2}" for app in ("second_app", APP)]
    body = run("git", "log", "-1", "--format=%b", cwd=repo).stdout
    assert "App checks (scripts/check_app.py) were not run (--no-app-checks)." in body
    assert run("git", "status", "--porcelain", cwd=repo).stdout == ""
    for app in [APP, "second_app"]:
        assert NEW_SHA in (repo / f".github/workflows/{app}.prod.deploy.yaml").read_text()

    dockerfile = repo / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("EXPOSE 8080", "EXPOSE 8080 9090"))
    commit_all(repo, "a colliding edit")
    template.edit("template/Dockerfile.jinja", "EXPOSE 8080", "EXPOSE 8080/tcp")
    v3 = template.release("v3.0.0")
    stopped = run(
        "python3",
        "scripts/update_apps.py",
        "--no-app-checks",
        "--vcs-ref",
        v3,
        cwd=repo,
        check=False,
        COPIER=copier_cli,
    )
    assert stopped.returncode == 1
    assert f"{APP} needs attention: conflicts in Dockerfile" in stopped.stderr
    assert "second_app" not in stopped.stdout.split(f"== {APP}")[-1], "must stop at the first conflicting app"

    # Resolved (the template's side kept), not committed: the next run checks the app, then commits it.
    text = dockerfile.read_text()
    resolved = re.sub(r"<<<<<<< [^\n]*\n.*?=======\n(.*?)>>>>>>> [^\n]*\n", r"\1", text, flags=re.DOTALL)
    assert resolved != text
    dockerfile.write_text(resolved)
    resumed = run("python3", "scripts/update_apps.py", "--no-app-checks", "--vcs-ref", v3, cwd=repo, check=False,
                  COPIER=copier_cli)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = resumed.stdout.split(f"== {APP}: finishing its update")[1]
    assert f"== {APP}: scripts/doctor.py" in after, "the resolved app is checked before it is committed"
    log = run("git", "log", "--format=%s", cwd=repo).stdout.splitlines()
    assert log[:2] == [f"Update {app} from sdk-deploy-template {v3}" for app in ("second_app", APP)]
    assert "EXPOSE 8080/tcp" in run("git", "show", "HEAD~1:Dockerfile", cwd=repo).stdout
    assert run("git", "status", "--porcelain", cwd=repo).stdout == ""


def test_update_apps_refuses_a_dirty_tree(tmp_path: Path, template: TemplateRepo, age_key: AgeKey) -> None:
    repo = copy_at(tmp_path / "repo", template, answers(age_key))
    append(repo / APP / "README.md", "uncommitted\n")
    result = run("python3", "scripts/update_apps.py", cwd=repo, check=False, COPIER=str(VENV_BIN / "copier"))
    assert result.returncode == 2
    assert "uncommitted changes" in result.stderr


def test_update_apps_runs_the_app_checks_and_commits_nothing_red(
    tmp_path: Path, template: TemplateRepo, age_key: AgeKey
) -> None:
    """The checks it tells users to run, run before it commits: a failing app check leaves the update uncommitted."""
    repo = copy_at(tmp_path / "repo", template, answers(age_key, python_version="3.11"))
    append(repo / APP / APP / "handler.py", "\n\nimport os  # unused: ruff refuses it\n")
    commit_all(repo, "a lint error the team has not noticed")
    head = run("git", "rev-parse", "HEAD", cwd=repo).stdout
    result = run("python3", "scripts/update_apps.py", "--vcs-ref", release_v2(template), cwd=repo, check=False,
                 COPIER=str(VENV_BIN / "copier"))  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{APP} was updated but its checks fail: uv run scripts/check_app.py {APP}" in result.stderr
    assert "The update is left uncommitted" in result.stderr
    assert run("git", "rev-parse", "HEAD", cwd=repo).stdout == head
    assert NEW_SHA in (repo / f".github/workflows/{APP}.prod.deploy.yaml").read_text()  # there to review


@pytest.mark.parametrize("case", ["wrong-copier", "no-copier-nor-uv", "no-git-repository"])
def test_update_apps_explains_a_missing_tool_or_repository(tmp_path: Path, age_key: AgeKey, case: str) -> None:
    repo = new_monorepo(tmp_path / "repo", answers(age_key))
    if case == "no-git-repository":
        shutil.rmtree(repo / ".git")
    environment = {
        "wrong-copier": {"COPIER": "copier-that-is-not-installed"},
        "no-copier-nor-uv": {"PATH": bare_machine_path(tmp_path / "bin")},
    }.get(case, {})
    result = run("python3", "scripts/update_apps.py", cwd=repo, check=False, **environment)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    expected = {
        "wrong-copier": "COPIER: 'copier-that-is-not-installed' not found",
        "no-copier-nor-uv": "copier not found, nor uv or pipx to fetch it",
        "no-git-repository": "not inside a git repository",
    }[case]
    assert expected in result.stderr


@pytest.mark.slow
def test_update_apps_fetches_copier_through_uvx(tmp_path: Path, template: TemplateRepo, age_key: AgeKey) -> None:
    """No copier on PATH, only uv: update_apps runs copier from PyPI through uvx."""
    repo = copy_at(tmp_path / "repo", template, answers(age_key))
    v2 = release_v2(template)
    path = bare_machine_path(tmp_path / "bin", "uv", "uvx")
    result = run("python3", "scripts/update_apps.py", "--no-app-checks", "--vcs-ref", v2, cwd=repo, check=False,
                 PATH=path)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"== {APP}: uvx --from 'copier>=9.19' copier update" in result.stdout
    subject = run("git", "log", "-1", "--format=%s", cwd=repo).stdout.strip()
    assert subject == f"Update {APP} from sdk-deploy-template {v2}"


def test_copier_update_prints_no_missing_file_warning(tmp_path: Path, template: TemplateRepo, age_key: AgeKey) -> None:
    """copier's scratch renders of the old and new release do not read the monorepo's files."""
    repo = copy_at(tmp_path / "repo", template, answers(age_key))
    result = run(VENV_BIN / "copier", "update", "--defaults", "-a", f"{APP}/.copier-answers.yml",
                 "--vcs-ref", release_v2(template), cwd=repo)  # fmt: skip
    assert "MissingFileWarning" not in result.stderr, result.stderr
    assert NEW_SHA in (repo / f".github/workflows/{APP}.prod.deploy.yaml").read_text()


def test_copier_yml_is_clean_under_yamllint() -> None:
    """Duplicate keys (YAML keeps the last one silently) and the like."""
    run(
        VENV_BIN / "yamllint",
        "-d",
        "{extends: default, rules: {line-length: {max: 120}, document-start: disable, truthy: {check-keys: false}}}",
        "--strict",
        TEMPLATE / "copier.yml",
    )
