"""Try your app locally: one signed event into your handler, against a stand-in for the platform.

    poetry run python -m sdk_runtime.local                          # from the app folder: "Hello"
    poetry run python -m sdk_runtime.local --text "What is a bond?"
    poetry run python -m sdk_runtime.local --event event.json       # any event, as the platform sends it
    poetry run python -m sdk_runtime.local --model-seconds 5        # a model that takes 5 s

Your app (handler.py, settings.py from the environment and `.env`) runs behind its real, signed
webhook, exactly as deployed; its platform calls go to a fake platform on loopback (sdk_runtime.testing),
never to the real one. Prints what the chat got: every platform call, and how the message ended.
Exit code 0 when the message ended completed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from .testing import Delivery, Harness, Recorded

STREAM = "/integrated/chat/stream-completions"


def describe(call: Recorded) -> str:
    """One call as a person reads it: what was asked of the platform."""
    body = call.body if isinstance(call.body, dict) else {}
    if call.path.endswith(STREAM):
        asked = " | ".join(f"{m.get('role')}: {m.get('content')}" for m in body.get("messages", []))
        return f"language model, streamed into the message: {asked}"
    if call.method == "PATCH" and "/messages/" in call.path:
        parts = [f"text={body['text']!r}"] if "text" in body else []
        parts += [name for name in ("stoppedStreamingAt", "completedAt") if body.get(name)]
        return f"message {call.path.rsplit('/', 1)[-1]}: {', '.join(parts) or 'changed'}"
    return f"{call.method} {call.path} {json.dumps(body)[:200]}"


def report(delivery: Delivery) -> list[str]:
    lines = [f"webhook answered {delivery.status} {json.dumps(dict(delivery.reply))}"]
    lines += [f"  {number}. {describe(call)}" for number, call in enumerate(delivery.calls, 1)]
    if delivery.completed:
        ending = f"with the text {delivery.text!r}" if delivery.text is not None else "keeping the streamed answer"
        lines.append(f"the message was completed, {ending}: the user's chat input is free again")
    else:
        lines.append("the message was NOT completed: the user's chat would stay blocked")
    return lines


def load_event(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise SystemExit(f"{path}: not a JSON object (an event as the platform sends it)")
    return data


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdk_runtime.local", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--text", default="Hello", help="what the user wrote (default: %(default)s)")
    parser.add_argument("--event", type=Path, help="a JSON file with the event to send instead")
    parser.add_argument("--model-seconds", type=float, default=0.0, help="how long the stand-in model takes")
    parser.add_argument("--package", default=Path.cwd().name, help="your app's package (default: this folder's)")
    args = parser.parse_args(argv)

    env = {k: v for k, v in dotenv_values(".env").items() if v is not None} | dict(os.environ)
    with Harness(args.package, env=env) as harness:
        harness.platform.delays[STREAM] = args.model_seconds
        event = load_event(args.event) or harness.event(text=args.text)
        delivery = harness.deliver(event)
    print("\n".join(report(delivery)))
    return 0 if delivery.completed else 1


if __name__ == "__main__":
    sys.exit(main())
