"""`tradeflow token create|list|revoke` on the ledger the settings name (SQLite and PostgreSQL):
the token is printed once, alone on stdout, works against the API, and is never shown again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from cli.main import app
from core.auth import RevokedToken, Scope, parse_token
from infra.ledger.ledger import Ledger
from services import bootstrap
from services.api_tokens import authenticate, hash_secret
from tests.serving.test_auth import probed
from tests.serving.tokens import bearer, issue_token

runner = CliRunner()


@pytest.fixture
def settings_ledger(
    app_settings,  # type: ignore[no-untyped-def]
    ledger: Ledger,
    ledger_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Ledger:
    """The ledger the command's settings name: this test's, on either backend."""
    monkeypatch.setenv("TRADEFLOW_DATABASE_URL", ledger_url)
    bootstrap.forget()
    return ledger


def create(*args: str) -> str:
    result = runner.invoke(app, ["token", "create", *args])
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def test_create_when_scopes_given_then_token_alone_on_stdout_and_it_authenticates(
    settings_ledger: Ledger,
) -> None:
    result = runner.invoke(
        app, ["token", "create", "--name", "grafana", "--scope", "read", "--scope", "trade"]
    )

    assert result.exit_code == 0, result.output
    text = result.stdout.strip()
    assert result.stdout == text + "\n"
    token = authenticate(settings_ledger.tokens, text, datetime.now(UTC))
    assert (token.name, token.scopes) == ("grafana", {Scope.READ, Scope.TRADE})
    assert token.expires_at is None
    assert "shown once" in result.stderr
    assert token.token_id in result.stderr
    assert text not in result.stderr


def test_create_when_expires_days_then_expiry_that_far_ahead(settings_ledger: Ledger) -> None:
    before = datetime.now(UTC)
    text = create("--name", "ci", "--scope", "admin", "--expires-days", "7")
    stored = settings_ledger.tokens.get(parse_token(text).token_id)

    assert stored is not None
    assert stored.token.expires_at is not None
    assert before + timedelta(days=7) <= stored.token.expires_at
    assert stored.token.expires_at <= datetime.now(UTC) + timedelta(days=7)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--name", "x"], "--scope"),
        (["--name", "x", "--scope", "root"], "'root' is not one of"),
        (["--name", "   ", "--scope", "read"], "name is 1 to 64 characters"),
        (["--name", "x" * 65, "--scope", "read"], "name is 1 to 64 characters"),
        (["--name", "x", "--scope", "read", "--expires-days", "0"], "--expires-days"),
    ],
)
def test_create_when_bad_request_then_exit_2_with_reason_and_nothing_stored(
    settings_ledger: Ledger, args: list[str], says: str
) -> None:
    result = runner.invoke(app, ["token", "create", *args])

    assert result.exit_code == 2
    assert says in " ".join(result.output.split())  # rich wraps long lines
    assert result.stdout == ""
    assert settings_ledger.tokens.list() == []


def test_create_when_token_used_against_api_then_scopes_apply(
    settings_ledger: Ledger, ledger_url: str
) -> None:
    text = create("--name", "reader", "--scope", "read")
    with probed(ledger_url) as client:
        assert client.get("/api/v1/probe/read", headers=bearer(text)).status_code == 200
        assert client.post("/api/v1/probe/trade", headers=bearer(text)).status_code == 403


def test_list_when_tokens_then_ids_names_scopes_status_never_secret_or_hash(
    settings_ledger: Ledger, ledger_url: str
) -> None:
    active = create("--name", "grafana", "--scope", "read", "--scope", "admin")
    revoked = create("--name", "old-bot", "--scope", "trade")
    expired = issue_token(ledger_url, Scope.READ, name="expired", expires_at=_past())
    runner.invoke(app, ["token", "revoke", parse_token(revoked).token_id])

    result = runner.invoke(app, ["token", "list"])

    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    for text, name, scopes, status in [
        (active, "grafana", "read,admin", "active"),
        (revoked, "old-bot", "trade", "revoked"),
        (expired, "expired", "read", "expired"),
    ]:
        parsed = parse_token(text)
        row = rows[parsed.token_id]
        assert [name, scopes, status] == [row.split("│")[i].strip() for i in (2, 3, 7)]
        assert parsed.secret not in result.output
        assert hash_secret(parsed.secret) not in result.output


def _past() -> datetime:
    """An expiry after the helper's issue time and long before now."""
    return datetime(2020, 6, 1, tzinfo=UTC)


def test_list_when_no_tokens_then_says_so(settings_ledger: Ledger) -> None:
    result = runner.invoke(app, ["token", "list"])
    assert result.exit_code == 0
    assert "no tokens" in result.output


def test_revoke_when_token_exists_then_refused_from_then_on(settings_ledger: Ledger) -> None:
    text = create("--name", "bot", "--scope", "trade")
    token_id = parse_token(text).token_id

    result = runner.invoke(app, ["token", "revoke", token_id])

    assert result.exit_code == 0, result.output
    assert f"token {token_id} (bot) revoked at" in result.output
    with pytest.raises(RevokedToken):
        authenticate(settings_ledger.tokens, text, datetime.now(UTC))


def test_revoke_when_unknown_id_then_exit_2_naming_it(settings_ledger: Ledger) -> None:
    result = runner.invoke(app, ["token", "revoke", "0123456789ab"])
    assert result.exit_code == 2
    assert "no token with id '0123456789ab'" in result.output
