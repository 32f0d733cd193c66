"""HMAC-SHA256 request signatures for the safety controls: sign, and verify with a time window."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime


def sign(secret: str, action: str, timestamp: int) -> str:
    message = f"{action}:{timestamp}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(
    secret: str, action: str, timestamp: int, signature: str, now: datetime, window_s: int
) -> str | None:
    """Return why the request is refused, or None when the signature is good and fresh. The
    signature is compared as given: only its canonical form (lowercase hex) can match, so a
    replay in another case is a different, wrong signature."""
    skew = abs(now.timestamp() - timestamp)
    if skew > window_s:
        return f"timestamp {timestamp} is {skew:.0f}s from server time (window {window_s}s)"
    expected = sign(secret, action, timestamp)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return "signature does not match"
    return None
