"""The committed example monorepo (example/monorepo/), rendered from example/answers/*.yml.

    .venv/bin/python -m tools.example            # re-render it from the working tree (commit the result)
    .venv/bin/python -m tools.example --check    # fail if it differs from what the template renders

Reviewers read real output in pull requests, and the tests lint and type-check its Python in place.
The apps are copied in the order of their answers files' names, like a team adding one app after the
other. Two things are normalized, so the example does not depend on where and when it was rendered:
the template source (`_src_path`, a path on the maintainer's machine) reads SOURCE, and `_commit` is
the release the CHANGELOG's newest entry announces.
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import sys
import tempfile
from pathlib import Path

import copier
import yaml

from tools import release
from tools.template_repo import commit_all, init_repository

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example"
ANSWERS = EXAMPLE / "answers"
MONOREPO = EXAMPLE / "monorepo"
SOURCE = "gh:<org>/sdk-deploy-template"
CACHES = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".venv"}  # what tools leave behind


def render(destination: Path) -> Path:
    """Render every answers file into a new git repository at `destination`, one app after the other."""
    init_repository(destination)
    for answers_file in sorted(ANSWERS.glob("*.yml")):
        data = yaml.safe_load(answers_file.read_text())
        copier.run_copy(str(ROOT), destination, data=data, defaults=True, unsafe=False, quiet=True, vcs_ref="HEAD")
        commit_all(destination, f"Add {data['app_name']}")
    shutil.rmtree(destination / ".git")
    normalize(destination)
    return destination


def normalize(monorepo: Path) -> None:
    """Replace the machine's template path and the development version (see the module docstring)."""
    version = release.entries((ROOT / "CHANGELOG.md").read_text())[0].tag
    for path in monorepo.rglob("*"):
        if not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        if path.name == ".copier-answers.yml":
            lines = [f"_commit: {version}" if line.startswith("_commit: ") else line for line in text.splitlines()]
            text = "\n".join(lines) + "\n"
        if str(ROOT) in text:
            path.write_text(text.replace(str(ROOT), SOURCE))
        elif path.name == ".copier-answers.yml":
            path.write_text(text)


def differences(expected: Path, actual: Path) -> list[str]:
    """A unified diff, per file, between two trees (empty when they are equal)."""

    def files(root: Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file() and not CACHES & set(p.relative_to(root).parts)
        }

    want, got = files(expected), files(actual)
    out: list[str] = []
    for name in sorted(set(want) | set(got)):
        if want.get(name) == got.get(name):
            continue
        before = want.get(name, b"").decode(errors="replace").splitlines(keepends=True)
        after = got.get(name, b"").decode(errors="replace").splitlines(keepends=True)
        out.extend(difflib.unified_diff(after, before, f"example/monorepo/{name} (committed)", f"{name} (rendered)"))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on any difference")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rendered = render(Path(tmp) / "monorepo")
        if args.check:
            if diff := differences(rendered, MONOREPO):
                sys.stdout.writelines(diff)
                print(
                    "example/monorepo is stale: run `.venv/bin/python -m tools.example` and commit it", file=sys.stderr
                )
                return 1
            print("example/monorepo matches the template")
            return 0
        shutil.rmtree(MONOREPO, ignore_errors=True)
        shutil.copytree(rendered, MONOREPO)
    print(f"rendered {MONOREPO.relative_to(ROOT)}: review the diff (git diff -- example) and commit it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
