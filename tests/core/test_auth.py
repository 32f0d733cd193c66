"""API tokens in the domain: ranked scopes, the token text's shape, and why a token may not be
used (revoked before expired)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.auth import (
    ApiToken,
    ExpiredToken,
    InvalidTokenRequest,
    MalformedToken,
    RevokedToken,
    Scope,
    TokenText,
    check_request,
    parse_token,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ID = "0123456789ab"
SECRET = "A" * 21 + "-_" + "z9" * 10  # 43 urlsafe characters


def token(
    *scopes: Scope, expires_at: datetime | None = None, revoked_at: datetime | None = None
) -> ApiToken:
    return ApiToken(ID, "ops", frozenset(scopes), T0, expires_at, revoked_at)


@pytest.mark.parametrize(
    ("held", "asked", "allowed"),
    [
        (Scope.READ, Scope.READ, True),
        (Scope.READ, Scope.TRADE, False),
        (Scope.READ, Scope.ADMIN, False),
        (Scope.TRADE, Scope.READ, True),
        (Scope.TRADE, Scope.TRADE, True),
        (Scope.TRADE, Scope.ADMIN, False),
        (Scope.ADMIN, Scope.READ, True),
        (Scope.ADMIN, Scope.TRADE, True),
        (Scope.ADMIN, Scope.ADMIN, True),
    ],
)
def test_allows_when_scope_held_then_it_and_lower_ranks_only(
    held: Scope, asked: Scope, allowed: bool
) -> None:
    assert token(held).allows(asked) is allowed


def test_allows_when_no_scope_then_nothing() -> None:
    assert not any(token().allows(s) for s in Scope)


def test_scopes_when_given_as_names_then_stored_as_scopes() -> None:
    t = ApiToken(ID, "ops", frozenset({"read", "admin"}), T0)  # type: ignore[arg-type]
    assert t.scopes == {Scope.READ, Scope.ADMIN}
    assert all(isinstance(s, Scope) for s in t.scopes)


def test_refusal_when_revoked_and_expired_then_revoked_first() -> None:
    t = token(Scope.READ, expires_at=T0 + timedelta(days=1), revoked_at=T0)
    assert isinstance(t.refusal(T0 + timedelta(days=2)), RevokedToken)


def test_refusal_when_expiry_reached_then_expired_from_that_instant() -> None:
    t = token(Scope.READ, expires_at=T0 + timedelta(days=1))
    assert t.refusal(T0 + timedelta(days=1) - timedelta(microseconds=1)) is None
    assert isinstance(t.refusal(T0 + timedelta(days=1)), ExpiredToken)


def test_refusal_when_neither_revoked_nor_expiring_then_none() -> None:
    assert token(Scope.READ).refusal(T0 + timedelta(days=10_000)) is None


def test_parse_token_when_well_formed_then_id_and_secret_and_text_round_trips() -> None:
    text = f"tf_{ID}_{SECRET}"
    parsed = parse_token(text)
    assert parsed == TokenText(ID, SECRET)
    assert str(parsed) == text


def test_repr_when_token_text_then_secret_hidden() -> None:
    assert SECRET not in repr(TokenText(ID, SECRET))
    assert ID in repr(TokenText(ID, SECRET))


@pytest.mark.parametrize(
    "text",
    [
        "",
        f"tf_{ID}_{SECRET}x",  # one character long
        f"tf_{ID}_{SECRET[:-1]}",  # one short
        f"tf_{ID.upper()}_{SECRET}",  # ids are lowercase hex
        f"tf_{ID[:-1]}g_{SECRET}",
        f"TF_{ID}_{SECRET}",
        f"tf-{ID}-{SECRET}",
        f" tf_{ID}_{SECRET}",
        f"tf_{ID}_{SECRET}\n",
        f"tf_{ID}_{SECRET[:-1]}=",  # padding is not urlsafe-base64 without padding
        f"tf_{ID}_{SECRET[:-1]}é",
    ],
)
def test_parse_token_when_malformed_then_refused_without_echoing_it(text: str) -> None:
    with pytest.raises(MalformedToken) as refused:
        parse_token(text)
    assert SECRET not in str(refused.value)


@given(st.text(max_size=80))
def test_parse_token_when_any_text_then_token_shape_or_refused(text: str) -> None:
    try:
        parsed = parse_token(text)
    except MalformedToken:
        return
    assert str(parsed) == text  # only the exact shape gets through


@pytest.mark.parametrize(
    ("name", "scopes", "expires_at", "match"),
    [
        ("   ", {Scope.READ}, None, "name"),
        ("x" * 65, {Scope.READ}, None, "name"),
        ("ops", set(), None, "needs a scope"),
        ("ops", {Scope.READ}, T0, "not after now"),
        ("ops", {Scope.READ}, T0 - timedelta(days=1), "not after now"),
    ],
)
def test_check_request_when_unusable_then_refused_with_reason(
    name: str, scopes: set[Scope], expires_at: datetime | None, match: str
) -> None:
    with pytest.raises(InvalidTokenRequest, match=match):
        check_request(name, frozenset(scopes), expires_at, T0)


def test_check_request_when_usable_then_accepted() -> None:
    check_request("x" * 64, frozenset({Scope.ADMIN}), T0 + timedelta(seconds=1), T0)
