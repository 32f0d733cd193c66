"""Webhook signing, verification, backoff and subscription matching (core/webhooks.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest

from core.events import Event, EventKind
from core.webhooks import (
    CORRELATION_HEADER,
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    Backoff,
    Delivery,
    DeliveryStatus,
    InvalidSignature,
    InvalidSubscription,
    Jitter,
    Outgoing,
    body_of,
    check_url,
    delay,
    matches,
    outcome_of,
    parse_patterns,
    request_for,
    sign,
    verify,
)

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
T = int(NOW.timestamp())
SECRET = "whsec_test"
BODY = b'{"id":1,"kind":"order.created"}'


class FixedRng:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def outgoing(correlation_id: str | None = "paper:BTC/USDT:1h:1") -> Outgoing:
    event = Event(7, EventKind.FILL_RECORDED, {"qty": "0.1"}, NOW, correlation_id)
    delivery = Delivery(42, 3, 7, DeliveryStatus.PENDING, 1, NOW, None, None, NOW, None)
    return Outgoing(delivery, event, "http://127.0.0.1:9/hook", SECRET)


def test_sign_when_computed_then_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, T, BODY) == f"t={T},v1={expected}"


def test_verify_when_signed_body_then_returns_its_timestamp() -> None:
    assert verify(sign(SECRET, T, BODY), BODY, SECRET, NOW) == T


def test_verify_when_body_tampered_then_invalid_signature() -> None:
    header = sign(SECRET, T, BODY)
    with pytest.raises(InvalidSignature, match="no signature matches"):
        verify(header, BODY.replace(b"1", b"2"), SECRET, NOW)


def test_verify_when_other_secret_then_invalid_signature() -> None:
    with pytest.raises(InvalidSignature, match="no signature matches"):
        verify(sign("another", T, BODY), BODY, SECRET, NOW)


def test_verify_when_timestamp_outside_tolerance_then_invalid_signature() -> None:
    header = sign(SECRET, T, BODY)
    with pytest.raises(InvalidSignature, match="tolerance"):
        verify(header, BODY, SECRET, NOW + timedelta(minutes=6))
    assert verify(header, BODY, SECRET, NOW + timedelta(minutes=4)) == T


def test_verify_when_timestamp_tampered_then_invalid_signature() -> None:
    header = sign(SECRET, T, BODY).replace(f"t={T}", f"t={T + 1}")
    with pytest.raises(InvalidSignature, match="no signature matches"):
        verify(header, BODY, SECRET, NOW)


def test_verify_when_one_of_several_signatures_matches_then_accepted() -> None:
    """A receiver rotating its secret sees two v1 values; either one matching is enough."""
    old = sign("old-secret", T, BODY).split(",")[1]
    assert verify(f"{sign(SECRET, T, BODY)},{old}", BODY, "old-secret", NOW) == T


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "no Tradeflow-Signature"),
        ("", "no Tradeflow-Signature"),
        ("garbage", "malformed"),
        (f"v1={'0' * 64}", "exactly one t="),
        (f"t=abc,v1={'0' * 64}", "exactly one t="),
        (f"t={T},t={T},v1={'0' * 64}", "exactly one t="),
        (f"t={T}", "no v1="),
        (f"t={T},v0={'0' * 64}", "no v1="),
    ],
)
def test_verify_when_header_malformed_then_invalid_signature_says_why(
    header: str | None, reason: str
) -> None:
    with pytest.raises(InvalidSignature, match=reason):
        verify(header, BODY, SECRET, NOW)


@pytest.mark.parametrize(
    ("attempt", "jitter", "rng", "expected"),
    [
        (1, Jitter.EQUAL, 0.0, 0.5),  # ceiling 1: equal jitter waits at least half
        (1, Jitter.EQUAL, 0.5, 0.75),
        (4, Jitter.EQUAL, 0.0, 4.0),  # ceiling 1 * 2**3
        (4, Jitter.FULL, 0.25, 2.0),
        (4, Jitter.FULL, 0.0, 0.0),
        (30, Jitter.EQUAL, 0.0, 30.0),  # capped at 60
        (10_000, Jitter.FULL, 0.5, 30.0),  # no overflow however many attempts
    ],
)
def test_delay_when_attempt_grows_then_doubles_with_jitter_up_to_the_cap(
    attempt: int, jitter: Jitter, rng: float, expected: float
) -> None:
    assert delay(attempt, Backoff(1.0, 60.0, jitter), FixedRng(rng)) == pytest.approx(expected)


def test_delay_when_attempt_zero_or_backoff_inverted_then_value_error() -> None:
    with pytest.raises(ValueError, match="count from 1"):
        delay(0, Backoff(), FixedRng(0.5))
    with pytest.raises(ValueError, match="base_s <= cap_s"):
        Backoff(base_s=10, cap_s=1)


def test_outcome_when_2xx_then_delivered() -> None:
    outcome = outcome_of(3, 3, 204, None, NOW, Backoff(), FixedRng(0.0))
    assert (outcome.status, outcome.status_code, outcome.retry_at) == (
        DeliveryStatus.DELIVERED,
        204,
        None,
    )


@pytest.mark.parametrize(
    ("code", "error"), [(500, "HTTP 500"), (404, "HTTP 404"), (301, "HTTP 301")]
)
def test_outcome_when_not_2xx_before_last_attempt_then_retried_after_backoff(
    code: int, error: str
) -> None:
    outcome = outcome_of(2, 5, code, None, NOW, Backoff(2.0), FixedRng(0.0))
    assert outcome.status is DeliveryStatus.PENDING
    assert outcome.error == error
    assert outcome.retry_at == NOW + timedelta(seconds=2.0)  # ceiling 4, equal jitter at 0


def test_outcome_when_last_attempt_fails_then_dead_with_its_error() -> None:
    outcome = outcome_of(5, 5, None, "no answer within 5 s", NOW, Backoff(), FixedRng(0.0))
    assert (outcome.status, outcome.error, outcome.retry_at) == (
        DeliveryStatus.DEAD,
        "no answer within 5 s",
        None,
    )


@pytest.mark.parametrize(
    ("patterns", "kind", "wanted"),
    [
        (["*"], EventKind.METRICS_UPDATED, True),
        (["order.created"], EventKind.ORDER_CREATED, True),
        (["order.created"], EventKind.ORDER_UPDATED, False),
        (["orders"], EventKind.FILL_RECORDED, True),
        (["safety"], EventKind.KILL_SWITCH, True),
        (["safety", "decision.made"], EventKind.POSITION_CHANGED, False),
    ],
)
def test_matches_when_kind_channel_or_all_then_subscribed(
    patterns: list[str], kind: EventKind, wanted: bool
) -> None:
    assert matches(patterns, kind) is wanted


def test_parse_patterns_when_known_then_kept_once_in_order() -> None:
    assert parse_patterns(["orders", " safety.kill_switch", "orders", "*"]) == (
        "orders",
        "safety.kill_switch",
        "*",
    )


@pytest.mark.parametrize(
    ("events", "reason"),
    [([], "at least one"), (["order.filled", "orders"], "unknown \\['order.filled'\\]")],
)
def test_parse_patterns_when_empty_or_unknown_then_invalid_subscription(
    events: list[str], reason: str
) -> None:
    with pytest.raises(InvalidSubscription, match=reason):
        parse_patterns(events)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/hook", "https://hooks.example.com/a?b=c", "http://[::1]:80/"]
)
def test_check_url_when_http_or_https_with_host_then_accepted(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "javascript:alert(1)",
        "http://",
        "/relative/path",
        "https://user:pw@example.com/",
        "http://example.com:99999/",
        "http://example.com:0/",
        "http://exa mple.com/",
        "http://example.com/\n",
        "http://example.com/" + "a" * 2100,
    ],
)
def test_check_url_when_not_a_plain_http_url_then_invalid_subscription(url: str) -> None:
    with pytest.raises(InvalidSubscription, match="url"):
        check_url(url)


def test_request_for_when_built_then_body_is_the_event_json_and_headers_name_it() -> None:
    body, headers = request_for(outgoing(), NOW)
    assert json.loads(body) == {
        "id": 7,
        "channel": "orders",
        "kind": "fill.recorded",
        "correlation_id": "paper:BTC/USDT:1h:1",
        "created_at": NOW.isoformat(),
        "data": {"qty": "0.1"},
    }
    assert body == body_of(outgoing().event)
    assert headers[EVENT_HEADER] == "fill.recorded"
    assert headers[DELIVERY_HEADER] == "42"
    assert headers[CORRELATION_HEADER] == "paper:BTC/USDT:1h:1"
    assert verify(headers[SIGNATURE_HEADER], body, SECRET, NOW) == T


def test_request_for_when_no_correlation_id_then_no_correlation_header() -> None:
    _, headers = request_for(outgoing(None), NOW)
    assert CORRELATION_HEADER not in headers


def test_outgoing_when_printed_then_secret_not_shown() -> None:
    assert SECRET not in repr(outgoing())
