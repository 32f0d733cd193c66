"""Bearer tokens for API tests, issued for real into the ledger the app under test reads:
`client.get("/api/v1/orders", headers=bearer(issue_token(ledger_url, Scope.READ)))`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.auth import Scope
from core.ports import Ledger
from infra.ledger.ledger import open_ledger
from services.api_tokens import issue

# Issued before any test clock (tests/serving/conftest.py NOW is 2026-11-24), valid for long.
ISSUED_AT = datetime(2020, 1, 1, tzinfo=UTC)


def issue_token(
    ledger_url_or_ledger: str | Ledger,
    *scopes: Scope,
    name: str = "test",
    expires_at: datetime | None = None,
) -> str:
    """The text of a new token with `scopes` (read when none is given)."""
    ledger = (
        open_ledger(ledger_url_or_ledger)
        if isinstance(ledger_url_or_ledger, str)
        else ledger_url_or_ledger
    )
    return issue(ledger.tokens, name, scopes or (Scope.READ,), ISSUED_AT, expires_at).text


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def expiring(days: float) -> datetime:
    """An expiry `days` after the token's issue time."""
    return ISSUED_AT + timedelta(days=days)
