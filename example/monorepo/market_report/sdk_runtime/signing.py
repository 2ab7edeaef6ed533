"""Webhook deliveries as the platform signs them: hex HMAC-SHA256 of the raw body, keyed with ENDPOINT_SECRET.

The one implementation of signing, used by /webhook (verify), the Event Socket bridge (sign) and the
tests. `verify` takes the decisions `unique_sdk.Webhook.construct_event(body, signature, created_at,
secret, tolerance=max_age)` takes (tests/test_webhook.py checks they agree), without importing the SDK
on the start path, and without its crashes on a non-ASCII signature or a non-UTF-8 body.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

SIGNATURE_HEADER = "X-Unique-Signature"
CREATED_AT_HEADER = "X-Unique-Created-At"
ID_HEADER = "X-Unique-Id"


class SignatureError(Exception):
    """The delivery is not signed with the endpoint secret, or its delivery time is too old."""


def sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(body: bytes, signature: str | None, created_at: str | None, secret: str, max_age: int) -> None:
    """Raise SignatureError unless `signature` signs `body` and `created_at` is at most `max_age` s old.

    Like the SDK, a delivery time in the future is accepted: the header is not signed, so it proves
    nothing either way; the signed body's own createdAt is checked by the caller.
    """
    if not signature:
        raise SignatureError(f"{SIGNATURE_HEADER} is missing")
    try:
        timestamp = int(created_at or "")
    except ValueError:
        raise SignatureError(f"{CREATED_AT_HEADER} is missing or not unix seconds") from None
    if not timestamp:
        raise SignatureError(f"{CREATED_AT_HEADER} is missing")
    expected = sign(body, secret).encode("ascii")
    if not hmac.compare_digest(expected, signature.encode("utf-8", "replace")):
        raise SignatureError(f"{SIGNATURE_HEADER} does not match the body (wrong secret, or a changed body)")
    if timestamp < time.time() - max_age:
        raise SignatureError(f"{CREATED_AT_HEADER} is more than {max_age} s old")


def delivery_headers(body: bytes, secret: str, event: Mapping[str, object]) -> dict[str, str]:
    """The headers of a webhook delivery of `event` (its JSON `body`); signed when a secret is given."""
    headers = {
        "Content-Type": "application/json",
        ID_HEADER: str(event.get("id", "")),
        "X-Unique-Version": str(event.get("version", "")),
        CREATED_AT_HEADER: str(int(time.time())),
        "X-Unique-User-Id": str(event.get("userId", "")),
        "X-Unique-Company-Id": str(event.get("companyId", "")),
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    return headers
