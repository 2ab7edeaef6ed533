"""Secret guards for this monorepo, run by pre-commit (staged files) and CI (--all).

    python3 scripts/check_secrets.py FILE...    # check these files (pre-commit passes the staged ones)
    python3 scripts/check_secrets.py --all      # check every file git tracks

Refuses, with one line per problem that says what to do:
  - a plain env file (.env, .env.<env>, .envrc, prod.env, ...; in any case, also inside such a folder);
  - an encrypted env file (.env.enc, .env.<env>.enc, ...) that is not exactly what sops writes for a
    dotenv file: UTF-8 with LF line ends, every comment and every non-empty value ENC[...] (sops leaves
    empty values as they are: they are fine), each name once, no metadata but sops' own, encrypted only
    for age keys that .sops.yaml names (which environment's key, with one key per environment, is
    doctor's check: it reads .sops.yaml's rules with a YAML parser), no value too long to start a container
    (128 KiB); CRLF line ends and names or metadata twice (two encryptions merged) are found without
    the key, so CI catches what the container could not decrypt;
  - a value that looks real in .env.example (committed, and read by anyone who reads the repository)
    for a secret-like NAME (SECRET_NAME below: *KEY*, *SECRET*, *TOKEN*, *PASSWORD*, connection strings)
    or a value holding credentials (a URL with user:password@, AccountKey=, Password=): only a
    placeholder is allowed there (PLACEHOLDER below), commented-out lines included;
  - any file that holds an age private key (AGE-SECRET-KEY-1...), whatever its name;
  - merge-conflict markers, as `copier update` leaves them.
Standard library only, so it runs anywhere Python 3.9+ does.
"""

from __future__ import annotations

import argparse
import codecs
import fnmatch
import re
import subprocess
import sys
from pathlib import Path

# Env file names: gitignore patterns matched against each file and folder name in lower case; the last
# match decides and "!" keeps the file. The same patterns as the env-file block of .gitignore and of
# the .dockerignore files, so the guard refuses exactly the names that git and the images leave out.
ENV_FILE_PATTERNS = (
    ".env*",
    "*.env",
    "*.env.*",
    "!.env.example",
    "!.env*.enc",
    "!*.env.enc",
)
AGE_PUBLIC_KEY = re.compile(r"age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}")
AGE_PRIVATE_KEY = re.compile(rb"AGE-SECRET-KEY-(?:[A-Z0-9]+-)*1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58,}", re.IGNORECASE)
CONFLICT_MARKERS = ("<<<<<<< ", ">>>>>>> ")
# NAME=value as sops writes it; `export NAME` and spaces before `=` come from a plain file written so,
# and sops and the app (python-dotenv) both read them as NAME.
NAME = re.compile(r"(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*")
# Linux refuses one environment string ("NAME=value" and its NUL) longer than this: the container would not start.
MAX_VARIABLE_BYTES = 128 * 1024
DATA = re.compile(r"ENC\[AES256_GCM,data:([A-Za-z0-9+/]*)(=*),")
BASE64 = "[A-Za-z0-9+/]*={0,2}"
ENCRYPTED = {
    kind: re.compile(rf"ENC\[AES256_GCM,data:{BASE64},iv:{BASE64},tag:{BASE64},type:{kind}\]")
    for kind in ("str", "comment")
}
# The metadata sops writes into a dotenv file encrypted for age keys (N: the recipient's index) and the
# shape of each value; the template's tests compare this table with what the real sops writes.
SOPS_METADATA = {
    "sops_age__list_N__map_enc": re.compile(
        r"-----BEGIN AGE ENCRYPTED FILE-----(\\n[A-Za-z0-9+/=]+)+\\n-----END AGE ENCRYPTED FILE-----\\n"
    ),
    "sops_age__list_N__map_recipient": AGE_PUBLIC_KEY,
    "sops_lastmodified": re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"),
    "sops_mac": ENCRYPTED["str"],
    "sops_unencrypted_suffix": re.compile("_unencrypted"),
    "sops_version": re.compile(r"\d+\.\d+\.\d+"),
}
REQUIRED_METADATA = ("sops_lastmodified", "sops_mac", "sops_version")
# .env.example: a NAME is secret-like when one of its _-separated words is one of these, or when it
# names a connection string; the value of such a NAME must be a placeholder.
SECRET_WORDS = re.compile(
    r"(?:^|_)(?:(?:API|ACCESS|ACCOUNT|APP|MASTER|PRIVATE|SECRET|SIGNING|ENCRYPTION)?KEYS?|[A-Z]*SECRETS?"
    r"|[A-Z]*TOKENS?|[A-Z]*PASSWORDS?|PASSWD|PWD|PASSPHRASE|CREDENTIALS?|SAS|DSN)(?:_|$)"
    r"|CONNECTION_?STRING|CONN_?STR|DATABASE_URL",
    re.IGNORECASE,
)
# Credentials inside any value: a URL with user:password@, Azure's AccountKey= and SharedAccessKey=,
# ADO.NET's Password= / Pwd=.
CREDENTIALS = re.compile(r"://[^/\s:@]*:[^/\s@]+@|(?:AccountKey|SharedAccessKey|Password|Pwd)=", re.IGNORECASE)
# A placeholder: empty, <anything>, ${VARIABLE}, change-me / changeme / replace-me, xxx..., ***...,
# ..., your-... / your_..., todo; and Azurite's UseDevelopmentStorage=true (the local emulator, no secret).
PLACEHOLDER = re.compile(
    r"|<[^<>]*>|\$\{[A-Za-z_][A-Za-z0-9_]*\}|(?:change|replace)[-_ ]?me|x{3,}|\*{3,}|\.{3,}|your[-_][\w.-]*|todo"
    r"|UseDevelopmentStorage=true",
    re.IGNORECASE,
)
EXAMPLE_RULE = (
    "leave it empty or write a placeholder: <...>, change-me, xxx, your-... (.env.example is committed; "
    "real values go into <app>/.env for local runs, or the encrypted env file)"
)


def repository_keys(root: Path) -> set[str]:
    """The age public keys named in the repository's .sops.yaml."""
    config = root / ".sops.yaml"
    return set(AGE_PUBLIC_KEY.findall(config.read_text())) if config.is_file() else set()


def ignored(name: str) -> bool | None:
    """Whether ENV_FILE_PATTERNS leave the file or folder `name` out (True), keep it (False) or say nothing (None)."""
    verdict: bool | None = None
    for pattern in ENV_FILE_PATTERNS:
        if fnmatch.fnmatchcase(name.lower(), pattern.lstrip("!")):
            verdict = not pattern.startswith("!")
    return verdict


def env_kind(path: Path) -> str:
    """What `path` is: "plain" (an env file in clear text), "sops" (an encrypted env file) or ""."""
    relative = path.relative_to(Path.cwd()) if path.is_absolute() and path.is_relative_to(Path.cwd()) else path
    *folders, name = relative.parts
    if any(ignored(folder) for folder in folders) or ignored(name):
        return "plain"
    return "sops" if ignored(name) is False and name.lower().endswith(".enc") else ""


def encrypt_command(path: Path) -> str:
    """The command that (re-)encrypts the encrypted env file `path` from its plain counterpart."""
    deployed = re.fullmatch(r"\.env(?:\.([a-z][a-z0-9-]*))?\.enc", path.name)
    app = path.parent.as_posix()
    if not deployed or app in ("", "."):
        return (
            "uv run scripts/env_secrets.py encrypt <app> [<env>] "
            "(deploys read only <app>/.env.enc or <app>/.env.<env>.enc, <env> in lower case)"
        )
    return f"uv run scripts/env_secrets.py encrypt {app}" + (f" {deployed[1]}" if deployed[1] else "")


def line_problem(line: str, metadata: dict[str, str]) -> str:
    """What is wrong with one line of a sops dotenv file ("" if nothing); sops' metadata goes into `metadata`."""
    if not line.strip():
        return ""
    if line.startswith("#"):
        return "" if ENCRYPTED["comment"].fullmatch(line[1:]) else "comment in clear text (sops encrypts comments)"
    written, sep, value = line.partition("=")
    named = NAME.fullmatch(written)
    if not sep or not named:
        return "not NAME=value (a NAME is letters, digits and _)"
    name = named[1]
    if not name.startswith("sops_"):
        if value and not ENCRYPTED["str"].fullmatch(value):
            return f"{name} is in clear text (sops encrypts every value that is not empty)"
        if name in metadata:
            return f"{name} twice: two encryptions merged (sops writes each name once)"
        metadata[name] = ""  # names are recorded too, to find them twice; metadata_problems skips them
        if plain_bytes(value) + len(name) + 2 > MAX_VARIABLE_BYTES:
            return f"{name} is longer than 128 KiB: the container cannot start with it (keep such data in a file)"
        return ""
    shape = SOPS_METADATA.get(re.sub(r"(?<=__list_)\d+(?=__)", "N", name))
    if shape is None:
        return f"{name} is not sops metadata (sops writes no such key): a setting in clear text?"
    if name in metadata or not shape.fullmatch(value):
        return f"{name} is not what sops writes there ({'twice' if name in metadata else 'another shape'})"
    metadata[name] = value
    return ""


def plain_bytes(value: str) -> int:
    """The length in bytes of the plain text of one ENC[...] value (its data is base64)."""
    data = DATA.match(value)
    return 0 if data is None else (len(data[1]) + len(data[2])) * 3 // 4 - len(data[2])


def metadata_problems(metadata: dict[str, str], keys: set[str], whose: str | None = None) -> list[str]:
    """What is missing from sops' metadata, and whether it is encrypted for the right keys: exactly `keys`,
    those of `whose` (doctor, which reads .sops.yaml's rules); without `whose` (the guard, which does not),
    only for keys .sops.yaml names: all of them, or with a key per environment one environment's."""
    metadata = {key: value for key, value in metadata.items() if key.startswith("sops_")}
    if not metadata:
        return ["no sops metadata: this file was never encrypted"]
    lists = {key.rsplit("__map_", 1)[0] for key in metadata if "__map_" in key}
    paired = [f"{item}__map_{part}" for item in sorted(lists) for part in ("enc", "recipient")]
    missing = [key for key in [*REQUIRED_METADATA, *paired] if key not in metadata]
    problems = [f"no {key}: not a complete sops file" for key in missing]
    recipients = {value for key, value in metadata.items() if key.endswith("__map_recipient")}
    named = ", ".join(sorted(keys))
    if not recipients:
        problems.append("no age recipient: not encrypted for the repository's age key")
    elif keys and whose is not None and recipients != keys:
        others = ", ".join(sorted(recipients - keys)) or "none"
        problems.append(
            f"encrypted for {', '.join(sorted(recipients))}, not for {whose} {named} (other recipients: {others})"
        )
    elif keys and whose is None and not recipients <= keys:
        unknown = ", ".join(sorted(recipients - keys))
        problems.append(f"encrypted for {unknown}, a key .sops.yaml does not name (it names {named})")
    return problems


def sops_file_problems(data: bytes, keys: set[str], whose: str | None = None) -> list[str]:
    """What makes `data` something other than an empty file or exactly what sops writes for a dotenv file."""
    if data.startswith(codecs.BOM_UTF8):
        return ["starts with a byte-order mark, copied by sops from the plain file (env_secrets.py drops it)"]
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\0" in data:
        return ["not UTF-8 text as sops writes it (a byte-order mark or NUL bytes: UTF-16?)"]
    if b"\r" in data:
        at = data.count(b"\n", 0, data.index(b"\r")) + 1
        return [
            f"line {at}: CRLF line ends (an editor or git's autocrlf): the container cannot decrypt it; "
            "keep .enc files LF (.gitattributes: *.enc text eol=lf, then git add --renormalize .)"
        ]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        number = data.count(b"\n", 0, error.start) + 1
        return [f"line {number}: not UTF-8 text, as sops writes it (Latin-1?)"]
    if not text.strip():
        return []  # no secrets yet: the image starts without decrypting
    if text.lstrip().startswith("{"):
        return ["sops wrote JSON (binary mode): encrypt with --input-type dotenv --output-type dotenv"]
    metadata: dict[str, str] = {}
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        problem = line_problem(line, metadata)
        if problem:
            problems.append(f"line {number}: {problem}")
    return problems + metadata_problems(metadata, keys, whose)


def private_key_lines(data: bytes) -> list[int]:
    """The lines of `data` that hold an age private key (NUL bytes dropped: UTF-16 text too)."""
    text = data.replace(b"\0", b"")
    return sorted({text.count(b"\n", 0, match.start()) + 1 for match in AGE_PRIVATE_KEY.finditer(text)})


def conflict_lines(data: bytes) -> list[int]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return []  # not text
    return [n for n, line in enumerate(text.splitlines(), 1) if line.startswith(CONFLICT_MARKERS)]


def check_file(path: Path, keys: set[str]) -> list[str]:
    kind = env_kind(path)
    if kind == "plain":
        return [
            f"{path}: env file in clear text: never commit it (git rm --cached '{path}'). Local settings stay "
            "uncommitted (<app>/.env); deployed ones are committed encrypted (uv run scripts/env_secrets.py "
            "encrypt <app> [<env>], from <app>/.env.deploy or .env.<env>); a template without secrets is named "
            ".env.example"
        ]
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return []  # deleted, or a submodule
    except OSError as error:
        return [f"{path}: cannot be read ({error.strerror}): make it readable so that the guards can check it"]
    problems = [
        f"line {number}: holds an age private key (AGE-SECRET-KEY-1...): never commit it; remove it "
        f"(git rm --cached '{path}'), keep it outside the repository (sops' key file: APPS.md, One-time setup; "
        "an environment's key in its own file: APPS.md, A key per environment) and rotate it "
        'if it was pushed (APPS.md, section "Rotating the age key")'
        for number in private_key_lines(data)
    ]
    if path.name.lower() == ".env.example":
        problems += example_problems(data)
    if kind == "sops":
        problems += [f"{problem}; re-encrypt it: {encrypt_command(path)}" for problem in sops_file_problems(data, keys)]
    if lines := conflict_lines(data):
        problems.append(f"merge-conflict markers on lines {', '.join(map(str, lines))}: resolve them")
    return [f"{path}: {problem}" for problem in problems]


def example_value(raw: str) -> str:
    """The value of one dotenv assignment as the app reads it: quotes and an inline ` # comment` dropped."""
    value = raw.strip()
    if value[:1] in ("'", '"'):
        end = value.find(value[0], 1)
        return value[1:end] if end > 0 else value[1:]
    return re.split(r"(?:^|\s)#", value, maxsplit=1)[0].strip()


def example_problems(data: bytes) -> list[str]:
    """The lines of a .env.example that give a secret-like setting a value that is not a placeholder."""
    text = data.removeprefix(codecs.BOM_UTF8).decode("utf-8", errors="replace")
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        written, sep, raw = line.strip().lstrip("#").strip().partition("=")
        named = NAME.fullmatch(written)
        if not sep or not named:
            continue
        value = example_value(raw)
        if PLACEHOLDER.fullmatch(value) or AGE_PRIVATE_KEY.search(value.encode()):
            continue  # a placeholder; or an age private key, which has its own line
        if SECRET_WORDS.search(named[1]):
            problems.append(f"line {number}: {named[1]} has a value that looks real: {EXAMPLE_RULE}")
        elif CREDENTIALS.search(value):
            problems.append(
                f"line {number}: {named[1]} holds credentials (user:password@, AccountKey=...): {EXAMPLE_RULE}"
            )
    return problems


def tracked_files(root: Path) -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, text=True, check=True).stdout
    return [Path(name) for name in out.split("\0") if name]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Refuse secrets in clear text, age private keys and merge-conflict markers."
    )
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
