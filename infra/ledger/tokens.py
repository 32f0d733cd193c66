"""API tokens in the ledger: the SHA-256 of each secret, never the secret (services/api_tokens.py
makes and checks them)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.auth import ApiToken, StoredToken, UnknownToken
from core.errors import FatalError
from infra.ledger.models import ApiTokenRow
from infra.ledger.sessions import Sessions


class DuplicateToken(FatalError):
    """A token with this id is stored already (48 random bits: a retried create, not chance)."""


def token_of(row: ApiTokenRow) -> ApiToken:
    return ApiToken(
        token_id=row.token_id,
        name=row.name,
        scopes=frozenset(row.scopes),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


class ApiTokens:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def create(self, token: ApiToken, secret_hash: str) -> None:
        row = ApiTokenRow(
            token_id=token.token_id,
            name=token.name,
            scopes=sorted(s.value for s in token.scopes),  # JSON: a list, in a stable order
            secret_hash=secret_hash,
            created_at=token.created_at,
            expires_at=token.expires_at,
            revoked_at=token.revoked_at,
        )
        try:
            with self._sessions.write() as s:
                s.add(row)
        except IntegrityError:
            raise DuplicateToken(f"a token with id {token.token_id} exists already") from None

    def get(self, token_id: str) -> StoredToken | None:
        with self._sessions.read() as s:
            row = s.get(ApiTokenRow, token_id)
            return None if row is None else StoredToken(token_of(row), row.secret_hash)

    def list(self) -> list[ApiToken]:
        """Every token, revoked and expired ones too, oldest first."""
        q = select(ApiTokenRow).order_by(ApiTokenRow.created_at, ApiTokenRow.token_id)
        with self._sessions.read() as s:
            return [token_of(r) for r in s.scalars(q)]

    def revoke(self, token_id: str, now: datetime) -> ApiToken:
        """Revoke a token; revoking it again keeps the first time. UnknownToken when no token
        has this id."""
        with self._sessions.write() as s:
            row = s.get(ApiTokenRow, token_id, with_for_update=True)
            if row is None:
                raise UnknownToken(f"no token with id {token_id!r}")
            if row.revoked_at is None:
                row.revoked_at = now
            s.flush()
            return token_of(row)
