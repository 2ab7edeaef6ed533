"""The platform's event envelope, parsed and checked once so handlers get typed data."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

EXTERNAL_MODULE_CHOSEN = "unique.chat.external-module.chosen"
USER_MESSAGE_CREATED = "unique.chat.user-message.created"

_REQUIRED = ("id", "event", "createdAt", "userId", "companyId", "payload")


class InvalidEvent(ValueError):
    """The body is not a platform event (not JSON, or fields missing or of the wrong type)."""


@dataclass(frozen=True)
class Event:
    id: str
    event: str
    created_at: datetime
    user_id: str
    company_id: str
    payload: dict[str, Any] = field(repr=False)
    version: str = ""

    @property
    def module_name(self) -> str | None:
        """The platform module an external-module event is addressed to."""
        name = self.payload.get("name")
        return name if isinstance(name, str) else None

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "version": self.version,
                "event": self.event,
                "createdAt": self.created_at.isoformat().replace("+00:00", "Z"),
                "userId": self.user_id,
                "companyId": self.company_id,
                "payload": self.payload,
            }
        )


def parse_event(body: bytes | str) -> Event:
    """Parse a webhook body (or Event Socket message) into an Event, or raise InvalidEvent."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidEvent(f"body is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise InvalidEvent("body is not a JSON object")
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise InvalidEvent(f"missing fields: {', '.join(missing)}")
    if not isinstance(data["payload"], dict):
        raise InvalidEvent("payload is not an object")
    for key in ("id", "event", "userId", "companyId"):
        if not isinstance(data[key], str) or not data[key]:
            raise InvalidEvent(f"{key} must be a non-empty string")
    return Event(
        id=data["id"],
        event=data["event"],
        created_at=parse_timestamp(data["createdAt"]),
        user_id=data["userId"],
        company_id=data["companyId"],
        payload=data["payload"],
        version=str(data.get("version", "")),
    )


def parse_timestamp(value: object) -> datetime:
    """ISO 8601 text or unix seconds (or milliseconds), as an aware UTC datetime."""
    if isinstance(value, bool):
        raise InvalidEvent("createdAt is not a timestamp")
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 10**11 else value
        return datetime.fromtimestamp(seconds, tz=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidEvent(f"createdAt is not a timestamp: {value!r}") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise InvalidEvent("createdAt is not a timestamp")
