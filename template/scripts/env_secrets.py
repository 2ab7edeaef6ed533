"""Create, encrypt, decrypt and edit an app's env files with sops, always as dotenv.

    python scripts/env_secrets.py new     APP [ENV]   # APP/.env[.ENV] from APP/.env.example
    python scripts/env_secrets.py encrypt APP [ENV]   # APP/.env[.ENV]     -> APP/.env[.ENV].enc (the repository key)
    python scripts/env_secrets.py decrypt APP [ENV]   # APP/.env[.ENV].enc -> APP/.env[.ENV] (needs the private key)
    python scripts/env_secrets.py edit    APP [ENV]   # edit APP/.env[.ENV].enc in $EDITOR, encrypted again on save

ENV is required for apps with one file per environment (template answer per_environment_env_files)
and refused for the others. Decrypting and editing need the repository's private age key where sops
looks for it: its key file ($XDG_CONFIG_HOME/sops/age/keys.txt; without XDG_CONFIG_HOME,
~/.config/sops/age/keys.txt on Linux, ~/Library/Application Support/sops/age/keys.txt on macOS,
%AppData%\\sops\\age\\keys.txt on Windows), or SOPS_AGE_KEY_FILE, SOPS_AGE_KEY, SOPS_AGE_KEY_CMD.
Run from the repository root. Standard library and the sops binary only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DOTENV = ["--input-type", "dotenv", "--output-type", "dotenv"]


class SecretsError(Exception):
    """A mistake the user can fix; the message says how."""


def env_files(root: Path, app: str, environment: str | None) -> tuple[Path, Path]:
    """(plain, encrypted) paths relative to `root`, checked against the app's layout."""
    folder = root / app
    if not (folder / ".copier-answers.yml").is_file():
        apps = sorted(p.parent.name for p in root.glob("*/.copier-answers.yml"))
        raise SecretsError(f"'{app}' is not an app of this repository (apps: {', '.join(apps) or 'none'})")
    per_environment = not (folder / ".env.enc").exists()
    environments = sorted(p.name[len(".env.") : -len(".enc")] for p in folder.glob(".env.*.enc"))
    if per_environment and environment is None:
        raise SecretsError(f"{app} keeps one env file per environment: name one of {', '.join(environments)}")
    if not per_environment and environment is not None:
        raise SecretsError(f"{app} uses one .env.enc for every environment: leave out '{environment}'")
    if per_environment and environment not in environments:
        raise SecretsError(f"{app} has no environment '{environment}' (has: {', '.join(environments)})")
    plain = Path(app) / (".env" if environment is None else f".env.{environment}")
    return plain, plain.with_name(plain.name + ".enc")


def sops(root: Path, *args: str, stdout: int | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("sops")
    if binary is None:
        raise SecretsError("sops is not installed: get it from https://github.com/getsops/sops/releases")
    return subprocess.run([binary, *args], cwd=root, text=True, stdout=stdout, stderr=subprocess.PIPE, check=False)


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
    """Write `text` to `path` (plain settings: mode 600) so that a failure never leaves a half-written file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def new(root: Path, plain: Path, _: Path) -> str:
    if (root / plain).exists():
        raise SecretsError(f"{plain} exists already: edit it, then run encrypt")
    example = root / plain.parent / ".env.example"
    write_atomically(root / plain, example.read_text() if example.is_file() else "")
    return f"created {plain} from .env.example: fill it in, then: python scripts/env_secrets.py encrypt {_args(plain)}"


def encrypt(root: Path, plain: Path, encrypted: Path) -> str:
    if not (root / plain).is_file():
        raise SecretsError(f"{plain} not found: create it first (python scripts/env_secrets.py new {_args(plain)})")
    if not (root / ".sops.yaml").is_file():
        raise SecretsError(".sops.yaml not found: run from the repository root")
    result = sops(root, "--encrypt", *DOTENV, str(plain), stdout=subprocess.PIPE)
    if result.returncode != 0:
        raise SecretsError(f"sops could not encrypt {plain}: {' '.join(result.stderr.split())}")
    write_atomically(root / encrypted, result.stdout, 0o644)  # encrypted: readable like any committed file
    return f"encrypted {plain} -> {encrypted} (commit {encrypted}; never {plain})"


def decrypt(root: Path, plain: Path, encrypted: Path) -> str:
    text = _decrypted(root, encrypted)
    if (root / plain).exists():
        if _lines(root / plain) == [line for line in text.splitlines() if line.strip()]:
            return f"{plain} already holds what {encrypted} holds (sops keeps no blank lines): left as it is"
        raise SecretsError(f"{plain} exists and differs from {encrypted}: move it away first")
    write_atomically(root / plain, text)
    return f"decrypted {encrypted} -> {plain} (git-ignored; do not commit it)"


def _lines(path: Path) -> list[str]:
    """The lines of a dotenv file that sops keeps: all but the blank ones."""
    return [line for line in path.read_text().splitlines() if line.strip()]


def edit(root: Path, _: Path, encrypted: Path) -> str:
    if (root / encrypted).stat().st_size == 0:
        raise SecretsError(f"{encrypted} is empty (no secrets yet): use new, then encrypt")
    require_private_key()
    result = sops(root, *DOTENV, str(encrypted))
    if result.returncode not in (0, 200):  # 200: saved without changes
        raise SecretsError(f"sops could not edit {encrypted}: {' '.join(result.stderr.split())}")
    return f"edited {encrypted}"


def _decrypted(root: Path, encrypted: Path) -> str:
    if not (root / encrypted).is_file():
        raise SecretsError(f"{encrypted} not found")
    if (root / encrypted).stat().st_size == 0:
        return ""
    require_private_key()
    result = sops(root, "--decrypt", *DOTENV, str(encrypted), stdout=subprocess.PIPE)
    if result.returncode != 0:
        raise SecretsError(f"sops could not decrypt {encrypted}: {' '.join(result.stderr.split())}")
    return result.stdout


def _args(plain: Path) -> str:
    suffix = plain.name[len(".env.") :] if plain.name != ".env" else ""
    return f"{plain.parent} {suffix}".strip()


COMMANDS = {"new": new, "encrypt": encrypt, "decrypt": decrypt, "edit": edit}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("app")
    parser.add_argument("environment", nargs="?")
    args = parser.parse_args(argv)
    root = Path.cwd()
    try:
        plain, encrypted = env_files(root, args.app, args.environment)
        print(COMMANDS[args.command](root, plain, encrypted))
    except SecretsError as error:
        print(f"secrets: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
