"""Query parameters the resource listings share, validated before anything reads the ledger:
a bad value is a 422 naming the parameter, never a database error.

- `since`: ISO 8601 with its offset ("2024-02-03T09:00:00Z"); a time without one is refused
  (the ledger keeps UTC and will not guess), as is one that cannot be told in UTC.
- `symbol`: ccxt's unified form, BASE/QUOTE or BASE/QUOTE:SETTLE.
- `limit` (1..500) and `cursor`: keyset pages, newest first; `next_cursor` of a page asks for
  the next one, and is null on the last.

A listing's answer is kept a moment and given again while the ledger has no news
(serving/page_cache.py).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import AfterValidator, AwareDatetime, BaseModel

from core.browse import MAX_PAGE, BadCursor
from serving.page_cache import kept_answer

SYMBOL_PATTERN = r"^[A-Za-z0-9._-]{1,15}/[A-Za-z0-9._-]{1,15}(:[A-Za-z0-9._-]{1,15})?$"
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+$"


def _utc(moment: datetime) -> datetime:
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # year 1 with a positive offset, year 9999 with a negative one
        raise ValueError("a time that cannot be told in UTC") from None


UtcTime = Annotated[AwareDatetime, AfterValidator(_utc)]
Since = Annotated[
    UtcTime | None,
    Query(description="Only rows at or after this time (ISO 8601 with its offset)."),
]
SymbolFilter = Annotated[
    str | None,
    Query(max_length=32, pattern=SYMBOL_PATTERN, description="Only this symbol (BTC/USDT)."),
]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Rows per page, newest first.")]
PageCursor = Annotated[
    str | None,
    Query(
        max_length=512,
        pattern=CURSOR_PATTERN,
        description="`next_cursor` of the page before: the rows after it.",
    ),
]


def unprocessable(name: str, where: str, message: str) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors."""
    detail = [{"loc": [where, name], "msg": message, "type": "value_error"}]
    return HTTPException(status_code=422, detail=detail)


def decimal_text(value: Decimal) -> str:
    """Plain notation without trailing zeros: PostgreSQL hands back a NUMERIC column's full
    scale ("0.000150000000000000"), SQLite the value as stored; both read "0.00015" here. A
    zero reads "0", whatever its sign (a buy without a fee realises -0)."""
    return f"{value.normalize():f}" if value else "0"


def optional_decimal(value: Decimal | None) -> str | None:
    return None if value is None else decimal_text(value)


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


class DenialOut(BaseModel):
    """One risk-gate denial: its code (core.risk.limits.DenialCode) and why."""

    code: str
    detail: str


class ErrorOut(BaseModel):
    detail: str


# What every authenticated route may answer besides its own (serving/auth.py; the app's
# handler for a ledger that does not answer).
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Missing, unknown, revoked or expired token."},
    403: {"model": ErrorOut, "description": "The token lacks the scope."},
    429: {"model": ErrorOut, "description": "Past the token's rate limit (see Retry-After)."},
    503: {"description": "The ledger's database does not answer."},
}


async def listing(request: Request, key: Hashable, build: Callable[[], dict[str, Any]]) -> Response:
    """A listing's answer: `build` reads the ledger and returns the JSON payload; a request
    repeated while nothing changed is answered from the cache. A bad cursor is a 422."""
    try:
        body = await kept_answer(request, key, build)
    except BadCursor as exc:
        raise unprocessable("cursor", "query", str(exc)) from None
    return Response(body, media_type="application/json")
