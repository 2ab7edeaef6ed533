"""Versions of this template in a scratch git repository: the working tree as a release, then
changed and released again. Used by the update tests and the update benchmark."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IDENTITY = [("user.email", "template@example.com"), ("user.name", "Template"), ("commit.gpgsign", "false")]


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def configure(path: Path) -> None:
    for key, value in IDENTITY:
        git("config", key, value, cwd=path)


def init_repository(path: Path) -> Path:
    """A new git repository at `path` (branch main) with a committer identity of its own."""
    path.mkdir(parents=True, exist_ok=True)
    git("init", "-q", "-b", "main", cwd=path)
    configure(path)
    return path


def commit_all(path: Path, message: str = "commit") -> None:
    git("add", "-A", cwd=path)
    git("commit", "-q", "--allow-empty", "-m", message, cwd=path)


def working_tree_files(root: Path = ROOT) -> list[str]:
    """Tracked and untracked, not ignored: what the next commit of `root` would hold."""
    listed = git("ls-files", "-co", "--exclude-standard", "-z", cwd=root)
    return [name for name in listed.split("\0") if name and (root / name).is_file()]


def put_working_tree(destination: Path, root: Path = ROOT) -> None:
    for name in working_tree_files(root):
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)


class TemplateRepo:
    """A git repository holding releases of a template."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def init(cls, path: Path) -> TemplateRepo:
        return cls(init_repository(path))

    @classmethod
    def from_working_tree(cls, path: Path, tag: str = "v1.0.0") -> TemplateRepo:
        repo = cls.init(path)
        put_working_tree(path)
        repo.release(tag)
        return repo

    def edit(self, relpath: str, old: str, new: str) -> None:
        file = self.path / relpath
        text = file.read_text()
        if old not in text:
            raise AssertionError(f"{relpath} no longer contains {old!r}: update the caller")
        file.write_text(text.replace(old, new, 1))

    def commit(self, message: str) -> None:
        commit_all(self.path, message)

    def release(self, tag: str) -> str:
        self.commit(f"release {tag}")
        git("tag", tag, cwd=self.path)
        return tag
