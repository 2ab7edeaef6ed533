"""The platform doubles of a rendered app (`<app>.testing`, `<app>.signing`), for this repository's tests
and benchmarks.

One implementation of the event builder, webhook signing and the fake platform API: the generated
app's own, which its own tests exercise and its Event Socket bridge uses. Those modules import only
the standard library, so they load here without the app's dependencies.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType


def app_module(app_folder: Path, name: str) -> ModuleType:
    """`<app>.<name>` imported from `app_folder` (the folder holding the app's package and pyproject.toml)."""
    package = app_folder.name
    loaded = sys.modules.get(package)
    if loaded is not None and Path(loaded.__file__ or "").parent != app_folder / package:
        for module in [m for m in sys.modules if m == package or m.startswith(f"{package}.")]:
            del sys.modules[module]  # another render of an app with the same name
    if str(app_folder) not in sys.path:
        sys.path.insert(0, str(app_folder))
    return importlib.import_module(f"{package}.{name}")


def signed_event(app_folder: Path, secret: str, module: str | None = None) -> tuple[bytes, dict[str, str]]:
    """A fresh external-module event for `module` (default: the app's name), as the body and headers
    of a signed webhook delivery."""
    testing, signing = app_module(app_folder, "testing"), app_module(app_folder, "signing")
    event = testing.make_event(module or app_folder.name)
    body: bytes = testing.body_of(event)
    headers: dict[str, str] = signing.delivery_headers(body, secret, event)
    return body, headers
