"""Releases are cut from the CHANGELOG by tools/release.py (and the release workflow that runs it)."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from tools import release
from tools.template_repo import TemplateRepo, git

from .conftest import TEMPLATE, require_tool, run

ENTRY = "## {version} ({day})\n\n- {text}\n"


def changelog(*versions: str, day: str = "2026-11-29") -> str:
    body = "".join(ENTRY.format(version=v, day=day, text=f"what {v} changes") + "\n" for v in versions)
    return "# Changelog\n\nIntro.\n\n" + body


@pytest.fixture
def repo(tmp_path: Path) -> TemplateRepo:
    repo = TemplateRepo.init(tmp_path / "template")
    (repo.path / "CHANGELOG.md").write_text(changelog("0.1.0"))
    repo.commit("first")
    return repo


def test_this_repositorys_changelog_is_a_valid_next_release() -> None:
    newest, *older = release.entries((TEMPLATE / "CHANGELOG.md").read_text())
    release.check(newest, release.tags(TEMPLATE))
    assert newest.commit is None
    assert [entry.commit for entry in older if entry.version == release.Version("0.1.0")] == ["41f9d69"]


def test_release_tags_head_with_the_newest_entry(repo: TemplateRepo) -> None:
    assert release.release(repo.path).startswith("tagged ")
    assert git("tag", "--list", cwd=repo.path).split() == ["v0.1.0"]
    message = git("tag", "--list", "--format=%(contents)", "v0.1.0", cwd=repo.path)
    assert "sdk-deploy-template 0.1.0" in message
    assert "what 0.1.0 changes" in message
    assert git("rev-parse", "v0.1.0^{commit}", cwd=repo.path) == git("rev-parse", "HEAD", cwd=repo.path)


def test_the_next_release_needs_a_new_entry(repo: TemplateRepo) -> None:
    release.release(repo.path)
    with pytest.raises(release.ReleaseError, match=r"v0\.1\.0 exists already: add a new CHANGELOG entry"):
        release.release(repo.path)
    assert release.release(repo.path, if_new=True) == "v0.1.0 exists already: nothing to release"
    (repo.path / "CHANGELOG.md").write_text(changelog("0.2.0", "0.1.0"))
    repo.commit("0.2.0")
    release.release(repo.path)
    assert sorted(git("tag", "--list", cwd=repo.path).split()) == ["v0.1.0", "v0.2.0"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (changelog("0.1.0", "0.2.0"), "newest first"),
        (changelog("0.1.0", "0.1.0"), "newest first, each version once"),
        ("# Changelog\n\n## next\n\n- x\n", re.escape("expected '## X.Y.Z (YYYY-MM-DD)'")),
        ("# Changelog\n\n## 0.3.0 (2026-11-29)\n\n## 0.2.0 (2026-11-28)\n\n- x\n", "the entry for 0.3.0 says nothing"),
        ("# Changelog\n", "has no release entry"),
        (changelog("0.9.0", day="2999-01-01"), "in the future"),
    ],
    ids=["order", "duplicate", "heading", "empty", "none", "future"],
)
def test_a_bad_changelog_is_refused(repo: TemplateRepo, text: str, message: str) -> None:
    (repo.path / "CHANGELOG.md").write_text(text)
    repo.commit("bad changelog")
    with pytest.raises(release.ReleaseError, match=message):
        release.release(repo.path, today=date(2026, 11, 29))
    assert git("tag", "--list", cwd=repo.path) == ""


def test_a_dirty_tree_or_an_older_version_is_refused(repo: TemplateRepo) -> None:
    (repo.path / "CHANGELOG.md").write_text(changelog("0.5.0", "0.1.0"))
    repo.commit("0.5.0")
    release.release(repo.path)
    (repo.path / "CHANGELOG.md").write_text(changelog("0.4.0", "0.1.0"))
    repo.commit("a lower version")
    with pytest.raises(release.ReleaseError, match=r"0\.4\.0 is older than the newest release v0\.5\.0"):
        release.release(repo.path)
    (repo.path / "CHANGELOG.md").write_text(changelog("0.6.0", "0.5.0", "0.1.0"))
    with pytest.raises(release.ReleaseError, match="uncommitted changes"):
        release.release(repo.path)


def test_the_release_workflow_is_clean() -> None:
    workflows = TEMPLATE / ".github/workflows"
    run(require_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *workflows.glob("*.yaml"))
    result = run(require_tool("zizmor"), "--offline", "--no-progress", workflows, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "python -m tools.release --if-new" in (workflows / "release.yaml").read_text()
