"""sdk_runtime: the template's runtime that serves this app. TEMPLATE-OWNED: do not edit.

sdk-deploy-template owns every file in this folder and replaces them on `copier update`; the tests
(run by `scripts/check_app.py`) fail when one was edited (MANIFEST). Your code lives in the app's
package next to this folder (handler.py, settings.py) and in tests/.

What your code uses from here (imported lazily: `import sdk_runtime` loads nothing else):
- `Chat`: what `handle(chat, settings)` gets to answer one message (sdk_runtime/chat.py);
- `ChatClosed`: raised by `chat` calls after the runtime completed the message (timeout);
- `Event`, `ChatRequest`: the verified event and its chat ids (sdk_runtime/events.py);
- `RuntimeSettings`: the platform settings the runtime reads (sdk_runtime/settings.py);
- `sdk_runtime.testing`: the fake platform, event builder and signed deliveries for your tests, and the
  pytest fixtures of `sdk_runtime.pytest_plugin` (enabled by the app's conftest.py).
The contract is in the app's README ("Your handler").
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .chat import Chat, ChatClosed
    from .events import ChatRequest, Event
    from .factory import create_app
    from .settings import RuntimeSettings

__all__ = ["Chat", "ChatClosed", "ChatRequest", "Event", "RuntimeSettings", "create_app", "wsgi_app_attribute"]

_WHERE = {
    "Chat": "chat",
    "ChatClosed": "chat",
    "ChatRequest": "events",
    "Event": "events",
    "RuntimeSettings": "settings",
    "create_app": "factory",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def wsgi_app_attribute(package: str) -> Callable[[str], Any]:
    """A module `__getattr__` (PEP 562) for the team's package: `<package>.app` builds the WSGI app on
    first access (the deploy action's gunicorn target `<module>:app`), so importing the package builds
    nothing."""
    module = importlib.import_module(package)

    def attribute(name: str) -> Any:
        if name != "app":
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        from .factory import create_app

        built = create_app(package)
        vars(module)["app"] = built
        return built

    return attribute
