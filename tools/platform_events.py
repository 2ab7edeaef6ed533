"""Platform webhook events, built and signed as the Unique platform does (for tests and benchmarks)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime

EXTERNAL_MODULE_CHOSEN = "unique.chat.external-module.chosen"


def chosen_event(module: str) -> bytes:
    """A fresh `unique.chat.external-module.chosen` event for `module`, as the raw JSON body."""
    now = datetime.now(UTC).isoformat()
    return json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "version": "1",
            "event": EXTERNAL_MODULE_CHOSEN,
            "createdAt": now,
            "userId": "user_1",
            "companyId": "company_1",
            "payload": {
                "name": module,
                "chatId": "chat_1",
                "assistantId": "assistant_1",
                "userMessage": {"id": "m_1", "text": "Hi", "createdAt": now},
                "assistantMessage": {"id": "m_2", "createdAt": now},
                "configuration": {},
            },
        }
    ).encode()


def signed_headers(body: bytes, secret: str) -> dict[str, str]:
    """The headers of a webhook delivery: HMAC-SHA256 of the raw body, hex, and the time it was sent."""
    return {
        "Content-Type": "application/json",
        "X-Unique-Created-At": str(int(time.time())),
        "X-Unique-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
    }
