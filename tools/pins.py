"""The template's own pins (extensions/versions.jinja), for tests, tools and benchmarks.

Everything the template pins lives in that one Jinja file; this module reads it with Jinja, so no
test or tool repeats a version.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2

ROOT = Path(__file__).resolve().parent.parent


@cache
def versions() -> Any:
    """The module of extensions/versions.jinja: DEPLOY_ACTION, CHECKOUT_ACTION, POETRY_VERSION, ..."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROOT), autoescape=False)
    return env.get_template("extensions/versions.jinja").module


def uses(action: dict[str, str]) -> str:
    """The `uses:` value the rendered workflows carry for a pinned action."""
    return str(versions().uses(action))


def pythons() -> list[str]:
    """The supported Python versions, in the order copier offers them."""
    return list(versions().BASE_IMAGES)
