"""Issue, revoke and verify the API's bearer tokens.

A token is `tf_<token_id>_<secret>`: 12 hex characters of id and 32 random bytes of secret
(urlsafe base64), both from `secrets`. The ledger keeps the SHA-256 of the secret, never the
secret: the text is shown once, when issued. A secret has 256 random bits, so one plain SHA-256
is enough (a slow password hash protects guessable secrets, and would cost every request).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from core.auth import (
    TOKEN_ID_HEX,
    ApiToken,
    Scope,
    TokenRefused,
    TokenText,
    UnknownToken,
    check_request,
    parse_token,
)
from core.ports import TokenStore

SECRET_BYTES = 32
CACHE_TTL_S = 5.0  # a verified token is believed this long per process (see TokenVerifier)
REFUSAL_TTL_S = 1.0  # a refused one: long enough to spare the ledger a flood, no longer
CACHE_SIZE = 10_000

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token and its text: the only time the text exists outside the client."""

    token: ApiToken
    text: str

    def __repr__(self) -> str:
        return f"IssuedToken(token={self.token!r}, text=***)"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue(
    store: TokenStore,
    name: str,
    scopes: Iterable[Scope],
    now: datetime,
    expires_at: datetime | None = None,
) -> IssuedToken:
    """Store a new token (only its secret's hash) and return its text, once."""
    wanted = frozenset(scopes)
    check_request(name, wanted, expires_at, now)
    text = TokenText(secrets.token_hex(TOKEN_ID_HEX // 2), secrets.token_urlsafe(SECRET_BYTES))
    token = ApiToken(text.token_id, name.strip(), wanted, now, expires_at)
    store.create(token, hash_secret(text.secret))
    return IssuedToken(token, str(text))


def authenticate(store: TokenStore, text: str, now: datetime) -> ApiToken:
    """The token `text` names, if its secret matches and it is neither revoked nor expired;
    else MalformedToken, UnknownToken (no such id, or a wrong secret), RevokedToken or
    ExpiredToken. No message holds the secret."""
    parsed = parse_token(text)
    stored = store.get(parsed.token_id)
    if stored is None:
        raise UnknownToken(f"no token with id {parsed.token_id}")
    if not hmac.compare_digest(stored.secret_hash, hash_secret(parsed.secret)):
        raise UnknownToken(f"wrong secret for token {parsed.token_id}")
    if (refusal := stored.token.refusal(now)) is not None:
        raise refusal
    return stored.token


class _TtlCache(Generic[V]):
    """At most `size` entries, each forgotten `ttl` seconds after it was put (oldest evicted
    first). Thread-safe: lookups on a miss may run on the API's read threads."""

    def __init__(self, ttl: float, size: int, timer: Callable[[], float]) -> None:
        self._ttl, self._size, self._timer = ttl, size, timer
        self._entries: OrderedDict[bytes, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= self._timer():
                del self._entries[key]
                return None
            return entry[1]

    def put(self, key: bytes, value: V) -> None:
        with self._lock:
            self._entries.pop(key, None)
            self._entries[key] = (self._timer() + self._ttl, value)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


class TokenVerifier:
    """`authenticate` with a per-process cache, so a request does not cost a ledger round trip.

    A verified token is cached for `ttl` seconds (5 by default), keyed by the SHA-256 of the
    whole text (a wrong secret never finds a right one's entry): a revocation takes effect
    within the TTL in every worker process. Expiry is checked on every use, cached or not.
    A refusal is cached for `refusal_ttl` seconds only (1 by default): a flood of the same bad
    token costs one lookup a second, and a token is never refused long after it became valid.
    """

    def __init__(
        self,
        store: TokenStore,
        ttl: float = CACHE_TTL_S,
        refusal_ttl: float = REFUSAL_TTL_S,
        size: int = CACHE_SIZE,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._good: _TtlCache[ApiToken] = _TtlCache(ttl, size, timer)
        # The refusal's type and message: one exception instance raised again and again
        # would grow its traceback each time.
        self._bad: _TtlCache[tuple[type[TokenRefused], str]] = _TtlCache(refusal_ttl, size, timer)

    def cached(self, text: str, now: datetime) -> ApiToken | None:
        """The token if this process verified `text` within the TTL (checked for expiry at
        `now`); raises a refusal seen within the refusal TTL, or MalformedToken; None when it
        must be looked up."""
        key = _key(text)
        if (token := self._good.get(key)) is not None:
            if (refusal := token.refusal(now)) is not None:
                raise refusal
            return token
        if (bad := self._bad.get(key)) is not None:
            raise bad[0](bad[1])
        parse_token(text)  # garbage is refused here, never looked up nor remembered
        return None

    def verify(self, text: str, now: datetime) -> ApiToken:
        """`cached`, else `authenticate` against the ledger (one read), remembered."""
        if (token := self.cached(text, now)) is not None:
            return token
        key = _key(text)
        try:
            token = authenticate(self._store, text, now)
        except TokenRefused as refusal:
            self._bad.put(key, (type(refusal), str(refusal)))
            raise
        self._good.put(key, token)
        return token


def _key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
