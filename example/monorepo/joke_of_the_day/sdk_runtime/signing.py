"""Webhook deliveries as the platform signs them: hex HMAC-SHA256 of the raw body, keyed with ENDPOINT_SECRET.

The one implementation of signing, used by /webhook (verify), the Event Socket bridge (sign) and the
tests. `verify` takes the decisions `unique_sdk.Webhook.construct_event(body, signature, created_at,
secret, tolerance=max_age)` takes (tests/runtime/test_webhook.py checks they agree), without importing
the SDK on the start path, and without its crashes on a non-ASCII signature or a non-UTF-8 body, with
two deliberate differences: a delivery time more than FUTURE_SKEW ahead is refused, and a second
secret (the previous one, while it is rotated) may verify too.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence

SIGNATURE_HEADER = "X-Unique-Signature"
CREATED_AT_HEADER = "X-Unique-Created-At"
ID_HEADER = "X-Unique-Id"


FUTURE_SKEW = 300  # seconds a delivery time (or signed createdAt) may be ahead of this replica's clock
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")  # how the platform writes a signature (hexdigest)


class SignatureError(Exception):
    """The delivery is not signed, its signature is malformed, or its delivery time is out of range."""


class SecretMismatch(SignatureError):
    """A well-formed signature made with another secret (or of another body): a wrong or rotated
    ENDPOINT_SECRET looks exactly like this, so /webhook answers it with a status the platform retries."""


def sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(body: bytes, signature: str | None, created_at: str | None, secrets: Sequence[str], max_age: int) -> None:
    """Raise SignatureError unless `signature` signs `body` with one of `secrets` and `created_at` is
    at most `max_age` s old and at most FUTURE_SKEW s ahead.

    unique_sdk accepts a delivery time in the future; this does not: for an event without a signed
    createdAt the header is all that dates it, and an hour ahead would keep a replay fresh an hour longer.
    """
    if not signature:
        raise SignatureError(f"{SIGNATURE_HEADER} is missing")
    try:
        timestamp = int(created_at or "")
    except ValueError:
        raise SignatureError(f"{CREATED_AT_HEADER} is missing or not unix seconds") from None
    if not timestamp:
        raise SignatureError(f"{CREATED_AT_HEADER} is missing")
    if not _HEX_SHA256.fullmatch(signature):
        raise SignatureError(f"{SIGNATURE_HEADER} is not a lowercase hex HMAC-SHA256")
    given = signature.encode("ascii")
    if not any(hmac.compare_digest(sign(body, secret).encode("ascii"), given) for secret in secrets if secret):
        raise SecretMismatch(f"{SIGNATURE_HEADER} does not match the body (wrong secret, or a changed body)")
    now = time.time()
    if timestamp < now - max_age:
        raise SignatureError(f"{CREATED_AT_HEADER} is more than {max_age} s old")
    if timestamp > now + FUTURE_SKEW:
        raise SignatureError(f"{CREATED_AT_HEADER} is more than {FUTURE_SKEW} s in the future")


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
