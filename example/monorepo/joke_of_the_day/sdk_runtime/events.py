"""The platform's event envelope, parsed once so handlers get typed data.

Modelled on the platform's own sources (repository Unique-AG/ai): the webhook docs
(unique_sdk/docs/webhooks.md) write `createdAt` as unix seconds in a string and the external-module
payload's chat id as `chatid`; unique_sdk types `createdAt` as an int, unique_toolkit
(app/schemas.py) as an optional int, and both spell `chatId`. All of these are accepted; the envelope
requires only what routing needs (`id`, `event`), and `ChatRequest` what answering in the chat needs.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

EXTERNAL_MODULE_CHOSEN = "unique.chat.external-module.chosen"
USER_MESSAGE_CREATED = "unique.chat.user-message.created"

_NUMBER = re.compile(r"\d+(\.\d+)?")
_MILLISECONDS_FROM = 10**11  # as seconds that is the year 5138; as milliseconds, 1973
_LATEST = datetime(9999, 12, 31, tzinfo=UTC).timestamp()


class InvalidEvent(ValueError):
    """The body is not a platform event: not JSON, or a field missing or of the wrong type."""


@dataclass(frozen=True)
class Event:
    id: str
    event: str
    user_id: str
    company_id: str
    payload: Mapping[str, Any] = field(repr=False)
    created_at: datetime | None = None  # absent in some events: then only the delivery header dates it
    version: str = ""
    data: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)  # the JSON as sent

    @property
    def module_name(self) -> str | None:
        """The platform module an external-module event is addressed to."""
        return _text(self.payload.get("name"))

    @property
    def chat_id(self) -> str | None:
        return _text(self.payload.get("chatId")) or _text(self.payload.get("chatid"))  # the docs write chatid

    @property
    def assistant_id(self) -> str | None:
        return _text(self.payload.get("assistantId"))


@dataclass(frozen=True)
class ChatRequest:
    """What answering an external-module event in the chat needs; every field is present and non-empty."""

    event_id: str
    user_id: str
    company_id: str
    chat_id: str
    assistant_id: str
    user_message_id: str
    user_text: str
    assistant_message_id: str

    @classmethod
    def from_event(cls, event: Event) -> ChatRequest:
        """The chat fields of `event`, or InvalidEvent naming every one that is missing."""
        user_message = _mapping(event.payload.get("userMessage"))
        assistant_message = _mapping(event.payload.get("assistantMessage"))
        fields = {
            "userId": event.user_id,
            "companyId": event.company_id,
            "payload.chatId": event.chat_id,
            "payload.assistantId": event.assistant_id,
            "payload.userMessage.id": _text(user_message.get("id")),
            "payload.assistantMessage.id": _text(assistant_message.get("id")),
        }
        if missing := [name for name, value in fields.items() if not value]:
            raise InvalidEvent(f"event {event.id} has no {', '.join(missing)}: cannot answer in the chat")
        return cls(
            event_id=event.id,
            user_id=event.user_id,
            company_id=event.company_id,
            chat_id=str(fields["payload.chatId"]),
            assistant_id=str(fields["payload.assistantId"]),
            user_message_id=str(fields["payload.userMessage.id"]),
            user_text=_text(user_message.get("text")) or "",
            assistant_message_id=str(fields["payload.assistantMessage.id"]),
        )


def parse_event(body: bytes | str) -> Event:
    """Parse a webhook body (or Event Socket message) into an Event, or raise InvalidEvent."""
    data = _json_object(body)
    for key in ("id", "event"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise InvalidEvent(f"{key} must be a non-empty string")
    for key in ("userId", "companyId", "version"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise InvalidEvent(f"{key} must be a string")
    payload = data.get("payload", {})
    if not isinstance(payload, dict):
        raise InvalidEvent("payload must be an object")
    return Event(
        id=data["id"],
        event=data["event"],
        user_id=data.get("userId") or "",
        company_id=data.get("companyId") or "",
        payload=payload,
        created_at=parse_timestamp(data.get("createdAt")),
        version=data.get("version") or "",
        data=data,
    )


def parse_timestamp(value: object) -> datetime | None:
    """`createdAt` as the platform writes it: unix seconds or milliseconds (number or numeric text),
    or ISO 8601 text (UTC when it has no zone). None when absent; InvalidEvent when not a time."""
    if value is None:
        return None
    if isinstance(value, str) and not _NUMBER.fullmatch(value.strip()):
        return _iso_timestamp(value)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidEvent(f"createdAt is not a timestamp: {value!r}")
    try:
        seconds = float(value)
    except OverflowError:
        raise InvalidEvent("createdAt is out of range") from None
    if seconds >= _MILLISECONDS_FROM:
        seconds /= 1000
    if not math.isfinite(seconds) or not 0 < seconds <= _LATEST:
        raise InvalidEvent(f"createdAt is not a time between 1970 and 9999: {value!r}")
    return datetime.fromtimestamp(seconds, tz=UTC)


def _iso_timestamp(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidEvent(f"createdAt is neither unix time nor ISO 8601: {text[:40]!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _json_object(body: bytes | str) -> dict[str, Any]:
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        data = json.loads(text, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise InvalidEvent("body is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise InvalidEvent(f"body is not JSON: {error}") from None
    except RecursionError:
        raise InvalidEvent("body is nested too deeply") from None
    except InvalidEvent:
        raise
    except ValueError as error:  # an integer over Python's digit limit (sys.get_int_max_str_digits)
        raise InvalidEvent(f"body holds a number Python refuses to read: {error}") from None
    if not isinstance(data, dict):
        raise InvalidEvent("body is not a JSON object")
    return data


def _refuse_constant(name: str) -> object:
    raise InvalidEvent(f"{name} is not valid JSON")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}
