"""Tells a joke in the chat

`joke_of_the_day:app` is the WSGI app gunicorn serves (the deploy action's module:app_name). It is built
on first access (PEP 562), so importing any module of this package builds nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from .factory import create_app

    app: Flask

__all__ = ["app", "create_app"]


def __getattr__(name: str) -> object:
    if name == "create_app":
        from .factory import create_app

        return create_app
    if name == "app":
        from .factory import create_app

        globals()["app"] = built = create_app()
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
