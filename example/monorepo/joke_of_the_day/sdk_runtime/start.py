"""How this app's container starts: the shared Dockerfile's ENTRYPOINT runs `python -m sdk_runtime.start`.

1. Decrypt the app's sops-encrypted env file (ENCRYPTED_ENV_FILE, relative to the app folder) with
   SOPS_AGE_KEY, straight into the environment: nothing decrypted touches the disk. An empty file
   starts the app without secrets. A file that does not decrypt stops the start with one `start:`
   line saying what is wrong and on which lines, never with sops' own message (it can quote the
   file, and such a file may hold settings in clear text).
2. Drop SOPS_AGE_KEY, then exec the server (same PID, new program: a variable deleted from
   os.environ would still show in /proc/<pid>/environ). Variables set explicitly win over
   decrypted ones.
3. The server: the command given to the container, else `gunicorn --config gunicorn.conf.py`.

Every failure is one `start: ...` line on stderr and exit status 1, never a traceback and never a
value: a file that is not there or not sops', a wrong or missing key, sops missing or hanging
(START_SOPS_TIMEOUT seconds, default 60), settings that are not UTF-8, a value too large for
Linux's environment (128 KiB per variable).

Why this program and not `sops exec-env` (tried with sops 3.11.0, the template's pin): exec-env
takes the file format from the file name only and has no --input-type, so `.env.enc` is read as
JSON and fails; it sets values as sops stores them, quotes included (GREETING="hi" arrives with
its quotes; python-dotenv, which the apps and the predecessor's load_dotenv() use, strips them);
it refuses an empty file ("sops metadata not found"), so a new app could not start before its
first secret; it prints sops' own messages, which quote the file ("invalid dotenv input line:
<the line>", "Input string <the value> does not match ..."); it passes SOPS_AGE_KEY on to the
server (--pristine drops the rest of the environment too); and without --same-process (sops 3.10+,
while the deploy action's default sops is 3.8.1) sops stays the parent, does not forward SIGTERM
and exits 143, so gunicorn never drains. This program keeps sops for the cryptography (`sops
--decrypt`) and python-dotenv for the parsing (every app depends on it: the deploy action checks),
standard library otherwise.
"""

from __future__ import annotations

import errno
import io
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from subprocess import PIPE
from typing import NoReturn

from dotenv import dotenv_values

CONFIG = "gunicorn.conf.py"
TIMEOUT_VARIABLE = "START_SOPS_TIMEOUT"
DEFAULT_TIMEOUT = 60.0
# Linux's MAX_ARG_STRLEN: one NAME=value string of a new program's environment, its NUL included.
MAX_VARIABLE_BYTES = 128 * 1024
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
NAME = re.compile(rb"\s*(?:export\s+)?([A-Za-z_]\w*)\s*=")


class StartError(Exception):
    """Why the container cannot start, in one line that never quotes a setting."""


def module() -> str:
    return os.environ.get("MODULE", "<app>")


def why_sops_failed(path: Path, stderr: str, returncode: int) -> str:
    """What is wrong with `path`, and on which lines, without quoting any of it."""
    text = path.read_bytes().decode("utf-8", "replace")
    recipients = ", ".join(RECIPIENT.findall(text)) or "its recipients"
    reason = next((why for said, why in SOPS_REASONS.items() if said in stderr), f"sops exit {returncode}")
    wrong = [str(number) for number, line in enumerate(text.splitlines(), 1) if not SOPS_LINE.fullmatch(line)]
    where = f"; lines not as sops writes them: {', '.join(wrong[:20])}" if wrong else ""
    return reason.format(recipients=recipients) + where


def sops_timeout() -> float:
    given = os.environ.get(TIMEOUT_VARIABLE, "")
    try:
        seconds = float(given) if given else DEFAULT_TIMEOUT
    except ValueError:
        raise StartError(f"{TIMEOUT_VARIABLE}={given!r} is not a number of seconds") from None
    if seconds <= 0:
        raise StartError(f"{TIMEOUT_VARIABLE}={given!r} must be more than 0 seconds")
    return seconds


def run_sops(path: Path) -> bytes:
    """The decrypted dotenv text of `path`, as sops writes it."""
    command = ["sops", "--decrypt", "--input-type", "dotenv", "--output-type", "dotenv", str(path)]
    timeout = sops_timeout()
    try:  # its own process group, so a timeout also stops what sops started (e.g. SOPS_AGE_KEY_CMD)
        process = subprocess.Popen(command, stdout=PIPE, stderr=PIPE, start_new_session=True)  # noqa: S603 - fixed argv
    except FileNotFoundError:
        raise StartError("sops is not installed (the production image installs it)") from None
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()  # what it wrote so far is dropped
        raise StartError(
            f"sops did not decrypt {path} within {timeout:g} s ({TIMEOUT_VARIABLE}), so it was stopped. "
            "Is SOPS_AGE_KEY the key of this file (else sops tries SOPS_AGE_KEY_CMD and other key sources)?"
        ) from None
    if process.returncode != 0:
        reason = why_sops_failed(path, stderr.decode("utf-8", "replace"), process.returncode)
        raise StartError(
            f"cannot decrypt {path} with SOPS_AGE_KEY: {reason}. "
            f"sops' own message is withheld (it can quote the file); in the repository: "
            f"python scripts/check_secrets.py {module()}/{path}"
        )
    return stdout


def as_text(path: Path, decrypted: bytes) -> str:
    """`decrypted` as UTF-8; otherwise the line and variable that are not, never the value."""
    try:
        return decrypted.decode("utf-8")
    except UnicodeDecodeError as error:
        number = decrypted.count(b"\n", 0, error.start) + 1
        line = decrypted.split(b"\n")[number - 1]
        name = match.group(1).decode() if (match := NAME.match(line)) else "a comment or malformed line"
        raise StartError(
            f"{path} decrypts to text that is not UTF-8 (line {number}, {name}): save the settings as UTF-8 "
            f"and encrypt them again (python scripts/env_secrets.py edit {module()})"
        ) from None


def decrypted_env(path: Path) -> dict[str, str]:
    """The variables of the sops-encrypted dotenv file `path`; empty for an empty file."""
    if not path.is_file():
        raise StartError(f"encrypted env file {path} not found in {Path.cwd()} (ENCRYPTED_ENV_FILE={path})")
    if path.stat().st_size == 0:
        print(f"start: {path} is empty: starting without secrets", file=sys.stderr)
        return {}
    if not os.environ.get("SOPS_AGE_KEY"):
        raise StartError(f"{path} holds encrypted settings but SOPS_AGE_KEY is not set (GitHub secret AGE_PRIVATE_KEY)")
    values = dotenv_values(stream=io.StringIO(as_text(path, run_sops(path))))
    return {key: value for key, value in values.items() if value is not None}


def check_sizes(environment: dict[str, str], decrypted: dict[str, str]) -> None:
    """Linux refuses to start a program with a variable over MAX_VARIABLE_BYTES (E2BIG): say which."""
    for name, value in environment.items():
        size = len(os.fsencode(name)) + len(os.fsencode(value)) + 2  # "=" and the NUL
        if size > MAX_VARIABLE_BYTES:
            origin = f"decrypted from {os.environ.get('ENCRYPTED_ENV_FILE')}" if name in decrypted else "set"
            raise StartError(
                f"{name} ({origin}) is {size} bytes: Linux starts no program with a variable over "
                f"{MAX_VARIABLE_BYTES} bytes (NAME=value). Keep large values in a file the app reads, "
                "or split them."
            )


def server_command(argv: list[str]) -> list[str]:
    if argv:
        return argv
    if not Path(CONFIG).is_file():
        raise StartError(f"no {CONFIG} in {Path.cwd()}: nothing says how to serve {module()}")
    return ["gunicorn", "--config", CONFIG]


def serve(command: list[str], environment: dict[str, str]) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, environment)  # noqa: S606 - the server the image was given
    except OSError as error:
        if error.errno == errno.E2BIG:
            total = sum(len(os.fsencode(key)) + len(os.fsencode(value)) + 2 for key, value in environment.items())
            raise StartError(f"the environment is too large to start {command[0]} ({total} bytes)") from None
        raise StartError(f"cannot run {command[0]}: {error.strerror}") from None


def start(argv: list[str]) -> NoReturn:
    name = os.environ.get("ENCRYPTED_ENV_FILE", "")
    decrypted = decrypted_env(Path(name)) if name else {}  # empty: a local image, settings from the environment
    environment = {**decrypted, **os.environ}
    environment.pop("SOPS_AGE_KEY", None)
    check_sizes(environment, decrypted)
    serve(server_command(argv), environment)


def main(argv: list[str]) -> None:
    try:
        start(argv)
    except StartError as error:
        sys.exit(f"start: {error}")
    except Exception as error:  # the contract: one line, never a traceback (it could quote a value)
        sys.exit(f"start: unexpected {type(error).__name__} (details withheld: they could quote a setting)")


if __name__ == "__main__":
    main(sys.argv[1:])
