"""The WebSocket `/api/v1/ws`: live events by channel (the protocol: serving/ws.py)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, WebSocket
from starlette.responses import JSONResponse

from core.auth import Scope, TokenRefused
from core.errors import LedgerMisconfigured, LedgerUnavailable
from serving.auth import CHALLENGE, auth_of, token_text, websocket_token
from serving.ws import hub_of, serve

router = APIRouter(tags=["push"])

TRY_AGAIN_LATER = 1013
RECHECK_S = 5.0  # the verified-token cache's lifetime: a revocation shows within about 2x


@router.websocket("/ws")
async def push(ws: WebSocket) -> None:
    hub = hub_of(ws.app)
    if hub is None:  # an app served without its lifespan: nothing follows the outbox
        await ws.close(TRY_AGAIN_LATER, "push is not running")
        return
    token = await websocket_token(ws)
    if token is None:
        await refuse(ws, 401, "missing, invalid, revoked or expired token, or past its rate limit")
        return
    if not token.allows(Scope.READ):
        await refuse(ws, 403, f"token lacks scope {Scope.READ.value!r}")
        return
    await ws.accept()
    await serve(ws, hub, lambda: token_gone(ws))


async def token_gone(ws: WebSocket) -> None:
    """Return once the connection's token is revoked or expired: it is checked again every
    RECHECK_S (from the verified-token cache, so usually without I/O), as a REST request's
    would be, and the client is closed rather than left streaming."""
    text = token_text(ws)
    auth = auth_of(ws.app)
    while True:
        await asyncio.sleep(RECHECK_S)
        try:
            await auth.token(text or "")
        except TokenRefused:
            return
        except (LedgerUnavailable, LedgerMisconfigured):  # not a refusal: asked again later
            continue


async def refuse(ws: WebSocket, status: int, detail: str) -> None:
    """Refuse the handshake with an HTTP answer (the ASGI denial response), so a client sees
    why; a server without that extension can only close it (HTTP 403 to the client)."""
    if "websocket.http.response" not in ws.scope.get("extensions", {}):
        await ws.close(1008, detail)
        return
    headers = CHALLENGE if status == 401 else None
    await ws.send_denial_response(JSONResponse({"detail": detail}, status, headers))
