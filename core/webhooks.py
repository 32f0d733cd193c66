"""Webhooks: what a subscription receives, how each delivery is signed, and when a failed one is
tried again.

A delivery is signed the way Stripe signs its events: header
`Tradeflow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. The timestamp
is inside the signed text, so a receiver that checks it against its own clock (`verify`, with a
tolerance) refuses a captured delivery replayed later; several `v1=` may be present while a
secret is being rotated, and any one matching is enough.

A failed delivery is retried after `delay(attempt)`: exponential backoff with jitter, capped, so
a receiver that is down is not hammered and many deliveries failing at once do not all return at
the same instant. After the last attempt it is dead (the dead-letter queue) with its last error.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol
from urllib.parse import urlsplit

from core.errors import TradeflowError
from core.events import CHANNEL_OF, Channel, Event, EventKind

SIGNATURE_HEADER = "Tradeflow-Signature"
EVENT_HEADER = "Tradeflow-Event"
DELIVERY_HEADER = "Tradeflow-Delivery"
CORRELATION_HEADER = "X-Correlation-ID"
SIGNATURE_SCHEME = "v1"
ALL = "*"  # a subscription to every event
DEFAULT_TOLERANCE = timedelta(minutes=5)  # Stripe's default for a receiver's clock check
# How long an id missing from the outbox is waited for. On PostgreSQL ids are taken at insert
# and seen at commit, so a later id can be read before an earlier one commits; an id that
# stays missing this long belonged to a transaction that rolled back.
HOLE_WAIT = timedelta(seconds=30)
MAX_URL_LENGTH = 2048
MAX_PATTERNS = 32


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its next attempt (or being sent now, under a lease)
    DELIVERED = "delivered"  # the receiver answered 2xx
    DEAD = "dead"  # every attempt failed: kept with its last error until replayed


class Jitter(StrEnum):
    FULL = "full"  # anywhere in [0, backoff): spreads best, may retry at once
    EQUAL = "equal"  # in [backoff/2, backoff): always waits at least half


class WebhookError(TradeflowError):
    """A webhook request or delivery the system refuses or could not make."""


class InvalidSubscription(WebhookError, ValueError):
    """A subscription's URL or events that cannot be used: `field` says which, the message
    why."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.field = field


class InvalidSignature(WebhookError, ValueError):
    """A receiver's check failed: malformed header, stale timestamp or no matching signature."""


class UnknownSubscription(WebhookError, LookupError):
    """No webhook subscription with that id."""


class UnknownDelivery(WebhookError, LookupError):
    """No delivery with that id for that subscription."""


class NotReplayable(WebhookError):
    """A delivery that is still pending: it will be sent (again) without a replay."""


class SendFailed(WebhookError):
    """The request got no HTTP answer (the sender port's error): refused, reset, bad TLS…"""


class SendTimeout(SendFailed):
    """No answer within the delivery's timeout."""


class Rng(Protocol):
    """What the backoff needs of a random source (random.Random fits; tests pass a fixed one)."""

    def random(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Subscription:
    """Where events go. `secret` signs every delivery; it is shown once, when created."""

    subscription_id: int
    url: str
    events: tuple[str, ...]
    secret: str = field(repr=False)
    description: str
    active: bool
    created_at: datetime

    def wants(self, kind: EventKind) -> bool:
        return matches(self.events, kind)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event to one subscription, and how its attempts went."""

    delivery_id: int
    subscription_id: int
    event_id: int
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    last_status_code: int | None
    created_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A delivery claimed for one attempt, with what sending it needs. `delivery.attempts`
    already counts this attempt: its result is recorded only while that is still so."""

    delivery: Delivery
    event: Event
    url: str
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to: delivered, retried at `retry_at`, or dead."""

    status: DeliveryStatus
    status_code: int | None = None
    error: str | None = None
    retry_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Backoff:
    base_s: float = 1.0
    cap_s: float = 3600.0
    jitter: Jitter = Jitter.EQUAL

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError(f"backoff needs 0 < base_s <= cap_s (got {self.base_s}, {self.cap_s})")


def delay(attempt: int, backoff: Backoff, rng: Rng) -> float:
    """Seconds to wait after failed attempt number `attempt` (1 = the first):
    base * 2**(attempt-1), at most the cap, with jitter."""
    if attempt < 1:
        raise ValueError(f"attempts count from 1 (got {attempt})")
    ceiling = min(backoff.cap_s, backoff.base_s * 2.0 ** min(attempt - 1, 64))
    if backoff.jitter is Jitter.FULL:
        return ceiling * rng.random()
    return ceiling / 2 + ceiling / 2 * rng.random()


def outcome_of(
    attempts: int,
    max_attempts: int,
    status_code: int | None,
    error: str | None,
    now: datetime,
    backoff: Backoff,
    rng: Rng,
) -> Outcome:
    """A 2xx is delivered; anything else (no answer, 3xx, 4xx, 5xx) is retried after the
    backoff, or dead once `attempts` reached `max_attempts`."""
    if status_code is not None and 200 <= status_code < 300:
        return Outcome(DeliveryStatus.DELIVERED, status_code)
    error = error or f"HTTP {status_code}"
    if attempts >= max_attempts:
        return Outcome(DeliveryStatus.DEAD, status_code, error)
    retry_at = now + timedelta(seconds=delay(attempts, backoff, rng))
    return Outcome(DeliveryStatus.PENDING, status_code, error, retry_at)


# -- what a subscription receives --------------------------------------------------------------

KNOWN_PATTERNS: tuple[str, ...] = (ALL, *(c.value for c in Channel), *(k.value for k in EventKind))


def matches(patterns: Collection[str], kind: EventKind) -> bool:
    """Whether a subscription to `patterns` (kinds, channels or "*") receives `kind`."""
    return ALL in patterns or kind.value in patterns or CHANNEL_OF[kind].value in patterns


def parse_patterns(events: Iterable[str]) -> tuple[str, ...]:
    """The patterns a subscription may name, de-duplicated in their order; else
    InvalidSubscription naming the unknown ones and what is allowed."""
    wanted = tuple(dict.fromkeys(e.strip() for e in events))
    if not wanted:
        raise InvalidSubscription("events", "name at least one kind, channel or '*'")
    if len(wanted) > MAX_PATTERNS:
        raise InvalidSubscription("events", f"at most {MAX_PATTERNS} (got {len(wanted)})")
    unknown = [e for e in wanted if e not in KNOWN_PATTERNS]
    if unknown:
        raise InvalidSubscription("events", f"unknown {unknown}; known: {list(KNOWN_PATTERNS)}")
    return wanted


def check_url(url: str) -> str:
    """An absolute http(s) URL with a host, no credentials in it; else InvalidSubscription."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidSubscription("url", f"at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number in range
    except ValueError as exc:
        raise InvalidSubscription("url", str(exc)) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidSubscription("url", f"must be http:// or https:// with a host (got {url!r})")
    if parts.username is not None or parts.password is not None or port == 0:
        raise InvalidSubscription("url", "no user, password or port 0 in it")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise InvalidSubscription("url", "no spaces or control characters")
    return url


# -- signing -----------------------------------------------------------------------------------


def body_of(event: Event) -> bytes:
    """The delivery's body: the event as the API shows it (with its correlation id), compact
    JSON in a stable key order, so the bytes signed are the bytes sent."""
    return json.dumps(event.as_json(), separators=(",", ":"), sort_keys=True, default=str).encode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `Tradeflow-Signature` header's value."""
    return f"t={timestamp},{SIGNATURE_SCHEME}={signature(secret, timestamp, body)}"


def request_for(outgoing: Outgoing, now: datetime) -> tuple[bytes, dict[str, str]]:
    """Body and headers of one attempt, signed at `now`."""
    body = body_of(outgoing.event)
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(outgoing.secret, int(now.timestamp()), body),
        EVENT_HEADER: outgoing.event.kind.value,
        DELIVERY_HEADER: str(outgoing.delivery.delivery_id),
    }
    if outgoing.event.correlation_id is not None:
        headers[CORRELATION_HEADER] = outgoing.event.correlation_id
    return body, headers


def verify(
    header: str | None,
    body: bytes,
    secret: str,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> int:
    """A receiver's check of a delivery: returns the signed timestamp, or raises
    InvalidSignature (malformed header, timestamp further than `tolerance` from `now`, or no
    `v1` signature matching `body` under `secret`)."""
    timestamp, candidates = _parse_header(header)
    if abs(now.timestamp() - timestamp) > tolerance.total_seconds():
        raise InvalidSignature(f"timestamp {timestamp} is outside the tolerance of {tolerance}")
    expected = signature(secret, timestamp, body)
    # compare_digest on every candidate: the time taken says nothing about which bytes matched
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise InvalidSignature("no signature matches the body")
    return timestamp


def _parse_header(header: str | None) -> tuple[int, list[str]]:
    if not header:
        raise InvalidSignature(f"no {SIGNATURE_HEADER} header")
    pairs: dict[str, list[str]] = {}
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise InvalidSignature(f"malformed {SIGNATURE_HEADER} item {item.strip()!r}")
        pairs.setdefault(key, []).append(value)
    stamps, candidates = pairs.get("t", []), pairs.get(SIGNATURE_SCHEME, [])
    if len(stamps) != 1 or not stamps[0].isascii() or not stamps[0].isdigit():
        raise InvalidSignature("the header needs exactly one t=<unix seconds>")
    if not candidates:
        raise InvalidSignature(f"the header has no {SIGNATURE_SCHEME}= signature")
    return int(stamps[0]), candidates


def settled_position(
    cursor: int, events: Iterable[Event], now: datetime, hole_wait: timedelta = HOLE_WAIT
) -> int:
    """How far a reader of the outbox may move its cursor after reading `events` (id order)
    past `cursor`: over every id that follows without a gap, and over a gap only once the
    event after it is older than `hole_wait` (its missing ids will never commit). Events above
    a gap are read again next time; fanning them out again creates nothing new."""
    position = cursor
    for event in events:
        if event.event_id != position + 1 and now - event.created_at < hole_wait:
            break
        position = event.event_id
    return position
