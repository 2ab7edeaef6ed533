"""How every container of this monorepo starts (the shared Dockerfile's ENTRYPOINT).

1. Decrypt the app's sops-encrypted env file (ENCRYPTED_ENV_FILE, relative to the app folder) with
   SOPS_AGE_KEY, straight into the environment: nothing decrypted touches the disk. An empty file
   starts the app without secrets; a file that does not decrypt stops the start with what is wrong
   and on which lines, never with sops' own message (it can quote the file, and such a file may
   hold settings in clear text).
2. Drop SOPS_AGE_KEY, then exec the server (same PID, new program: a variable deleted from
   os.environ would still show in /proc/<pid>/environ). Variables set explicitly win over
   decrypted ones.
3. The server: the command given to the container, else `gunicorn --config gunicorn.conf.py` for an
   app made by the template, else, for a hand-made app without gunicorn.conf.py, gunicorn as the
   hand-made image ran it: 2 gthread workers x 4 threads on MODULE:APP_NAME, port PORT.

Rendered into the Dockerfile by extensions/docker.jinja; standard library and python-dotenv only
(every app depends on python-dotenv: the deploy action checks for it).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

from dotenv import dotenv_values

CONFIG = "gunicorn.conf.py"
# What sops' messages mean, most specific first (its own text is never shown).
SOPS_REASONS = {
    "failed to parse 'SOPS_AGE_KEY'": "SOPS_AGE_KEY is not an age private key (AGE-SECRET-KEY-1...)",
    "Failed to get the data key": "SOPS_AGE_KEY is not the private key of {recipients}",
    "sops metadata not found": "no sops metadata: the file was never encrypted",
    "invalid dotenv input line": "a line is not NAME=value",
    "does not match sops' data format": "a value or sops metadata is not encrypted",
    "authentication failed": "a value was changed after encryption",
    "MAC mismatch": "the file was changed after encryption",
    "parsing time": "sops_lastmodified is not a time",
    "Major.Minor.Patch": "sops_version is not a version",
}
# The lines sops writes in a dotenv file: blank, #ENC[...], NAME=, NAME=ENC[...], sops_...=.
SOPS_LINE = re.compile(r"\s*|#ENC\[AES256_GCM,.*\]|[A-Za-z_]\w*=(ENC\[AES256_GCM,.*\])?|sops_\w+=.*")
RECIPIENT = re.compile(r"^sops_age__list_\d+__map_recipient=(age1\w{58})$", re.MULTILINE)


def fail(message: str) -> None:
    sys.exit(f"start: {message}")


def why_sops_failed(path: Path, stderr: str, returncode: int) -> str:
    """What is wrong with `path`, and on which lines, without quoting any of it."""
    text = path.read_bytes().decode("utf-8", "replace")
    recipients = ", ".join(RECIPIENT.findall(text)) or "its recipients"
    reason = next((why for said, why in SOPS_REASONS.items() if said in stderr), f"sops exit {returncode}")
    wrong = [str(number) for number, line in enumerate(text.splitlines(), 1) if not SOPS_LINE.fullmatch(line)]
    where = f"; lines not as sops writes them: {', '.join(wrong[:20])}" if wrong else ""
    return reason.format(recipients=recipients) + where


def decrypted_env(path: Path) -> dict[str, str]:
    """The variables of the sops-encrypted dotenv file `path`; empty for an empty file."""
    if not path.is_file():
        fail(f"encrypted env file {path} not found in {Path.cwd()} (ENCRYPTED_ENV_FILE={path})")
    if path.stat().st_size == 0:
        print(f"start: {path} is empty: starting without secrets", file=sys.stderr)
        return {}
    if not os.environ.get("SOPS_AGE_KEY"):
        fail(f"{path} holds encrypted settings but SOPS_AGE_KEY is not set (GitHub secret AGE_PRIVATE_KEY)")
    command = ["sops", "--decrypt", "--input-type", "dotenv", "--output-type", "dotenv", str(path)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    except FileNotFoundError:
        fail("sops is not installed (the production image installs it)")
    if result.returncode != 0:
        module = os.environ.get("MODULE", "<app>")
        fail(
            f"cannot decrypt {path} with SOPS_AGE_KEY: {why_sops_failed(path, result.stderr, result.returncode)}. "
            f"sops' own message is withheld (it can quote the file); in the repository: "
            f"python scripts/check_secrets.py {module}/{path}"
        )
    values = dotenv_values(stream=io.StringIO(result.stdout))
    return {key: value for key, value in values.items() if value is not None}


def server_command(argv: list[str], environment: dict[str, str]) -> list[str]:
    if argv:
        return argv
    if Path(CONFIG).is_file():
        return ["gunicorn", "--config", CONFIG]
    print(f"start: no {CONFIG}: serving this hand-made app as its own image did (2 workers x 4 threads)", flush=True)
    target = f"{environment.get('MODULE', '')}:{environment.get('APP_NAME', 'app')}"
    bind = f"0.0.0.0:{environment.get('PORT', '8080')}"
    return ["gunicorn", "--bind", bind, "--workers", "2", "--threads", "4", "--worker-class", "gthread", target]


def main(argv: list[str]) -> None:
    name = os.environ.get("ENCRYPTED_ENV_FILE", "")
    decrypted = decrypted_env(Path(name)) if name else {}  # empty: a local image, settings from the environment
    environment = {**decrypted, **os.environ}
    environment.pop("SOPS_AGE_KEY", None)
    command = server_command(argv, environment)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(command[0], command, environment)


if __name__ == "__main__":
    main(sys.argv[1:])
