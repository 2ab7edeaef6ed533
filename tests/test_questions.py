"""Every answer that would break a deploy later is refused at `copier copy` time, with a message
that says what was wrong and what is allowed, and nothing is written."""

from __future__ import annotations

import keyword
import re
import sys
from pathlib import Path
from typing import Any

import copier
import jinja2
import pytest
import yaml

from tools import pins

from .conftest import (
    APP,
    TEMPLATE,
    VENV_BIN,
    AgeKey,
    answers,
    commit_all,
    files_of,
    new_age_key,
    new_monorepo,
    render,
    run,
)

LONG_APP = "a_rather_long_application_name"  # 30 characters


def refused(tmp_path: Path, data: dict[str, Any]) -> str:
    """Render with `data`; return copier's refusal message, and check nothing was written."""
    dst = tmp_path / "repo"
    with pytest.raises(ValueError, match=r"Validation error|Invalid choice|not a valid") as error:
        render(dst, data)
    assert not dst.exists() or not any(dst.iterdir()), "a refused answer left files behind"
    return str(error.value)


REFUSALS = {
    # app_name
    "app-uppercase": ({"app_name": "JokeOfTheDay"}, "use lowercase letters and '_' only"),
    "app-hyphen": ({"app_name": "joke-of-the-day"}, "use lowercase letters and '_' only"),
    "app-digit": ({"app_name": "joke2"}, "use lowercase letters and '_' only"),
    "app-leading-underscore": ({"app_name": "_joke"}, "starts or ends with '_'"),
    "app-trailing-underscore": ({"app_name": "joke_"}, "starts or ends with '_'"),
    "app-double-underscore": ({"app_name": "joke__day"}, "holds '__'"),
    "app-keyword": ({"app_name": "class"}, "Python keyword"),
    "app-stdlib": ({"app_name": "json"}, "standard-library module"),
    "app-dependency": ({"app_name": "flask"}, "module the app or its tools import"),
    "app-sdk": ({"app_name": "unique_sdk"}, "module the app or its tools import"),
    "app-plugin-namespace": ({"app_name": "tiktoken_ext"}, "module the app or its tools import"),
    "app-windows-device": ({"app_name": "con"}, "device name on Windows"),
    "app-root-folder": ({"app_name": "scripts"}, "taken by the monorepo's own files"),
    "app-root-file-any-case": ({"app_name": "dockerfile"}, "taken by the monorepo's own files"),
    "app-trailing-newline": ({"app_name": "joke\n"}, "holds a newline or control character"),
    # environments
    "env-not-a-list": ({"environments": "dev"}, "must be a list"),
    "env-empty": ({"environments": []}, "environments is empty"),
    "env-capitals": ({"environments": ["Dev"]}, "environment 'Dev' is not allowed"),
    "env-digit-first": ({"environments": ["1dev"]}, "environment '1dev' is not allowed"),
    "env-trailing-hyphen": ({"environments": ["dev-"]}, "environment 'dev-' is not allowed"),
    "env-double-hyphen": ({"environments": ["pre--prod"]}, "environment 'pre--prod' is not allowed"),
    "env-underscore": ({"environments": ["pre_prod"]}, "environment 'pre_prod' is not allowed"),
    "env-trailing-newline": ({"environments": ["dev\n"]}, "holds a newline or control character"),
    "env-duplicate": ({"environments": ["dev", "prod", "dev"]}, "environment 'dev' is listed twice"),
    "env-azure-too-long": (
        {"app_name": LONG_APP, "environments": ["x", "staging"]},
        "environment 'staging': Azure name too long (38 > 32 characters)",
    ),
    "env-any-branch-unknown": ({"any_branch_environments": ["staging"]}, "'staging' is not one of the environments"),
    # deployment
    "location-not-a-region": ({"location": "Switzerland North"}, "is not an Azure region name"),
    "location-typo": ({"location": "switzerlandnorht"}, "is not an Azure region name"),
    "cpu-off-step": ({"cpu": 0.3}, "cpu 0.3 is not allowed"),
    "cpu-too-big": ({"cpu": 2.25}, "cpu 2.25 is not allowed"),
    "cpu-zero": ({"cpu": 0}, "is not allowed"),
    "min-replicas-zero": ({"min_replicas": 0}, "min_replicas must be between 1 and 300"),
    "min-replicas-negative": ({"min_replicas": -1}, "min_replicas must be between 1 and 300"),
    "max-below-min": ({"min_replicas": 3, "max_replicas": 2}, "max_replicas (2) is below min_replicas (3)"),
    "max-zero": ({"max_replicas": 0}, "max_replicas must be between 1 and 300"),
    "workers-zero": ({"gunicorn_workers": 0}, "gunicorn_workers must be between 1 and 16"),
    "threads-zero": ({"gunicorn_threads": 0}, "gunicorn_threads must be between 1 and 64"),
    # secrets
    "age-garbage": ({"age_public_key": "age1notakey"}, "Not an age public key"),
    "age-wrong-charset": ({"age_public_key": "age1" + "b" * 58}, "Not an age public key"),
    "age-private-key": ({"age_public_key": "AGE-SECRET-KEY-1" + "Q" * 58}, "age PRIVATE key"),
    "age-trailing-newline": ({"age_public_key": None}, "holds a newline or control character"),
    "age-bad-checksum": ({"age_public_key": "typo"}, "bech32 checksum does not match"),
    # versions and ports
    "poetry-not-version": ({"poetry_version": "latest"}, "poetry_version 'latest' is not a version"),
    "poetry-too-old": ({"poetry_version": "1.7.1"}, "need Poetry 1.8 or newer"),
    "sops-not-version": ({"sops_version": "3.8"}, "sops_version '3.8' is not a version"),
    "python-unsupported": ({"python_version": "3.10"}, "3.10"),
    "port-zero": ({"local_port": 0}, "local_port must be between 1 and 65535"),
    "port-too-big": ({"local_port": 70000}, "local_port must be between 1 and 65535"),
    # text
    "description-empty": ({"description": "  "}, "description is empty"),
    "description-two-lines": ({"description": "one\ntwo"}, "holds a newline or control character"),
    "module-name-empty": ({"platform_module_name": ""}, "platform_module_name '' is not allowed"),
    "module-name-tab": ({"platform_module_name": "MY\tMODULE"}, "holds a newline or control character"),
    # values the template computes
    "computed-memory": ({"memory": "999"}, "memory is computed by the template"),
    "computed-env-files": ({"env_files": [".env.x.enc"]}, "env_files is computed by the template"),
    "computed-poetry": ({"effective_poetry_version": "0.1"}, "effective_poetry_version is computed"),
    "computed-sops": ({"effective_sops_version": "0.1"}, "effective_sops_version is computed"),
    "computed-rerender": ({"rerender": True}, "rerender is computed by the template"),
}


def with_key_variant(key: AgeKey, overrides: dict[str, Any]) -> dict[str, Any]:
    """Age-key cases need the session's real key: a trailing newline, or one character changed."""
    if "age_public_key" not in overrides or overrides["age_public_key"] not in (None, "typo"):
        return overrides
    if overrides["age_public_key"] is None:
        return {"age_public_key": key.public + "\n"}
    position = 10
    changed = "q" if key.public[position] != "q" else "p"
    return {"age_public_key": key.public[:position] + changed + key.public[position + 1 :]}


@pytest.mark.parametrize(("overrides", "message"), REFUSALS.values(), ids=REFUSALS.keys())
def test_bad_answer_is_refused_with_a_precise_message(tmp_path: Path, age_key: AgeKey, overrides, message) -> None:
    error = refused(tmp_path, answers(age_key, **with_key_variant(age_key, overrides)))
    assert message in error
    first_line = error.split(": ", 1)[-1].splitlines()[0] if "Validation error" in error else error.splitlines()[0]
    assert len(first_line) <= 80, f"copier shows one line at the prompt; this one is cut: {first_line!r}"


def test_longest_allowed_name_pair_is_accepted(tmp_path: Path, age_key: AgeKey) -> None:
    # 'a-rather-long-application-name' + '-' + 'x' = 32 characters: exactly Azure's limit.
    render(tmp_path, answers(age_key, app_name=LONG_APP, environments=["x"]))
    assert (tmp_path / ".github/workflows" / f"{LONG_APP}.x.deploy.yaml").is_file()


def test_second_app_must_use_the_repository_key(tmp_path: Path, age_key: AgeKey) -> None:
    repo = new_monorepo(tmp_path / "repo", answers(age_key))
    before = sorted(p.name for p in repo.iterdir())
    other = new_age_key()
    with pytest.raises(ValueError, match=f"(?s)another age key.*It is {age_key.public}"):
        render(repo, answers(other, app_name="second_app"))
    assert sorted(p.name for p in repo.iterdir()) == before


def test_second_app_must_use_the_repository_python(tmp_path: Path, age_key: AgeKey) -> None:
    repo = new_monorepo(tmp_path / "repo", answers(age_key, python_version="3.12"))
    with pytest.raises(ValueError, match=r"shared image runs Python 3\.12"):
        render(repo, answers(age_key, app_name="second_app", python_version="3.13"))


def test_second_app_takes_repository_settings_as_defaults(tmp_path: Path, age_key: AgeKey) -> None:
    repo = new_monorepo(tmp_path / "repo", answers(age_key, python_version="3.13"))
    render(repo, {"app_name": "second_app"})  # no key, no python: both come from .sdk-deploy.yml
    recorded = yaml.safe_load((repo / "second_app/.copier-answers.yml").read_text())
    assert recorded["age_public_key"] == age_key.public
    assert recorded["python_version"] == "3.13"


def test_age_public_key_has_no_default_on_a_new_repository(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r'Question "age_public_key" is required'):
        render(tmp_path / "repo", {"app_name": "joke"})


def _naming_module() -> Any:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE), autoescape=False)
    return env.get_template("extensions/naming.jinja").module


def test_reserved_names_cover_this_python() -> None:
    naming = _naming_module()
    pattern = re.compile(r"^[a-z][a-z_]*[a-z]$")
    stdlib = {name for name in sys.stdlib_module_names if pattern.match(name)}
    assert stdlib <= set(naming.STDLIB_MODULES), (
        f"add to extensions/naming.jinja: {sorted(stdlib - set(naming.STDLIB_MODULES))}"
    )
    assert {k for k in keyword.kwlist if pattern.match(k)} <= set(naming.PYTHON_KEYWORDS)


def test_every_question_has_help() -> None:
    questions = {
        k: v for k, v in yaml.safe_load((TEMPLATE / "copier.yml").read_text()).items() if not k.startswith("_")
    }
    asked = {name for name, spec in questions.items() if spec.get("when") is not False}
    assert {name for name in asked if not questions[name].get("help")} == set()
    public = {
        "app_name",
        "adopt",
        "description",
        "platform_module_name",
        "any_branch_environments",
        "location",
        "environments",
        "age_public_key",
        "per_environment_env_files",
        "python_version",
        "poetry_version",
        "sops_version",
        "cpu",
        "min_replicas",
        "max_replicas",
        "gunicorn_workers",
        "gunicorn_threads",
        "local_port",
    }
    assert public <= asked, "answer keys are public interface: never rename or remove them"


def help_messages(tmp_path: Path, data: dict[str, Any]) -> dict[str, str]:
    """What the interactive prompt prints for each question, rendered by copier itself."""
    from copier._main import Worker
    from copier._user_data import Question

    with Worker(
        src_path=str(TEMPLATE), dst_path=tmp_path, vcs_ref="HEAD", data=data, defaults=True, unsafe=False
    ) as worker:
        worker._ask()
        messages = {
            name: Question(
                answers=worker.answers,
                context=worker._render_context(),
                jinja_env=worker.jinja_env,
                settings=worker.settings,
                var_name=name,
                **details,
            ).get_message()
            for name, details in worker.template.questions_data.items()
            if details.get("when") is not False
        }
    return messages


# copier prints each help before its prompt, after a 2-cell emoji and a space; a line longer than
# the terminal is cut there, not wrapped.
PROMPT_WIDTH = 80 - 3


@pytest.mark.parametrize("app", [APP, LONG_APP])
def test_help_lines_show_whole_at_an_80_column_prompt(tmp_path: Path, age_key: AgeKey, app: str) -> None:
    """Every line of every question's help, as copier renders it (with the app name in it)."""
    data = answers(age_key, app_name=app, environments=["x"])  # the longest name Azure allows with one env
    for question, message in help_messages(tmp_path, data).items():
        for line in message.splitlines():
            assert len(line.rstrip()) <= PROMPT_WIDTH, f"{question}: cut at 80 columns: {line!r}"


def test_help_texts_show_real_values(tmp_path: Path, age_key: AgeKey) -> None:
    messages = help_messages(tmp_path, answers(age_key))
    for name, message in messages.items():
        assert not re.search(r"\(now\s*\)|e\.g\.\s*[),.]|\{\{|\{%", message), f"{name}: {message!r}"
    versions = pins.versions()
    assert f"(now {versions.POETRY_VERSION})" in " ".join(messages["poetry_version"].split())
    assert f"(now {versions.SOPS_VERSION})" in " ".join(messages["sops_version"].split())
    assert f"Is {APP}/ an existing hand-made app" in messages["adopt"]


def test_a_relative_template_source_is_refused_with_the_command_to_use(tmp_path: Path, age_key: AgeKey) -> None:
    """copier records the source as given; `_src_path: .` would make every later update fail."""
    result = run(
        VENV_BIN / "copier",
        "copy",
        "--vcs-ref",
        "HEAD",
        "--defaults",
        "--data",
        f"app_name={APP}",
        "--data",
        f"age_public_key={age_key.public}",
        ".",
        tmp_path / "repo",
        cwd=TEMPLATE,
        check=False,
    )
    assert result.returncode != 0
    assert "The template source '.' is a relative path" in result.stderr
    assert 'copier copy --vcs-ref HEAD "$(pwd)" path/to/monorepo' in result.stderr
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


def test_copying_an_app_already_under_the_template_is_refused(tmp_path: Path, age_key: AgeKey) -> None:
    repo = new_monorepo(tmp_path / "repo", answers(age_key))
    before = files_of(repo)
    with pytest.raises(ValueError, match=r"already under the template: use copier update"):
        render(repo, answers(age_key))
    assert files_of(repo) == before


def test_overwriting_an_app_already_under_the_template_is_refused(tmp_path: Path, age_key: AgeKey) -> None:
    """`copier copy --overwrite` would re-render the app; `copier recopy` still works, and even it leaves
    the team's own files (handler.py, settings.py, tests/test_handler.py) alone."""
    repo = new_monorepo(tmp_path / "repo", answers(age_key))
    handler = repo / APP / APP / "handler.py"
    handler.write_text(handler.read_text() + "# the team's code\n")
    config = repo / APP / "gunicorn.conf.py"
    config.write_text(config.read_text() + "# an edit of the template's file\n")
    commit_all(repo)
    before = files_of(repo)
    with pytest.raises(ValueError, match=r"already under the template: use copier update") as error:
        render(repo, answers(age_key), overwrite=True)
    assert "copier update -a joke_of_the_day/.copier-answers.yml" in str(error.value)
    assert files_of(repo) == before
    copier.run_recopy(repo, answers_file=f"{APP}/.copier-answers.yml", vcs_ref="HEAD", defaults=True,
                      overwrite=True, unsafe=False, quiet=True)  # fmt: skip
    assert "# an edit of the template's" not in config.read_text()  # what recopy is for: a fresh render
    assert "# the team's code" in handler.read_text()  # but the team's files are never rendered again


def test_a_new_app_named_like_an_existing_folder_is_refused(tmp_path: Path, age_key: AgeKey) -> None:
    repo = new_monorepo(tmp_path / "repo", answers(age_key))
    (repo / "docs").mkdir()
    (repo / "docs" / "README.md").write_text("# Our docs\n")
    commit_all(repo)
    before = files_of(repo)
    for overwrite in (False, True):
        with pytest.raises(ValueError, match=r"'docs/' already exists") as error:
            render(repo, {"app_name": "docs"}, overwrite=overwrite)
        message = str(error.value).split(": ", 1)[-1]
        assert len(message.splitlines()[0]) <= 80, message
        assert "--data adopt=true" in message
        assert files_of(repo) == before


def test_a_first_app_named_like_an_existing_folder_is_refused(tmp_path: Path, age_key: AgeKey) -> None:
    """No app under the template yet: the repository's own .sops.yaml is read through the folder."""
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "README.md").write_text("# Our docs\n")
    (repo / ".sops.yaml").write_text("creation_rules:\n  - path_regex: secrets/.*\n")
    before = files_of(repo)
    with pytest.raises(ValueError, match=r"'docs/' already exists"):
        render(repo, answers(age_key, app_name="docs"), overwrite=True)
    assert files_of(repo) == before


def test_adopting_a_folder_that_does_not_exist_is_refused(tmp_path: Path, age_key: AgeKey) -> None:
    """A typo in the app name would write a ghost app beside the real one."""
    first = tmp_path / "first"  # the repository's first copy
    error = refused(first, answers(age_key, app_name="quotez", adopt=True, environments=["dev", "prod"]))
    assert "adopt=true, but there is no app 'quotez' to adopt" in error
    repo = new_monorepo(tmp_path / "repo", answers(age_key))  # a later copy
    before = files_of(repo)
    with pytest.raises(ValueError, match=r"no app 'quotez' to adopt"):
        render(repo, {"app_name": "quotez", "adopt": True, "environments": ["dev", "prod"]}, overwrite=True)
    assert files_of(repo) == before


def test_template_owned_versions_cannot_be_overridden_with_data(tmp_path: Path, age_key: AgeKey) -> None:
    """Pins are not answers: --data with their old names is ignored, and the workflow stays pinned."""
    render(tmp_path, answers(age_key, deploy_action_sha="0" * 40, checkout_action="evil/action@main"))
    workflow = (tmp_path / f".github/workflows/{APP}.prod.deploy.yaml").read_text()
    assert pins.uses(pins.versions().DEPLOY_ACTION) in workflow
    assert "0" * 40 not in workflow
    assert "evil/action" not in workflow
    recorded = yaml.safe_load((tmp_path / APP / ".copier-answers.yml").read_text())
    assert "deploy_action_sha" not in recorded


def test_every_computed_value_refuses_data() -> None:
    """Each `when: false` value has a validator that refuses --data (REFUSALS holds one case each)."""
    questions = yaml.safe_load((TEMPLATE / "copier.yml").read_text())
    computed = {name for name, spec in questions.items() if isinstance(spec, dict) and spec.get("when") is False}
    assert computed
    for name in computed:
        assert "computed_error" in questions[name].get("validator", ""), name
    refused_keys = {key for overrides, _ in REFUSALS.values() for key in overrides}
    assert computed <= refused_keys, f"add a REFUSALS case for {sorted(computed - refused_keys)}"
