"""Secret guards for this monorepo, run by pre-commit (staged files) and CI (--all).

    python scripts/check_secrets.py FILE...    # check these files (pre-commit passes the staged ones)
    python scripts/check_secrets.py --all      # check every file git tracks

Refuses, with one line per problem:
  - a plain env file (.env, .env.<env>): secrets in clear text;
  - an encrypted env file (.env.enc, .env.<env>.enc) that is not empty and not a complete sops
    dotenv file (every value ENC[...], sops_mac and an age recipient present);
  - one encrypted for any recipient other than the repository's age key (.sops.yaml);
  - merge-conflict markers, as `copier update` leaves them.
Standard library only, so it runs anywhere Python 3.9+ does.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ENCRYPTED_ENV = re.compile(r"^\.env(\.[a-z][a-z0-9-]*)?\.enc$")
PLAIN_ENV = re.compile(r"^\.env(\.[A-Za-z0-9_-]+)?$")
AGE_KEY = re.compile(r"age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}")
CONFLICT_MARKERS = ("<<<<<<< ", ">>>>>>> ")
RECIPIENT = re.compile(r"^sops_age__list_\d+__map_recipient$")


def repository_keys(root: Path) -> set[str]:
    """The age public keys named in the repository's .sops.yaml."""
    config = root / ".sops.yaml"
    return set(AGE_KEY.findall(config.read_text())) if config.is_file() else set()


def is_plain_env(name: str) -> bool:
    return bool(PLAIN_ENV.match(name)) and name != ".env.example" and not name.endswith(".enc")


def encrypted_env_problems(text: str, keys: set[str]) -> list[str]:
    """What makes `text` something other than an empty file or a complete sops dotenv file for `keys`."""
    if not text.strip():
        return []  # no secrets yet: the image starts without decrypting
    if text.lstrip().startswith("{"):
        return [
            "sops wrote JSON (binary mode): encrypt with --input-type dotenv --output-type dotenv "
            "(python scripts/env_secrets.py encrypt does)"
        ]
    problems: list[str] = []
    metadata: dict[str, str] = {}
    recipients: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            if not line.startswith("#ENC["):
                problems.append(f"line {number}: comment in clear text (not encrypted by sops)")
            continue
        key, sep, value = line.partition("=")
        if not sep:
            problems.append(f"line {number}: not KEY=VALUE")
        elif key.startswith("sops_"):
            metadata[key] = value
            if RECIPIENT.match(key):
                recipients.add(value.strip())
        elif not (value.startswith("ENC[AES256_GCM,") and value.endswith("]")):
            problems.append(f"line {number}: {key} is in clear text (value not ENC[...])")
    if not metadata.get("sops_mac", "").startswith("ENC["):
        problems.append("no sops_mac: not a complete sops file")
    if not recipients:
        problems.append("no age recipient: not encrypted for the repository's age key")
    elif keys and recipients != keys:
        others = ", ".join(sorted(recipients - keys)) or "none"
        problems.append(
            f"encrypted for {', '.join(sorted(recipients))}, not for the repository key "
            f"{', '.join(sorted(keys))} (other recipients: {others}); re-encrypt it"
        )
    return problems


def conflict_lines(text: str) -> list[int]:
    return [n for n, line in enumerate(text.splitlines(), 1) if line.startswith(CONFLICT_MARKERS)]


def check_file(path: Path, keys: set[str]) -> list[str]:
    if is_plain_env(path.name):
        return [
            f"{path}: plain env file with secrets in clear text: do not commit it; "
            f"encrypt it (python scripts/env_secrets.py encrypt ...) and commit the .enc file"
        ]
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
        return []
    problems = (
        [f"{path}: {problem}" for problem in encrypted_env_problems(text, keys)]
        if ENCRYPTED_ENV.match(path.name)
        else []
    )
    if lines := conflict_lines(text):
        problems.append(f"{path}: merge-conflict markers on lines {', '.join(map(str, lines))}: resolve them")
    return problems


def tracked_files(root: Path) -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, text=True, check=True).stdout
    return [Path(name) for name in out.split("\0") if name]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Refuse plain or badly encrypted secrets and conflict markers.")
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--all", action="store_true", help="check every file git tracks")
    args = parser.parse_args(argv)
    root = Path.cwd()
    keys = repository_keys(root)
    files = tracked_files(root) if args.all else args.files
    problems = [problem for path in files for problem in check_file(path, keys)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"check_secrets: {len(problems)} problem(s) in {len(files)} file(s)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
