"""Who may call the API: bearer tokens with scopes, a rate limit per token, and (only when
configured) which browser origins may call it.

A route asks for a scope: `token: ApiToken = Depends(require(Scope.READ))`, or in short
`token: ReadToken` (TradeToken, AdminToken). The answers:
401 (`WWW-Authenticate: Bearer`) for a missing, malformed, unknown, revoked or expired token,
403 for a token without the scope, 429 with Retry-After past the token's rate limit. A refusal
is logged with the token's id at most, never its secret. A verified token is cached per process
for 5 s (services.api_tokens.TokenVerifier): a revocation takes effect within 5 s in every
worker. The WebSocket calls `websocket_token`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.security import HTTPBearer

from core.auth import ApiToken, ExpiredToken, MalformedToken, RevokedToken, Scope, TokenRefused
from core.errors import LedgerMisconfigured, LedgerUnavailable
from services.api_tokens import TokenVerifier
from serving.deps import Api
from serving.rate_limit import TokenRateLimiter

log = logging.getLogger(__name__)

CHALLENGE = {"WWW-Authenticate": "Bearer"}
# What a client is told about a refused token: revoked and expired are its own to know (it
# holds the secret); an unknown id and a wrong secret read the same.
_TOLD: Mapping[type[TokenRefused], str] = {
    RevokedToken: "token revoked",
    ExpiredToken: "token expired",
}


class Unauthorized(HTTPException):
    def __init__(self, detail: str) -> None:
        super().__init__(401, detail, headers=CHALLENGE)


class RateLimited(HTTPException):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            429,
            f"rate limit exceeded: retry in {retry_after_s} s",
            headers={"Retry-After": str(retry_after_s)},
        )


@dataclass(frozen=True, slots=True)
class ApiAuth:
    api: Api
    verifier: TokenVerifier
    limiter: TokenRateLimiter

    async def token(self, text: str) -> ApiToken:
        """The token `text` names (core.auth.TokenRefused if none may be used now). A cache
        hit costs no I/O; a miss is one ledger read, off the event loop on PostgreSQL."""
        now = self.api.clock.now()
        cached = self.verifier.cached(text, now)
        if cached is not None:
            return cached
        return await self.api.read(self.verifier.verify, text, now)

    async def authenticate(self, authorization: str | None) -> ApiToken:
        """The token of an `Authorization: Bearer …` header, rate limited; else Unauthorized
        or RateLimited."""
        text = bearer_text(authorization)
        if text is None:
            raise Unauthorized("missing bearer token (Authorization: Bearer tf_…)")
        try:
            token = await self.token(text)
        except TokenRefused as exc:
            raise Unauthorized(_refused(exc)) from None
        if (wait := await self.limiter.hit(token.token_id)) is not None:
            raise RateLimited(wait)
        return token


def bearer_text(authorization: str | None) -> str | None:
    """The credentials of `Bearer <credentials>` (the scheme in any case), else None."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def _refused(exc: TokenRefused) -> str:
    # The message holds the token's id at most (core.auth and services.api_tokens say so);
    # garbage is not worth a line per request.
    if not isinstance(exc, MalformedToken):
        log.info("bearer token refused: %s", exc)
    return _TOLD.get(type(exc), "invalid token")


def auth_of(app: FastAPI) -> ApiAuth:
    auth: ApiAuth = app.state.auth
    return auth


class BearerScope(HTTPBearer):
    """The dependency `require` gives: FastAPI calls it with the request and hands the route
    the token. A security scheme itself (not a dependency on one), so the OpenAPI document
    shows the bearer scheme on every protected route at no extra dependency per request."""

    def __init__(self, scope: Scope) -> None:
        super().__init__(
            scheme_name="bearer",
            bearerFormat="tf_<id>_<secret>",
            description="`tradeflow token create`; scopes read < trade < admin",
            auto_error=False,
        )
        self.scope = scope

    async def __call__(self, request: Request) -> ApiToken:  # type: ignore[override]
        token = await auth_of(request.app).authenticate(request.headers.get("authorization"))
        if not token.allows(self.scope):
            raise HTTPException(403, f"token lacks scope {self.scope.value!r}")
        return token


@cache  # one dependency per scope: FastAPI sees the same callable on every route
def require(scope: Scope) -> BearerScope:
    """A dependency: the request's token if it allows `scope` (401, 403 or 429 if not)."""
    return BearerScope(scope)


# For a route's signature: `async def orders(request: Request, token: ReadToken) -> ...`.
ReadToken = Annotated[ApiToken, Depends(require(Scope.READ))]
TradeToken = Annotated[ApiToken, Depends(require(Scope.TRADE))]
AdminToken = Annotated[ApiToken, Depends(require(Scope.ADMIN))]


def token_text(ws: WebSocket) -> str | None:
    """What a WebSocket handshake offers as its token: the `Authorization: Bearer` header,
    else the `token` query parameter (a browser cannot set headers on a WebSocket)."""
    return bearer_text(ws.headers.get("authorization")) or ws.query_params.get("token")


async def websocket_token(ws: WebSocket) -> ApiToken | None:
    """The token of a WebSocket handshake (the `Authorization: Bearer` header, else the
    `token` query parameter: a browser cannot set headers on a WebSocket), counted against its
    rate limit; None when the connection must be refused."""
    text = token_text(ws)
    if not text:
        return None
    auth = auth_of(ws.app)
    try:
        token = await auth.token(text)
    except TokenRefused as exc:
        _refused(exc)
        return None
    except (LedgerUnavailable, LedgerMisconfigured) as exc:  # no 503 on a socket: refuse it
        log.warning("WebSocket refused: tokens cannot be checked: %s", exc)
        return None
    if await auth.limiter.hit(token.token_id) is not None:
        return None
    return token


def install_auth(app: FastAPI, api: Api) -> None:
    """Token checks and rate limits for `app` (kept on its state), and CORS only when
    settings.cors_origins names origins: without it a browser on another origin gets no
    CORS headers, so it cannot read any answer."""
    settings = api.settings
    app.state.auth = ApiAuth(
        api=api,
        verifier=TokenVerifier(api.ledger.tokens),
        limiter=TokenRateLimiter(settings.api_rate_limit, settings.redis_url),
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["*"],  # bearer tokens are headers, not cookies: no credentials mode
            expose_headers=["Retry-After", "X-Correlation-ID"],  # readable by the page
        )
