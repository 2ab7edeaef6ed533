"""Send one signed event to a running app, as the platform would: a smoke test of a deployed app.

    poetry run python -m sdk_runtime.send https://<fqdn>/webhook                 # from the app folder
    poetry run python -m sdk_runtime.send http://localhost:<port>/webhook --text "Hi"
    poetry run python -m sdk_runtime.send <url> --event event.json

Signs with the endpoint secret of the environment or `.env` (UNIQUE_APP_ENDPOINT_SECRET, or
ENDPOINT_SECRET; `--secret-from NAME` reads another variable), so the app takes it as the platform's.
The made-up event names a chat that does not exist: a deployed app acknowledges it (202) and then
fails to answer into it (its log shows why); send a real event (`--event`) to answer into a real chat.
Prints the app's answer; exit code 0 for 2xx.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from dotenv import dotenv_values

from .local import load_event
from .settings import ENDPOINT_SECRET_NAMES, AppConfig, first
from .testing import make_event, signed_delivery


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = 30.0) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 any URL given
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdk_runtime.send", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("url", help="the app's webhook URL, e.g. https://<fqdn>/webhook")
    parser.add_argument("--text", default="Hello", help="what the user wrote (default: %(default)s)")
    parser.add_argument("--event", type=Path, help="a JSON file with the event to send instead")
    parser.add_argument("--module", help="the module the event is for (default: this app's)")
    parser.add_argument("--secret-from", help="the variable holding the endpoint secret")
    args = parser.parse_args(argv)

    env = {k: v for k, v in dotenv_values(".env").items() if v is not None} | dict(os.environ)
    secret = env.get(args.secret_from, "") if args.secret_from else first(env, ENDPOINT_SECRET_NAMES)
    if not secret:
        print("send: no endpoint secret (UNIQUE_APP_ENDPOINT_SECRET): the event goes unsigned", file=sys.stderr)
    module = args.module or AppConfig.read().module_name or Path.cwd().name
    event = load_event(args.event) or make_event(module, text=args.text)
    body, headers = signed_delivery(event, secret)  # unsigned without a secret
    try:
        status, text = post(args.url, body, headers)
    except (urllib.error.URLError, OSError) as error:
        print(f"send: could not reach {args.url}: {error}", file=sys.stderr)
        return 2
    print(f"{status} {text.strip()}")
    print(f"event {event.get('id')} for module {json.dumps(module)}", file=sys.stderr)
    return 0 if 200 <= status < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
