"""`Chat`: what a handler gets to answer one chat message, and how the runtime finishes that message.

The platform creates an empty assistant message under the user's message and blocks the user's chat
input until that message is completed (unique_sdk's `Message.modify(..., completedAt=...)`; unique_toolkit's
`free_user_input()`). Clients re-enable the input as soon as `stoppedStreamingAt` is set (the toolkit's
`signal_streaming_stopped()`). So every message ends with both, set once, by `Chat.complete()`: by the
handler when it wants to, else by the runtime when the handler returns, fails or runs out of time.

Timestamps are sent as ISO 8601 text: unique_sdk cannot serialize a datetime (its changelog; checked).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import unique_sdk

from .events import ChatRequest, Event
from .platform_errors import cause

logger = logging.getLogger(__name__)

APOLOGY = "Sorry, something went wrong while answering. Please try again in a moment."
TIMEOUT_APOLOGY = "Sorry, this is taking too long. Please try again in a moment."
SHUTDOWN_APOLOGY = "Sorry, this answer was interrupted because the service is restarting. Please ask again."


class ChatClosed(RuntimeError):
    """The runtime has already completed this message (the handler ran out of time): nothing more is sent."""


class Chat:
    """One chat message to answer. Thread-safe: the runtime may complete it while the handler runs."""

    def __init__(self, event: Event, request: ChatRequest) -> None:
        self.event = event  # the verified envelope; `event.data` is the JSON as the platform sent it
        self.request = request
        self._lock = threading.Lock()
        self._completed = False
        self._closed = False

    # ---- The message and its chat -------------------------------------------------------------

    @property
    def user_text(self) -> str:
        return self.request.user_text

    @property
    def chat_id(self) -> str:
        return self.request.chat_id

    @property
    def assistant_id(self) -> str:
        return self.request.assistant_id

    @property
    def user_id(self) -> str:
        return self.request.user_id

    @property
    def company_id(self) -> str:
        return self.request.company_id

    @property
    def user_message_id(self) -> str:
        return self.request.user_message_id

    @property
    def assistant_message_id(self) -> str:
        return self.request.assistant_message_id

    @property
    def configuration(self) -> Mapping[str, Any]:
        """The module's configuration on the platform (payload.configuration)."""
        value = self.event.payload.get("configuration")
        return value if isinstance(value, dict) else {}

    @property
    def completed(self) -> bool:
        return self._completed

    # ---- Answering ------------------------------------------------------------------------------

    def stream_completion(
        self, messages: Sequence[Mapping[str, Any]], *, model: str | None = None, **options: Any
    ) -> Any:
        """Run the platform's language model on `messages`; the answer streams into the assistant message
        (unique_sdk.Integrated.chat_stream_completion). Returns the platform's result."""
        self._check_open()
        if model:
            options["model"] = model
        return unique_sdk.Integrated.chat_stream_completion(
            user_id=self.user_id,
            company_id=self.company_id,
            chatId=self.chat_id,
            assistantId=self.assistant_id,
            assistantMessageId=self.assistant_message_id,
            userMessageId=self.user_message_id,
            messages=[dict(message) for message in messages],
            **options,
        )

    def write(self, text: str) -> None:
        """Set the assistant message's text (replacing it); the message stays open."""
        self._check_open()
        self._modify(text=text)

    def complete(self, text: str | None = None) -> None:
        """Finish the message now (frees the user's chat input), optionally with its final text. Once only:
        later calls do nothing."""
        with self._lock:
            if self._closed:
                raise ChatClosed(f"message {self.assistant_message_id} was already completed by the runtime")
            if self._completed:
                return
            self._completed = True
        self._finish(text)

    # ---- The runtime's side ---------------------------------------------------------------------

    def close(self, apology: str | None = None) -> bool:
        """Complete the message unless the handler did (with `apology` as its text, if given), and refuse
        every later call. Never raises: the runtime calls it after failures. False if the platform could
        not be told."""
        with self._lock:
            self._closed = True
            if self._completed:
                return True
            self._completed = True
        try:
            self._finish(apology)
        except Exception as error:  # the platform is unreachable: nothing else can free the chat
            logger.error(
                "event %s: could not complete message %s in chat %s: %s",
                self.request.event_id,
                self.assistant_message_id,
                self.chat_id,
                cause(error),
            )
            return False
        return True

    def _finish(self, text: str | None) -> None:
        now = datetime.now(UTC).isoformat()
        fields: dict[str, str] = {"stoppedStreamingAt": now, "completedAt": now}
        if text is not None:
            fields["text"] = text
        self._modify(**fields)

    def _modify(self, **fields: str) -> None:
        unique_sdk.Message.modify(
            user_id=self.user_id,
            company_id=self.company_id,
            id=self.assistant_message_id,
            chatId=self.chat_id,
            **fields,
        )

    def _check_open(self) -> None:
        if self._closed:
            raise ChatClosed(f"message {self.assistant_message_id} was already completed by the runtime")
