"""The handler contract: how the runtime runs your `handle(chat, settings)` for one event.

Your package (`<app>/<app>/`) provides, by convention:
- `handler.py`: `def handle(chat: Chat, settings: Settings) -> None`;
- `settings.py`: `class Settings` with `from_env(env: Mapping[str, str]) -> Settings` (optional).

Around each call the runtime guarantees:
- it runs on a background thread, once per delivery id (a repeated delivery is acknowledged, not run);
- unique_sdk is configured (api_key, app_id, api_base) before the first call;
- the assistant message ends completed: when `handle` returns (unless it called `chat.complete()`),
  with an apology when it raises, and with an apology after HANDLER_TIMEOUT seconds, after which the
  handler's further `chat` calls raise ChatClosed (the thread itself cannot be stopped);
- when the replica stops before an acknowledged event is answered (queued or running), `cut(event)`
  completes its message with an apology and the handler's further `chat` calls raise ChatClosed.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .chat import APOLOGY, SHUTDOWN_APOLOGY, TIMEOUT_APOLOGY, Chat, ChatClosed
from .events import ChatRequest, Event
from .platform_errors import cause, is_platform_error
from .settings import RuntimeSettings

logger = logging.getLogger(__name__)

Handler = Callable[[Chat, Any], None]
# Modules of the app package before 0.3.0 that moved into sdk_runtime: a handler importing them is older.
MOVED_IN_0_3 = frozenset({"events", "dispatch", "factory", "logs", "server", "signing", "testing", "webhook"})
UPGRADE_HINT = (
    "{package}/handler.py was written for sdk-deploy-template before 0.3.0 ({problem}). Since 0.3.0 the runtime "
    "lives in sdk_runtime/ and a handler is `def handle(chat: Chat, settings: Settings) -> None`: move your "
    "code from `answer(chat, settings)` into `handle`, import `from sdk_runtime import Chat`, and answer with "
    "`chat.stream_completion(...)` or `chat.complete(text)`. Never edited it? Delete {package}/handler.py, "
    "{package}/settings.py and tests/test_handler.py, then run `copier update` again: they come back in the "
    "new form. See CHANGELOG 0.3.0."
)


class HandlerContractError(RuntimeError):
    """The team's package does not provide what the runtime needs; the message says what to change."""


@dataclass(frozen=True)
class TeamCode:
    """The team's handler and its own settings."""

    handler: Handler
    settings: Any


def load_settings_of(package: str, env: Mapping[str, str]) -> Any:
    """`<package>.settings.Settings.from_env(env)`; None when the package has no settings module."""
    try:
        module = importlib.import_module(f"{package}.settings")
    except ModuleNotFoundError as error:
        if error.name == f"{package}.settings":
            return None
        raise _upgrade_error(package, error) from error
    settings_class = getattr(module, "Settings", None)
    if settings_class is None:
        raise HandlerContractError(f"{package}/settings.py has no class Settings")
    if hasattr(settings_class, "from_env"):
        return settings_class.from_env(env)
    return settings_class()


def load_handler_of(package: str) -> Handler:
    """`<package>.handler.handle`, or HandlerContractError saying exactly what to change."""
    try:
        module = importlib.import_module(f"{package}.handler")
    except ModuleNotFoundError as error:
        raise _upgrade_error(package, error) from error
    handler = getattr(module, "handle", None)
    if callable(handler):
        return handler  # type: ignore[no-any-return]
    if hasattr(module, "handle_event"):
        problem = "it defines handle_event(event, settings), not handle(chat, settings)"
        raise HandlerContractError(UPGRADE_HINT.format(package=package, problem=problem))
    raise HandlerContractError(f"{package}/handler.py defines no `handle(chat, settings)` function")


def _upgrade_error(package: str, error: ModuleNotFoundError) -> Exception:
    name = error.name or ""
    if name.startswith(f"{package}.") and name.split(".", 1)[1] in MOVED_IN_0_3:
        problem = f"it imports {name}, which moved to sdk_runtime"
        return HandlerContractError(UPGRADE_HINT.format(package=package, problem=problem))
    return error


def configure_sdk(settings: RuntimeSettings) -> None:
    """Point unique_sdk at the platform, with this app's credentials (process-wide, set once)."""
    import unique_sdk

    unique_sdk.api_key = settings.api_key
    unique_sdk.app_id = settings.app_id
    unique_sdk.api_base = settings.api_base
    prepare_sdk()


def prepare_sdk() -> None:
    """Import unique_sdk and build its HTTP client. The SDK builds that client on first use, unguarded:
    a first burst of N threads would build N (each loads the CA bundle: 50-100 ms of CPU each, about
    4 s of a 0.5 CPU replica's time for a burst of 64). gunicorn.conf.py calls this in gunicorn's master
    before the port opens, so workers inherit both; idempotent."""
    import unique_sdk

    if unique_sdk.default_http_client is None:
        unique_sdk.APIRequestor(user_id=None, company_id=None)  # the SDK's own way of building it


class OpenChats:
    """The chats of acknowledged events not yet answered, by event id, so shutdown can close them."""

    REMEMBER_ANSWERED = 4096  # ids of answered events kept, so a late cut leaves their answer alone

    def __init__(self) -> None:
        self._chats: dict[str, Chat] = {}
        self._answered: dict[str, None] = {}  # insertion-ordered: the oldest is dropped first
        self._lock = threading.Lock()

    def open(self, event: Event) -> Chat | None:
        """The chat to answer `event` in; None when shutdown already closed it (the handler must not run)."""
        with self._lock:
            chat = self._chats.setdefault(event.id, Chat(event, ChatRequest.from_event(event)))
        return None if chat.completed else chat

    def done(self, event: Event) -> None:
        with self._lock:
            self._chats.pop(event.id, None)
            self._answered[event.id] = None
            if len(self._answered) > self.REMEMBER_ANSWERED:
                del self._answered[next(iter(self._answered))]

    def cut(self, event: Event) -> bool:
        """Complete the message of `event` with an apology now (the replica stops): whether the handler
        runs, waits for a thread, or is not yet started (it then never starts). True once completed."""
        with self._lock:
            if event.id in self._answered:  # its handler has just returned: the answer stays
                return True
            chat = self._chats.setdefault(event.id, Chat(event, ChatRequest.from_event(event)))
        return chat.close(SHUTDOWN_APOLOGY)  # stays listed: a job that starts later finds it completed


open_chats = OpenChats()


def cut(event: Event) -> bool:
    return open_chats.cut(event)


def answer(code: TeamCode, event: Event, timeout: float) -> None:
    """Run the handler for `event` and make sure its assistant message ends completed."""
    chat = open_chats.open(event)
    if chat is None:
        logger.info("event %s: not started, its message was completed at shutdown", event.id)
        return
    try:
        _answer(code, chat, event, timeout)
    finally:
        open_chats.done(event)


def _answer(code: TeamCode, chat: Chat, event: Event, timeout: float) -> None:
    timer = threading.Timer(timeout, _out_of_time, (chat, timeout))
    timer.daemon = True
    timer.start()
    try:
        code.handler(chat, code.settings)
    except ChatClosed:
        logger.warning(
            "event %s: the handler went on after the runtime completed its message (HANDLER_TIMEOUT or "
            "shutdown); its later calls were dropped",
            event.id,
        )
        return
    except Exception as error:
        if is_platform_error(error):  # the platform is unreachable or refused: the cause, not 100 lines
            logger.error(
                "event %s: a platform call failed in chat %s (%s); the message gets an apology",
                event.id,
                chat.chat_id,
                cause(error),
            )
        else:  # a bug in the handler: its traceback
            logger.exception(
                "event %s: the handler failed in chat %s; the message gets an apology", event.id, chat.chat_id
            )
        chat.close(APOLOGY)
        return
    finally:
        timer.cancel()
    chat.close()
    logger.info("event %s: answered in chat %s", event.id, chat.chat_id)


def _out_of_time(chat: Chat, timeout: float) -> None:
    logger.error(
        "event %s: the handler is still running after HANDLER_TIMEOUT=%g s; the message gets an apology "
        "(raise HANDLER_TIMEOUT if it needs longer)",
        chat.request.event_id,
        timeout,
    )
    chat.close(TIMEOUT_APOLOGY)
