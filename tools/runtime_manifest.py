"""Write sdk_runtime/MANIFEST: the sha256 of every file of the app runtime, as the template ships it.

    .venv/bin/python -m tools.runtime_manifest

Each app's tests refuse a runtime that differs from its MANIFEST (sdk_runtime/pytest_plugin.py), so an
edited copy never runs untested; tests/runtime/test_manifest.py fails while this file is stale.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

RUNTIME = Path(__file__).resolve().parent.parent / "template" / "{{app_name}}" / "sdk_runtime"


def manifest(runtime: Path = RUNTIME) -> str:
    files = sorted(p for p in runtime.iterdir() if p.is_file() and p.name != "MANIFEST")
    return "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in files)


def main() -> None:
    (RUNTIME / "MANIFEST").write_text(manifest())
    print(f"wrote {RUNTIME / 'MANIFEST'}")


if __name__ == "__main__":
    main()
