"""Your app's logic. `handle_event` runs, on a background thread, for every verified event
addressed to this app (`unique.chat.external-module.chosen` naming this module).

Up to HANDLER_THREADS events run at once in each gunicorn worker: keep state in local variables,
or guard shared state with a lock.
"""

from __future__ import annotations

import logging

import unique_sdk

from .events import Event
from .settings import Settings

logger = logging.getLogger(__name__)


def handle_event(event: Event, settings: Settings) -> None:
    # ---- YOUR CODE STARTS HERE: replace this example ------------------------------------
    # The example answers in the chat: it fills the assistant message the platform created.
    payload = event.payload
    question = payload.get("userMessage", {}).get("text", "")
    unique_sdk.Message.modify(
        user_id=event.user_id,
        company_id=event.company_id,
        id=payload["assistantMessage"]["id"],
        chatId=payload["chatId"],
        text=f"{settings.module_name} received: {question}",
    )
    logger.info("answered in chat %s", payload["chatId"])
    # ---- YOUR CODE ENDS HERE -------------------------------------------------------------
