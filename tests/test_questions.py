"""Every answer that would break a deploy later is refused at `copier copy` time, with a message
that says what was wrong and what is allowed, and nothing is written."""

from __future__ import annotations

import keyword
import re
import sys
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from .conftest import TEMPLATE, AgeKey, answers, new_age_key, new_monorepo, render

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
    "app-uppercase": ({"app_name": "JokeOfTheDay"}, "only lowercase letters and underscores"),
    "app-hyphen": ({"app_name": "joke-of-the-day"}, "only lowercase letters and underscores"),
    "app-digit": ({"app_name": "joke2"}, "only lowercase letters and underscores"),
    "app-leading-underscore": ({"app_name": "_joke"}, "starts or ends with '_'"),
    "app-trailing-underscore": ({"app_name": "joke_"}, "starts or ends with '_'"),
    "app-double-underscore": ({"app_name": "joke__day"}, "holds '__'"),
    "app-keyword": ({"app_name": "class"}, "Python keyword"),
    "app-stdlib": ({"app_name": "json"}, "standard-library module"),
    "app-dependency": ({"app_name": "flask"}, "module the generated app imports"),
    "app-sdk": ({"app_name": "unique_sdk"}, "module the generated app imports"),
    # environments
    "env-not-a-list": ({"environments": "dev"}, "must be a list"),
    "env-empty": ({"environments": []}, "environments is empty"),
    "env-capitals": ({"environments": ["Dev"]}, "environment 'Dev' is not allowed"),
    "env-digit-first": ({"environments": ["1dev"]}, "environment '1dev' is not allowed"),
    "env-trailing-hyphen": ({"environments": ["dev-"]}, "environment 'dev-' is not allowed"),
    "env-double-hyphen": ({"environments": ["pre--prod"]}, "environment 'pre--prod' is not allowed"),
    "env-underscore": ({"environments": ["pre_prod"]}, "environment 'pre_prod' is not allowed"),
    "env-duplicate": ({"environments": ["dev", "prod", "dev"]}, "environment 'dev' is listed twice"),
    "env-azure-too-long": (
        {"app_name": LONG_APP, "environments": ["x", "staging"]},
        "environment 'staging': the Azure container app name 'a-rather-long-application-name-staging' has 38 "
        "characters, 6 more than Azure allows (32)",
    ),
    "env-any-branch-unknown": ({"any_branch_environments": ["staging"]}, "'staging' is not one of the environments"),
    # secrets
    "age-garbage": ({"age_public_key": "age1notakey"}, "is not an age public key"),
    "age-wrong-charset": ({"age_public_key": "age1" + "b" * 58}, "is not an age public key"),
    "age-private-key": ({"age_public_key": "AGE-SECRET-KEY-1" + "Q" * 58}, "age PRIVATE key"),
    # sizing
    "cpu-off-step": ({"cpu": 0.3}, "cpu 0.3 is not allowed"),
    "cpu-too-big": ({"cpu": 2.25}, "cpu 2.25 is not allowed"),
    "cpu-zero": ({"cpu": 0}, "is not allowed"),
    "min-replicas-negative": ({"min_replicas": -1}, "min_replicas must be between 0 and 300"),
    "max-below-min": ({"min_replicas": 3, "max_replicas": 2}, "max_replicas (2) is below min_replicas (3)"),
    "max-zero": ({"min_replicas": 0, "max_replicas": 0}, "max_replicas must be between 1 and 300"),
    "workers-zero": ({"gunicorn_workers": 0}, "gunicorn_workers must be between 1 and 16"),
    "threads-zero": ({"gunicorn_threads": 0}, "gunicorn_threads must be between 1 and 64"),
    # versions and ports
    "poetry-not-version": ({"poetry_version": "latest"}, "poetry_version 'latest' is not a version"),
    "poetry-too-old": ({"poetry_version": "1.7.1"}, "needs Poetry 1.8 or newer"),
    "sops-not-version": ({"sops_version": "3.8"}, "sops_version '3.8' is not a version"),
    "python-unsupported": ({"python_version": "3.10"}, "3.10"),
    "port-zero": ({"local_port": 0}, "local_port must be between 1 and 65535"),
    "port-too-big": ({"local_port": 70000}, "local_port must be between 1 and 65535"),
    # text
    "description-quote": ({"description": 'say "hi"'}, "without double quotes"),
    "module-name-empty": ({"platform_module_name": ""}, "platform_module_name must start with a letter or digit"),
}


@pytest.mark.parametrize(("overrides", "message"), REFUSALS.values(), ids=REFUSALS.keys())
def test_bad_answer_is_refused_with_a_precise_message(tmp_path: Path, age_key: AgeKey, overrides, message) -> None:
    assert message in refused(tmp_path, answers(age_key, **overrides))


def test_longest_allowed_name_pair_is_accepted(tmp_path: Path, age_key: AgeKey) -> None:
    # 'a-rather-long-application-name' + '-' + 'x' = 32 characters: exactly Azure's limit.
    render(tmp_path, answers(age_key, app_name=LONG_APP, environments=["x"]))
    assert (tmp_path / ".github/workflows" / f"{LONG_APP}.x.deploy.yaml").is_file()


def test_second_app_must_use_the_repository_key(tmp_path: Path, age_key: AgeKey) -> None:
    repo = new_monorepo(tmp_path / "repo", answers(age_key))
    before = sorted(p.name for p in repo.iterdir())
    other = new_age_key()
    with pytest.raises(ValueError, match=f"This repository encrypts with {age_key.public}"):
        render(repo, answers(other, app_name="second_app"))
    assert sorted(p.name for p in repo.iterdir()) == before


def test_second_app_must_use_the_repository_python(tmp_path: Path, age_key: AgeKey) -> None:
    repo = new_monorepo(tmp_path / "repo", answers(age_key, python_version="3.12"))
    with pytest.raises(ValueError, match=r"shared Dockerfile runs Python 3\.12"):
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
        "description",
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
