"""API tokens: who may read, trade or administer, and the text a client sends.

A token's text is `tf_<token_id>_<secret>`: the id names the stored token (and its rate-limit
bucket); only the SHA-256 of the secret is ever stored. Scopes are ranked: admin implies trade,
trade implies read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from core.errors import FatalError

TOKEN_PREFIX = "tf_"
TOKEN_ID_HEX = 12  # characters of the id: 48 random bits, enough to never collide by chance
NAME_MAX = 64  # the ledger's column
# tf_ + 12 lowercase hex + _ + 43 urlsafe base64 characters (32 random bytes, no padding).
_TOKEN_TEXT = re.compile(r"tf_(?P<id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})")


class Scope(StrEnum):
    READ = "read"
    TRADE = "trade"
    ADMIN = "admin"


# A scope allows every scope ranked at or below it.
_RANK: Mapping[Scope, int] = {Scope.READ: 0, Scope.TRADE: 1, Scope.ADMIN: 2}


class TokenRefused(FatalError):
    """A bearer token that authenticates no one. The message never holds the secret."""


class MalformedToken(TokenRefused):
    """Text that is not `tf_<12 hex>_<43 urlsafe characters>`: never looked up."""


class UnknownToken(TokenRefused):
    """No stored token has this id, or its secret does not match (told apart only in logs,
    never to the client)."""


class RevokedToken(TokenRefused):
    pass


class ExpiredToken(TokenRefused):
    pass


class InvalidTokenRequest(FatalError):
    """A token that cannot be issued as asked (a blank or long name, no scope, an expiry in
    the past)."""


@dataclass(frozen=True, slots=True)
class ApiToken:
    token_id: str
    name: str
    scopes: frozenset[Scope]
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "scopes", frozenset(Scope(s) for s in self.scopes))

    def allows(self, scope: Scope) -> bool:
        """Whether any of this token's scopes ranks at or above `scope`."""
        return any(_RANK[s] >= _RANK[scope] for s in self.scopes)

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def refusal(self, now: datetime) -> TokenRefused | None:
        """Why this token may not be used at `now` (revoked first), or None."""
        if self.revoked_at is not None:
            return RevokedToken(f"token {self.token_id} was revoked at {self.revoked_at}")
        if self.expired(now):
            return ExpiredToken(f"token {self.token_id} expired at {self.expires_at}")
        return None


@dataclass(frozen=True, slots=True)
class StoredToken:
    """A token as the ledger keeps it: with the SHA-256 (hex) of its secret, never the secret."""

    token: ApiToken
    secret_hash: str


@dataclass(frozen=True, slots=True)
class TokenText:
    """A token's text taken apart."""

    token_id: str
    secret: str

    def __str__(self) -> str:
        return f"{TOKEN_PREFIX}{self.token_id}_{self.secret}"

    def __repr__(self) -> str:  # a traceback or a log line never shows the secret
        return f"TokenText(token_id={self.token_id!r}, secret=***)"


def parse_token(text: str) -> TokenText:
    """The id and secret of `text`; MalformedToken (without the text) when it is not one."""
    found = _TOKEN_TEXT.fullmatch(text)
    if found is None:
        raise MalformedToken(f"not a token: expected {TOKEN_PREFIX}<id>_<secret>")
    return TokenText(found["id"], found["secret"])


def check_request(
    name: str, scopes: frozenset[Scope], expires_at: datetime | None, now: datetime
) -> None:
    """Refuse a token that could never be used or stored as asked."""
    if not name.strip() or len(name) > NAME_MAX:
        raise InvalidTokenRequest(f"a token's name is 1 to {NAME_MAX} characters, not blank")
    if not scopes:
        raise InvalidTokenRequest(f"a token needs a scope: {[s.value for s in Scope]}")
    if expires_at is not None and expires_at <= now:
        raise InvalidTokenRequest(f"expiry {expires_at} is not after now ({now})")
