"""sdk_runtime/MANIFEST lists exactly the runtime the template ships (refresh: python -m tools.runtime_manifest)."""

from __future__ import annotations

from tools.runtime_manifest import RUNTIME, manifest


def test_the_manifest_is_current() -> None:
    assert (RUNTIME / "MANIFEST").read_text() == manifest(), "run: .venv/bin/python -m tools.runtime_manifest"
