"""Your app's logic. `handle_event` runs, on a background thread, for every verified event addressed to
this app (`unique.chat.external-module.chosen` naming this module), once per event id.

The platform has created an empty assistant message under the user's message and blocks the chat
input until that message is completed: answer into it, then complete it, also when something fails.

Up to HANDLER_THREADS events run at once in each gunicorn worker: keep state in local variables, or
guard shared state with a lock. Set HANDLER_TIMEOUT to the longest an event may take (SDK retries
included): it decides how many events a replica accepts at once and can finish when it is stopped.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import unique_sdk

from .events import ChatRequest, Event
from .settings import Settings

logger = logging.getLogger(__name__)

APOLOGY = "Sorry, something went wrong while answering. Please try again in a moment."


def handle_event(event: Event, settings: Settings) -> None:
    chat = ChatRequest.from_event(event)  # raises InvalidEvent, naming what is missing
    try:
        answer(chat, settings)
    except Exception:
        logger.exception("event %s: answering in chat %s failed; writing an apology", event.id, chat.chat_id)
        complete(chat, text=APOLOGY)
        return
    logger.info("event %s: answered in chat %s", event.id, chat.chat_id)


def answer(chat: ChatRequest, settings: Settings) -> None:
    # ---- YOUR CODE STARTS HERE: replace this example --------------------------------------------
    # The platform's language model answers the user's message, streamed into the assistant message.
    unique_sdk.Integrated.chat_stream_completion(
        user_id=chat.user_id,
        company_id=chat.company_id,
        chatId=chat.chat_id,
        assistantId=chat.assistant_id,
        assistantMessageId=chat.assistant_message_id,
        userMessageId=chat.user_message_id,
        messages=[{"role": "user", "content": chat.user_text}],
    )
    complete(chat)
    # ---- YOUR CODE ENDS HERE ---------------------------------------------------------------------


def complete(chat: ChatRequest, text: str | None = None) -> None:
    """Mark the assistant message complete, which frees the user's chat input; optionally set its text."""
    fields = {
        "chatId": chat.chat_id,
        "completedAt": datetime.now(UTC).isoformat(),
    }  # text: the SDK cannot send a datetime
    if text is not None:
        fields["text"] = text
    unique_sdk.Message.modify(user_id=chat.user_id, company_id=chat.company_id, id=chat.assistant_message_id, **fields)
