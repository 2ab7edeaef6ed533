"""YOUR CODE: how this app answers a chat message. `copier update` never touches this file.

The runtime (../sdk_runtime/) calls `handle(chat, settings)` on a background thread for every verified
event addressed to this app, once per delivery. Answer into `chat`: stream a model's answer with
`chat.stream_completion(messages)`, or write text with `chat.complete(text)`. Call any other platform
API with unique_sdk directly (it is configured; pass `chat.user_id` and `chat.company_id`).

The runtime completes the message when `handle` returns, writes an apology when it raises, and does
both after HANDLER_TIMEOUT seconds (default 20; raise it for long answers). Up to HANDLER_THREADS
events run at once: keep state in local variables, or guard shared state with a lock.
The contract in full: README.md, "Your handler".
"""

from __future__ import annotations

from sdk_runtime import Chat

from .settings import Settings


def handle(chat: Chat, settings: Settings) -> None:
    """Answer the user's message with the platform's language model, streamed into the chat."""
    chat.stream_completion(
        [
            {"role": "system", "content": settings.system_prompt},
            {"role": "user", "content": chat.user_text},
        ]
    )
