"""Verification of a signed safety request, on bytes and headers alone (no ledger)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from core.safety.signing import sign
from services.safety_requests import (
    MAX_BODY_BYTES,
    Refusal,
    SignedRequest,
    Verified,
    client_of,
    printable,
    verify_request,
)

SECRET = "k" * 40
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
TS = int(NOW.timestamp())


def request(
    action: str = "activate", reason: str = "drill", **headers: str | None
) -> SignedRequest:
    raw = json.dumps({"action": action, "reason": reason}).encode()
    values = {"timestamp": str(TS), "signature": sign(SECRET, action, TS)} | headers
    return SignedRequest(raw, values["timestamp"], values["signature"], "10.0.0.1")


def check(req: SignedRequest, kind: str = "kill_switch") -> Verified | Refusal:
    return verify_request(req, kind, SECRET, 30, NOW)


def test_verify_when_signed_canonically_then_verified_with_its_fields() -> None:
    assert check(request()) == Verified("activate", "drill", sign(SECRET, "activate", TS), TS)


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"signature": sign(SECRET, "activate", TS).upper()}, "64 lowercase hex"),
        ({"signature": "é" * 64}, "64 lowercase hex"),
        ({"timestamp": "²"}, "1 to 12 ASCII digits"),
        ({"timestamp": "9" * 13}, "1 to 12 ASCII digits"),
        ({"timestamp": None}, "missing header(s): X-Kill-Switch-Timestamp"),
    ],
)
def test_verify_when_headers_not_canonical_then_401_saying_what_is_expected(
    headers: dict[str, str | None], why: str
) -> None:
    refused = check(request(**headers))
    assert isinstance(refused, Refusal)
    assert refused.status == 401
    assert why in refused.why
    assert refused.action == "activate"  # what was asked is still recorded


def test_verify_when_action_belongs_to_the_other_endpoint_then_422() -> None:
    refused = check(request("reset"), kind="kill_switch")
    assert isinstance(refused, Refusal)
    assert (refused.status, refused.action) == (422, None)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (None, f"body larger than {MAX_BODY_BYTES} bytes"),
        (b"[" * 5000, "body is not JSON: RecursionError"),
        (b"\xff", "body is not JSON: UnicodeDecodeError"),
        (b"[1]", "expected exactly action and reason, got list"),
        (json.dumps({"action": "activate", "reason": "a\x00b"}).encode(), "printable text"),
        (json.dumps({"action": "activate", "reason": "r" * 501}).encode(), "1 to 500"),
    ],
)
def test_verify_when_body_unusable_then_422_naming_the_problem(raw: bytes | None, why: str) -> None:
    refused = check(SignedRequest(raw, str(TS), sign(SECRET, "activate", TS), None))
    assert isinstance(refused, Refusal)
    assert refused.status == 422
    assert why in refused.why
    assert "\x00" not in (refused.reason or "")


def test_client_of_when_peer_untrusted_then_forwarded_for_is_ignored() -> None:
    assert client_of("127.0.0.1", "203.0.113.9", ()) == "127.0.0.1"
    assert client_of("10.0.0.2", "1.1.1.1, 203.0.113.9", {"10.0.0.2"}) == "203.0.113.9"
    assert client_of("10.0.0.2", "203.0.113.9, 10.0.0.3", {"10.0.0.2", "10.0.0.3"}) == "203.0.113.9"
    assert client_of("10.0.0.2", None, {"10.0.0.2"}) == "10.0.0.2"
    assert client_of(None, "1.1.1.1", ()) is None


def test_printable_when_control_characters_then_replaced_and_bounded() -> None:
    assert printable("stop\x00now\n") == "stop?now?"
    assert len(printable("x" * 900)) == 500
