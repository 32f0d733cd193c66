"""Issuing and verifying API tokens against the real ledger (SQLite and PostgreSQL): the text is
shown once and only its secret's hash is stored; a wrong secret, an unknown id, a revoked or an
expired token is refused; the verifier's cache spares the ledger and forgets within its TTL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.auth import (
    ApiToken,
    ExpiredToken,
    InvalidTokenRequest,
    MalformedToken,
    RevokedToken,
    Scope,
    StoredToken,
    TokenRefused,
    UnknownToken,
    parse_token,
)
from core.ports import TokenStore
from infra.ledger.ledger import Ledger
from services.api_tokens import IssuedToken, TokenVerifier, authenticate, hash_secret, issue

T0 = datetime(2026, 3, 1, tzinfo=UTC)


class CountingStore:
    """The real store, counting the lookups the verifier makes."""

    def __init__(self, store: TokenStore) -> None:
        self.store, self.gets = store, 0

    def create(self, token: ApiToken, secret_hash: str) -> None:
        self.store.create(token, secret_hash)

    def get(self, token_id: str) -> StoredToken | None:
        self.gets += 1
        return self.store.get(token_id)

    def list(self) -> list[ApiToken]:
        return self.store.list()

    def revoke(self, token_id: str, now: datetime) -> ApiToken:
        return self.store.revoke(token_id, now)


class Timer:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(ledger: Ledger) -> CountingStore:
    return CountingStore(ledger.tokens)


@pytest.fixture
def issued(store: CountingStore) -> IssuedToken:
    """One issued token (the ledger is the test's: hypothesis's examples share it)."""
    return issue(store, "x", [Scope.READ], T0)


@pytest.fixture
def timer() -> Timer:
    return Timer()


@pytest.fixture
def verifier(store: CountingStore, timer: Timer) -> TokenVerifier:
    return TokenVerifier(store, ttl=5.0, refusal_ttl=1.0, timer=timer)


def test_issue_when_asked_then_text_names_stored_token_whose_hash_matches(
    store: CountingStore,
) -> None:
    issued = issue(store, " grafana ", [Scope.READ, Scope.TRADE], T0, T0 + timedelta(days=1))

    parsed = parse_token(issued.text)
    stored = store.get(parsed.token_id)
    assert stored is not None
    assert stored.token == issued.token
    assert issued.token.name == "grafana"
    assert issued.token.scopes == {Scope.READ, Scope.TRADE}
    assert stored.secret_hash == hash_secret(parsed.secret)
    assert parsed.secret not in repr(issued)


def test_issue_when_twice_then_different_ids_and_secrets(store: CountingStore) -> None:
    a, b = (parse_token(issue(store, "x", [Scope.READ], T0).text) for _ in range(2))
    assert a.token_id != b.token_id
    assert a.secret != b.secret


def test_issue_when_expiry_in_past_then_refused_and_nothing_stored(store: CountingStore) -> None:
    with pytest.raises(InvalidTokenRequest):
        issue(store, "x", [Scope.READ], T0, T0 - timedelta(seconds=1))
    assert store.list() == []


def test_authenticate_when_issued_then_its_token(store: CountingStore) -> None:
    issued = issue(store, "x", [Scope.ADMIN], T0)
    assert authenticate(store, issued.text, T0 + timedelta(days=365)) == issued.token


def test_authenticate_when_secret_wrong_then_unknown_naming_only_the_id(
    store: CountingStore,
) -> None:
    issued = issue(store, "x", [Scope.ADMIN], T0)
    parsed = parse_token(issued.text)
    forged = f"tf_{parsed.token_id}_{'A' * 43}"

    with pytest.raises(UnknownToken, match=parsed.token_id) as refused:
        authenticate(store, forged, T0)
    assert parsed.secret not in str(refused.value)
    assert "A" * 43 not in str(refused.value)


def test_authenticate_when_id_unknown_then_unknown(store: CountingStore) -> None:
    with pytest.raises(UnknownToken):
        authenticate(store, f"tf_{'0' * 12}_{'A' * 43}", T0)


def test_authenticate_when_revoked_then_revoked(store: CountingStore) -> None:
    issued = issue(store, "x", [Scope.READ], T0)
    store.revoke(issued.token.token_id, T0 + timedelta(hours=1))
    with pytest.raises(RevokedToken):
        authenticate(store, issued.text, T0 + timedelta(hours=1))


def test_authenticate_when_expired_then_expired(store: CountingStore) -> None:
    issued = issue(store, "x", [Scope.READ], T0, T0 + timedelta(hours=1))
    assert authenticate(store, issued.text, T0 + timedelta(minutes=59)) == issued.token
    with pytest.raises(ExpiredToken):
        authenticate(store, issued.text, T0 + timedelta(hours=1))


SECRET_SHAPE = r"[A-Za-z0-9_-]{43}"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_authenticate_when_any_text_but_the_issued_token_then_refused(
    store: CountingStore, issued: IssuedToken, data: st.DataObject
) -> None:
    # Anything, anything shaped like a token, and the issued id with any other secret.
    text = data.draw(
        st.one_of(
            st.text(max_size=120),
            st.from_regex(rf"tf_[0-9a-f]{{12}}_{SECRET_SHAPE}", fullmatch=True),
            st.from_regex(SECRET_SHAPE, fullmatch=True).map(
                lambda secret: f"tf_{issued.token.token_id}_{secret}"
            ),
        )
    )
    if text == issued.text:
        return
    with pytest.raises(TokenRefused):
        authenticate(store, text, T0)


def test_verify_when_repeated_within_ttl_then_one_ledger_read(
    verifier: TokenVerifier, store: CountingStore
) -> None:
    issued = issue(store, "x", [Scope.READ], T0)
    for _ in range(5):
        assert verifier.verify(issued.text, T0) == issued.token
    assert store.gets == 1


def test_verify_when_revoked_then_believed_until_ttl_then_refused(
    verifier: TokenVerifier, store: CountingStore, timer: Timer
) -> None:
    issued = issue(store, "x", [Scope.READ], T0)
    verifier.verify(issued.text, T0)
    store.revoke(issued.token.token_id, T0)

    timer.now += 4.9
    assert verifier.verify(issued.text, T0) == issued.token  # cached: the documented delay
    timer.now += 0.1
    with pytest.raises(RevokedToken):
        verifier.verify(issued.text, T0)


def test_verify_when_cached_token_expires_then_refused_at_once(
    verifier: TokenVerifier, store: CountingStore
) -> None:
    issued = issue(store, "x", [Scope.READ], T0, T0 + timedelta(hours=1))
    verifier.verify(issued.text, T0)
    with pytest.raises(ExpiredToken):
        verifier.verify(issued.text, T0 + timedelta(hours=1))
    assert store.gets == 1  # the expiry was read from the cached token


def test_verify_when_refused_then_remembered_for_refusal_ttl_only(
    verifier: TokenVerifier, store: CountingStore, timer: Timer
) -> None:
    unknown = f"tf_{'0' * 12}_{'A' * 43}"
    for _ in range(3):
        with pytest.raises(UnknownToken):
            verifier.verify(unknown, T0)
    assert store.gets == 1
    timer.now += 1.0
    with pytest.raises(UnknownToken):
        verifier.verify(unknown, T0)
    assert store.gets == 2


def test_verify_when_wrong_secret_for_cached_id_then_refused(
    verifier: TokenVerifier, store: CountingStore
) -> None:
    issued = issue(store, "x", [Scope.READ], T0)
    verifier.verify(issued.text, T0)
    with pytest.raises(UnknownToken):
        verifier.verify(f"tf_{issued.token.token_id}_{'B' * 43}", T0)


def test_verify_when_malformed_then_refused_without_a_lookup(
    verifier: TokenVerifier, store: CountingStore
) -> None:
    with pytest.raises(MalformedToken):
        verifier.verify("Bearer nonsense", T0)
    assert store.gets == 0


def test_cache_when_full_then_oldest_forgotten(store: CountingStore, timer: Timer) -> None:
    verifier = TokenVerifier(store, size=2, timer=timer)
    texts = [issue(store, f"t{i}", [Scope.READ], T0).text for i in range(3)]
    for text in texts:
        verifier.verify(text, T0)
    store.gets = 0
    verifier.verify(texts[2], T0)
    verifier.verify(texts[1], T0)
    assert store.gets == 0
    verifier.verify(texts[0], T0)
    assert store.gets == 1
