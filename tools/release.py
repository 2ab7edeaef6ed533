"""Cut a release of the template from its CHANGELOG: the newest entry names the version.

    python -m tools.release --check     # the newest CHANGELOG entry is a valid next release (CI)
    python -m tools.release             # tag HEAD as v<version> of the newest entry (annotated)
    python -m tools.release --if-new    # same, but succeed quietly when that tag exists already

A release is a git tag `vX.Y.Z` on main, whose message is the CHANGELOG entry. `copier copy` and
`copier update` take the newest tag. Entries look like `## X.Y.Z (YYYY-MM-DD)`; an entry of a
release that was never tagged names its commit: `## 0.1.0 (2026-11-29, commit 41f9d69)`.
The release workflow (.github/workflows/release.yaml) runs `--if-new` on every push to main, so
merging a pull request that adds an entry publishes the release.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parent.parent
HEADING = re.compile(r"^## (?P<version>\S+) \((?P<date>\d{4}-\d{2}-\d{2})(?:, commit (?P<commit>[0-9a-f]{7,40}))?\)$")


class ReleaseError(Exception):
    """Why this cannot be released; the message says what to fix."""


@dataclass(frozen=True)
class Entry:
    version: Version
    released: date
    commit: str | None  # set only for a release that was never tagged
    text: str

    @property
    def tag(self) -> str:
        return f"v{self.version}"


def entries(changelog: str) -> list[Entry]:
    """The CHANGELOG's release entries, newest first, each with its text."""
    found: list[Entry] = []
    lines = changelog.splitlines()
    starts = [n for n, line in enumerate(lines) if line.startswith("## ")]
    for index, start in enumerate(starts):
        match = HEADING.match(lines[start])
        if not match:
            raise ReleaseError(f"CHANGELOG.md line {start + 1}: expected '## X.Y.Z (YYYY-MM-DD)', got {lines[start]!r}")
        try:
            version = Version(match["version"])
        except InvalidVersion:
            raise ReleaseError(f"CHANGELOG.md line {start + 1}: {match['version']!r} is not a version") from None
        end = starts[index + 1] if index + 1 < len(starts) else len(lines)
        text = "\n".join(lines[start + 1 : end]).strip()
        if not text:
            raise ReleaseError(f"CHANGELOG.md: the entry for {version} says nothing")
        found.append(Entry(version, date.fromisoformat(match["date"]), match["commit"], text))
    if not found:
        raise ReleaseError("CHANGELOG.md has no release entry ('## X.Y.Z (YYYY-MM-DD)')")
    versions = [entry.version for entry in found]
    if versions != sorted(versions, reverse=True) or len(set(versions)) != len(versions):
        raise ReleaseError(f"CHANGELOG.md entries must be newest first, each version once: {versions}")
    return found


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def tags(cwd: Path = ROOT) -> dict[Version, str]:
    """Existing release tags: version -> tag name."""
    found = {}
    for name in git("tag", "--list", "v*", cwd=cwd).split():
        try:
            found[Version(name[1:])] = name
        except InvalidVersion:
            continue
    return found


def check(newest: Entry, existing: dict[Version, str]) -> None:
    """The newest entry can be released (or already is)."""
    if newest.commit:
        raise ReleaseError(f"the newest entry ({newest.version}) names a commit: only untagged old releases do")
    if newest.version not in existing and existing and newest.version < max(existing):
        raise ReleaseError(f"{newest.version} is older than the newest release {existing[max(existing)]}")


def release(cwd: Path = ROOT, if_new: bool = False, today: date | None = None) -> str:
    """Tag HEAD with the newest CHANGELOG entry; returns what was done."""
    newest = entries((cwd / "CHANGELOG.md").read_text())[0]
    existing = tags(cwd)
    check(newest, existing)
    if newest.version in existing:
        if if_new:
            return f"{newest.tag} exists already: nothing to release"
        raise ReleaseError(f"{newest.tag} exists already: add a new CHANGELOG entry first")
    if git("status", "--porcelain", cwd=cwd):
        raise ReleaseError("the working tree has uncommitted changes: commit them first")
    if newest.released > (today or date.today()):
        raise ReleaseError(f"the entry for {newest.version} is dated {newest.released}, in the future")
    git("tag", "--annotate", newest.tag, "--message", f"sdk-deploy-template {newest.version}\n\n{newest.text}", cwd=cwd)
    return f"tagged {git('rev-parse', '--short', 'HEAD', cwd=cwd).strip()} as {newest.tag}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="only check the CHANGELOG against the tags")
    mode.add_argument("--if-new", action="store_true", help="succeed when the newest entry is tagged already")
    args = parser.parse_args(argv)
    try:
        if args.check:
            newest = entries((ROOT / "CHANGELOG.md").read_text())[0]
            check(newest, tags())
            print(f"CHANGELOG.md: next release {newest.tag}")
        else:
            print(release(if_new=args.if_new))
    except ReleaseError as error:
        print(f"release: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
