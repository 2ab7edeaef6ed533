"""The app runtime's platform doubles (`sdk_runtime.testing`, `sdk_runtime.signing`), for this repository's
tests and benchmarks.

One implementation of the event builder, webhook signing and the fake platform API: the runtime's own,
which every generated app ships unchanged (template/{{app_name}}/sdk_runtime, byte for byte; its
MANIFEST says so). Those modules import only the standard library, so they load here as they are.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

RUNTIME_PARENT = Path(__file__).resolve().parent.parent / "template" / "{{app_name}}"


def runtime_module(name: str) -> ModuleType:
    """`sdk_runtime.<name>`, imported from the template (every app's copy is identical)."""
    if str(RUNTIME_PARENT) not in sys.path:
        sys.path.insert(0, str(RUNTIME_PARENT))
    return importlib.import_module(f"sdk_runtime.{name}")


def signed_event(module: str, secret: str) -> tuple[bytes, dict[str, str]]:
    """A fresh external-module event for `module`, as the body and headers of a signed webhook delivery."""
    body, headers = runtime_module("testing").signed_delivery(runtime_module("testing").make_event(module), secret)
    return body, headers
