"""The WebSocket `/api/v1/ws`: live events by channel (the protocol: serving/ws.py)."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket
from starlette.responses import JSONResponse

from core.auth import Scope
from serving.auth import CHALLENGE, websocket_token
from serving.ws import hub_of, serve

router = APIRouter(tags=["push"])

TRY_AGAIN_LATER = 1013


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
    await serve(ws, hub)


async def refuse(ws: WebSocket, status: int, detail: str) -> None:
    """Refuse the handshake with an HTTP answer (the ASGI denial response), so a client sees
    why; a server without that extension can only close it (HTTP 403 to the client)."""
    if "websocket.http.response" not in ws.scope.get("extensions", {}):
        await ws.close(1008, detail)
        return
    headers = CHALLENGE if status == 401 else None
    await ws.send_denial_response(JSONResponse({"detail": detail}, status, headers))
