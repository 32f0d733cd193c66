"""`tradeflow token create|list|revoke`: the API's bearer tokens, in the ledger the settings name.

`create` prints the token's text once, alone on stdout (`TOKEN=$(tradeflow token create …)`);
the ledger keeps only the SHA-256 of its secret, so it can never be shown again. `list` shows
ids, names, scopes and times, never a secret or a hash.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cli.options import load_settings
from core.auth import ApiToken, Scope

if TYPE_CHECKING:
    from core.ports import Ledger

console = Console(stderr=True)  # stdout carries the token's text alone
token_app = typer.Typer(
    no_args_is_help=True, help="API bearer tokens: create (shown once), list, revoke."
)


def _ledger() -> Ledger:
    from core.errors import TradeflowError
    from infra.ledger.ledger import open_ledger  # the CLI may reach any layer

    settings = load_settings(console)
    try:
        return open_ledger(settings.ledger_url)  # no account, no exchange: only the tokens
    except TradeflowError as exc:
        _fail(exc, 1)


def _fail(exc: Exception, code: int) -> NoReturn:
    console.print(Text(f"error: {exc}", style="red"), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@token_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="who or what holds it, e.g. grafana")],
    scope: Annotated[list[Scope], typer.Option(help="read, trade or admin; repeat for several")],
    expires_days: Annotated[
        int | None, typer.Option(min=1, help="days until it expires (default: never)")
    ] = None,
) -> None:
    """Create a token and print it once: the ledger keeps only a hash of its secret."""
    from core.auth import InvalidTokenRequest
    from core.clock import SystemClock
    from core.errors import TradeflowError
    from services.api_tokens import issue

    ledger = _ledger()
    now = SystemClock().now()
    expires = None if expires_days is None else now + timedelta(days=expires_days)
    try:
        issued = issue(ledger.tokens, name, scope, now, expires)
    except InvalidTokenRequest as exc:
        _fail(exc, 2)
    except TradeflowError as exc:
        _fail(exc, 1)
    console.print(
        Text(f"token {issued.token.token_id} ({_describe(issued.token)}); ")
        .append("shown once, store it now:", style="bold"),
        highlight=False, soft_wrap=True,
    )  # fmt: skip
    typer.echo(issued.text)


@token_app.command("list")
def list_tokens() -> None:
    """Every token: id, name, scopes, created, expires, revoked (never a secret)."""
    from core.clock import SystemClock
    from core.errors import TradeflowError

    try:
        tokens = _ledger().tokens.list()
    except TradeflowError as exc:
        _fail(exc, 1)
    if not tokens:
        console.print("no tokens")
        return
    now = SystemClock().now()
    table = Table("id", "name", "scopes", "created", "expires", "revoked", "status")
    for t in tokens:
        refusal = t.refusal(now)
        status = "active" if refusal is None else ("revoked" if t.revoked_at else "expired")
        table.add_row(
            t.token_id, Text(t.name), _scopes(t), _time(t.created_at), _time(t.expires_at),
            _time(t.revoked_at), status,
        )  # fmt: skip
    Console(width=200).print(table)  # a table on stdout: it is what was asked for


@token_app.command("revoke")
def revoke(token_id: Annotated[str, typer.Argument(help="the id `token list` shows")]) -> None:
    """Revoke a token (running APIs refuse it within 5 s: each worker caches a verified one)."""
    from core.auth import UnknownToken
    from core.clock import SystemClock
    from core.errors import TradeflowError

    try:
        token = _ledger().tokens.revoke(token_id, SystemClock().now())
    except UnknownToken as exc:
        _fail(exc, 2)
    except TradeflowError as exc:
        _fail(exc, 1)
    console.print(
        Text(f"token {token.token_id} ({token.name}) revoked at {_time(token.revoked_at)}"),
        highlight=False, soft_wrap=True,
    )  # fmt: skip


def _describe(token: ApiToken) -> str:
    expiry = f"expires {_time(token.expires_at)}" if token.expires_at else "never expires"
    return f"{token.name}, scopes {_scopes(token)}, {expiry}"


def _scopes(token: ApiToken) -> str:
    return ",".join(s.value for s in Scope if s in token.scopes)


def _time(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}Z"
