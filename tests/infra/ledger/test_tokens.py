"""API tokens in the ledger (SQLite and PostgreSQL): stored with the hash of their secret only,
read back whole, listed oldest first, revoked once."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from core.auth import ApiToken, Scope, StoredToken, UnknownToken, parse_token
from infra.ledger.ledger import Ledger
from infra.ledger.tokens import DuplicateToken
from services.api_tokens import issue

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
HASH = hashlib.sha256(b"not-a-real-secret").hexdigest()


def new_token(token_id: str = "0123456789ab", created_at: datetime = T0, **kw: object) -> ApiToken:
    fields: dict[str, object] = {"name": "ops", "scopes": frozenset({Scope.READ})} | kw
    return ApiToken(token_id=token_id, created_at=created_at, **fields)  # type: ignore[arg-type]


def test_get_when_created_then_read_back_with_hash_and_every_field(ledger: Ledger) -> None:
    token = new_token(
        scopes=frozenset({Scope.TRADE, Scope.READ}), expires_at=T0 + timedelta(days=30)
    )
    ledger.tokens.create(token, HASH)

    assert ledger.tokens.get(token.token_id) == StoredToken(token, HASH)
    assert ledger.tokens.get("ffffffffffff") is None


def test_create_when_id_taken_then_duplicate_refused_and_first_kept(ledger: Ledger) -> None:
    ledger.tokens.create(new_token(name="first"), HASH)

    with pytest.raises(DuplicateToken, match="0123456789ab"):
        ledger.tokens.create(new_token(name="second"), "0" * 64)

    stored = ledger.tokens.get("0123456789ab")
    assert stored is not None
    assert (stored.token.name, stored.secret_hash) == ("first", HASH)


def test_list_when_several_then_oldest_first_revoked_included(ledger: Ledger) -> None:
    later = new_token("bbbbbbbbbbbb", T0 + timedelta(hours=1))
    earlier = new_token("cccccccccccc", T0)
    for t in (later, earlier):
        ledger.tokens.create(t, HASH)
    ledger.tokens.revoke(later.token_id, T0 + timedelta(hours=2))

    assert [t.token_id for t in ledger.tokens.list()] == ["cccccccccccc", "bbbbbbbbbbbb"]
    assert ledger.tokens.list()[1].revoked_at == T0 + timedelta(hours=2)


def test_revoke_when_revoked_again_then_first_time_kept(ledger: Ledger) -> None:
    ledger.tokens.create(new_token(), HASH)

    first = ledger.tokens.revoke("0123456789ab", T0 + timedelta(minutes=1))
    again = ledger.tokens.revoke("0123456789ab", T0 + timedelta(minutes=5))

    assert first.revoked_at == again.revoked_at == T0 + timedelta(minutes=1)
    stored = ledger.tokens.get("0123456789ab")
    assert stored is not None
    assert stored.token.revoked_at == T0 + timedelta(minutes=1)


def test_revoke_when_unknown_id_then_refused_and_nothing_written(ledger: Ledger) -> None:
    with pytest.raises(UnknownToken, match="'nope'"):
        ledger.tokens.revoke("nope", T0)
    assert ledger.tokens.list() == []


def test_issue_when_stored_then_secret_nowhere_in_the_table_only_its_sha256(
    ledger: Ledger,
) -> None:
    issued = issue(ledger.tokens, "ops", [Scope.ADMIN], T0)
    secret = parse_token(issued.text).secret

    with ledger._sessions.connect() as conn:  # every column of every row, as the database has it
        rows = conn.execute(text("SELECT * FROM api_tokens")).all()

    dumped = repr(rows)
    assert len(rows) == 1
    assert secret not in dumped
    assert issued.text not in dumped
    assert hashlib.sha256(secret.encode()).hexdigest() in dumped
