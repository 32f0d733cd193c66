"""The kill switch and breaker reset under attack: replays in another case, floods, spoofed
client names, inputs built to crash the handler, and arbitrary bytes (hypothesis). Nothing
forged is applied, every request gets a 4xx with a reason and is recorded or counted, and a
validly signed request always goes through."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.safety.signing import sign
from infra.ledger.ledger import open_ledger
from tests.serving.conftest import (
    BREAKER,
    NOW,
    SECRET,
    TS,
    URL,
    body,
    events,
    make_client,
    refusals,
    signed,
)

ENDPOINTS = [(URL, "activate"), (BREAKER, "reset")]


def payload_for(action: str) -> dict[str, str]:
    return body(action, "drill")


@pytest.mark.parametrize(("endpoint", "action"), ENDPOINTS)
def test_signature_when_resent_in_another_case_then_401_naming_the_format_even_after_restart(
    ledger_url: str, endpoint: str, action: str
) -> None:
    good = signed(action)
    sig = good["X-Kill-Switch-Signature"]
    with make_client(ledger_url) as api:
        assert api.post(endpoint, json=payload_for(action), headers=good).status_code == 200
    first_letter = next(i for i, c in enumerate(sig) if c.isalpha())
    one_upper = sig[:first_letter] + sig[first_letter].upper() + sig[first_letter + 1 :]
    variants = [sig.upper(), one_upper, sig[:32] + sig[32:].upper()]
    assert sig not in variants
    with make_client(ledger_url) as restarted:
        for variant in variants:
            headers = good | {"X-Kill-Switch-Signature": variant}
            r = restarted.post(endpoint, json=payload_for(action), headers=headers)
            assert r.status_code == 401
            assert r.json()["detail"] == (
                "X-Kill-Switch-Signature must be 64 lowercase hex characters (HMAC-SHA256)"
            )
        replay = restarted.post(endpoint, json=payload_for(action), headers=good)
        assert replay.json()["detail"] == "signature already used (replay)"
    assert [accepted for accepted, _ in events(ledger_url)] == [True, False, False, False, False]


def test_flood_when_1000_forged_requests_then_a_valid_activate_is_200_and_halted_at_once(
    client: TestClient, ledger_url: str
) -> None:
    forged = signed("activate", secret="z" * 40)
    answers = [client.post(URL, json=body(), headers=forged).status_code for _ in range(1000)]
    assert answers.count(401) == 10
    assert answers.count(429) == 990
    r = client.post(URL, json=body(reason="real halt"), headers=signed("activate"))  # same second
    assert r.status_code == 200
    status = client.get("/api/v1/safety/status").json()
    assert status["trading_state"] == "halted"
    assert status["refused_requests"]["last_minute"] == 1000
    assert refusals(ledger_url) == 1000
    assert len(events(ledger_url)) == 11  # ten refusals in detail, then the activation


def test_forwarded_for_when_peer_is_not_a_trusted_proxy_then_ignored(ledger_url: str) -> None:
    with make_client(ledger_url, peer=("127.0.0.1", 4000)) as api:
        for n in range(12):  # a rotating header neither renames the caller nor dodges the limit
            spoof = {"X-Forwarded-For": f"203.0.113.{n}"}
            forged = signed("activate", secret="q" * 32) | spoof
            api.post(URL, json=body(), headers=forged)
    recorded = {e.client for e in open_ledger(ledger_url).requests.recent(100)}
    assert recorded == {"127.0.0.1"}
    assert refusals(ledger_url, "127.0.0.1") == 12


def test_forwarded_for_when_peer_is_a_trusted_proxy_then_the_hop_before_it_is_the_client(
    ledger_url: str,
) -> None:
    with make_client(ledger_url, peer=("10.0.0.2", 4000), trusted_proxies=("10.0.0.2",)) as api:
        headers = signed("activate", secret="q" * 32) | {
            "X-Forwarded-For": "198.51.100.7, 203.0.113.9"  # caller-written, then the real one
        }
        api.post(URL, json=body(), headers=headers)
    assert refusals(ledger_url, "203.0.113.9") == 1


VALID_SIG = sign(SECRET, "activate", TS)
CRASHERS = [
    ("timestamp of 20 digits", {"X-Kill-Switch-Timestamp": "9" * 20}, None, 401),
    ("timestamp of 400 digits", {"X-Kill-Switch-Timestamp": "9" * 400}, None, 401),
    ("timestamp of 5000 digits", {"X-Kill-Switch-Timestamp": "9" * 5000}, None, 401),
    ("timestamp ²", {"X-Kill-Switch-Timestamp": "²".encode("latin-1")}, None, 401),
    ("non-ASCII signature", {"X-Kill-Switch-Signature": ("é" * 64).encode("latin-1")}, None, 401),
    ("100,000-deep JSON", {}, b"[" * 100_000 + b"]" * 100_000, 422),
    ("2,000-deep JSON", {}, b"[" * 2_000 + b"]" * 2_000, 422),
    ("NUL in the reason", {}, json.dumps(body(reason="stop\x00now")).encode(), 422),
    ("body not UTF-8", {}, b'{"action": "activate", "reason": "\xff\xfe"}', 422),
    ("200-char X-Forwarded-For", {"X-Forwarded-For": "a" * 200}, None, 200),
]


@pytest.mark.parametrize(
    ("name", "headers", "raw", "status"), CRASHERS, ids=[c[0] for c in CRASHERS]
)
def test_input_when_built_to_crash_the_handler_then_4xx_with_a_reason_and_counted(
    ledger_url: str, name: str, headers: dict[str, object], raw: bytes | None, status: int
) -> None:
    trusted = ("10.0.0.2",) if "Forwarded" in name else ()
    with make_client(ledger_url, peer=("10.0.0.2", 4000), trusted_proxies=trusted) as api:
        sent = {**signed("activate"), **headers, "Content-Type": "application/json"}
        content = raw if raw is not None else json.dumps(body()).encode()
        r = api.post(URL, content=content, headers=sent)  # type: ignore[arg-type]
    assert r.status_code == status, r.text
    if status == 200:  # a valid request behind a trusted proxy: recorded with a bounded name
        [request] = open_ledger(ledger_url).requests.recent(1)
        assert request.client == "a" * 128
        return
    assert r.json()["detail"]
    assert refusals(ledger_url, "10.0.0.2") == 1
    assert open_ledger(ledger_url).safety.kill_switch().active is False


def test_body_when_larger_than_four_kilobytes_then_422_without_reading_it(
    client: TestClient, ledger_url: str
) -> None:
    big = json.dumps(body(reason="x" * 400)) + " " * 5000
    r = client.post(URL, content=big, headers=signed("activate"))
    assert r.status_code == 422
    assert r.json()["detail"] == "body larger than 4096 bytes"
    assert refusals(ledger_url) == 1


def test_refusals_when_older_than_the_retention_then_pruned_and_accepted_requests_kept(
    ledger_url: str,
) -> None:
    from core.clock import FakeClock

    old = FakeClock(NOW - timedelta(days=40))
    with make_client(ledger_url, clock=old) as api:
        ts = int(old.now().timestamp())
        api.post(URL, json=body(), headers=signed("activate", ts=ts))
        api.post(URL, json=body(), headers=signed("activate", ts=ts, secret="w" * 32))
    assert len(events(ledger_url)) == 2
    with make_client(ledger_url) as api:  # 40 days later a refusal triggers the pruning
        api.post(URL, json=body(), headers=signed("activate", secret="w" * 32))
    assert events(ledger_url) == [(True, None), (False, "signature does not match")]


HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=80)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)
BODIES = st.one_of(
    st.binary(max_size=300),
    JSONISH.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"action": st.sampled_from(["activate", "reset", "x"]),
                           "reason": st.text(max_size=20)}).map(lambda v: json.dumps(v).encode()),
)  # fmt: skip


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    endpoint=st.sampled_from([URL, BREAKER]),
    timestamp=st.one_of(st.none(), HEADER_TEXT, st.just(str(TS))),
    signature=st.one_of(
        st.none(), HEADER_TEXT, st.text("0123456789abcdef", min_size=64, max_size=64)
    ),
    raw=BODIES,
)
def test_property_when_any_headers_and_body_then_never_5xx_never_applied_always_counted(
    property_client: tuple[TestClient, str],
    endpoint: str,
    timestamp,
    signature,
    raw: bytes,  # type: ignore[no-untyped-def]
) -> None:
    api, url = property_client
    before = refusals(url) + len(open_ledger(url).requests.recent(10_000, accepted=True))
    headers = {"Content-Type": "application/json"}
    if timestamp is not None:
        headers["X-Kill-Switch-Timestamp"] = timestamp.encode("latin-1")  # type: ignore[assignment]
    if signature is not None:
        headers["X-Kill-Switch-Signature"] = signature.encode("latin-1")  # type: ignore[assignment]
    r = api.post(endpoint, content=raw, headers=headers)
    assert r.status_code in (401, 422, 429), r.text
    ledger = open_ledger(url)
    assert ledger.safety.kill_switch().active is False
    assert ledger.requests.recent(10_000, accepted=True) == []
    assert refusals(url) == before + 1


@pytest.fixture(scope="module")
def property_client(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path_factory.mktemp('prop') / 'ledger.db'}"
    with make_client(url, safety_rate_limit=10_000) as api:
        yield api, url
