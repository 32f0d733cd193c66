"""Kill switch and breaker reset: HMAC-signed, time-boxed, single-use requests; every one is
answered with a reason and recorded or counted (services/safety_requests.py does the work).

The body is read here with a bound (a few KB) before anything parses it. Signed requests (ledger
writes, the broker) run in the thread pool, never on the event loop, so health and status keep
answering while a kill switch is cancelling orders; reads go through `Api.read` (serving/deps.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from core.records import SafetyOverview
from core.risk.state import effective_state
from services.safety_requests import (
    MAX_BODY_BYTES,
    MAX_REASON_CHARS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Answer,
    Refusal,
    SignedRequest,
    Verified,
    client_of,
)
from serving.deps import Api, api_of, bounded_body
from serving.page_cache import kept_answer

router = APIRouter(prefix="/safety", tags=["safety"])
Apply = Callable[[SignedRequest, Verified, datetime, Callable[[], None]], Answer]


def _signed_request_doc(actions: list[str]) -> dict[str, object]:
    """The OpenAPI of a signed safety request. The body is read by hand (bounded, before any
    parsing), so FastAPI cannot infer it: it is declared here, with the two headers."""
    header = {"in": "header", "required": True}
    return {
        "parameters": [
            header | {"name": TIMESTAMP_HEADER, "description": "Unix seconds, within the "
                      "server's window", "schema": {"type": "string", "pattern": r"^\d{1,12}$"}},
            header | {"name": SIGNATURE_HEADER, "description": "Lowercase hex HMAC-SHA256 of "
                      '"<action>:<timestamp>" with the kill-switch secret',
                      "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {
                "type": "object",
                "required": ["action", "reason"],
                "properties": {
                    "action": {"type": "string", "enum": actions},
                    "reason": {"type": "string", "minLength": 1, "maxLength": MAX_REASON_CHARS},
                },
            }}},
        },
    }  # fmt: skip


SIGNED_ANSWERS: dict[int | str, dict[str, object]] = {
    200: {"description": "Applied (or already so); the state after it"},
    401: {"description": "Signature missing, wrong, stale or already used"},
    422: {
        "description": f"Body malformed or larger than {MAX_BODY_BYTES} bytes (the reason "
        "says which)"
    },
    429: {"description": "Too many refused requests from this client; Retry-After"},
    503: {"description": "The ledger does not answer; nothing was applied"},
}


@router.get("/status", responses={503: {"description": "The ledger does not answer"}})
async def status(request: Request) -> Response:
    """The trading state and what halts it, the kill switch and its steps, the breaker, the
    latest accepted (signed) requests, and counts of refused ones: one database read, or the
    answer kept while nothing has changed (serving/page_cache.py; refusals write no event, so
    their counts may lag by the kept answer's age, a second at most)."""
    api = api_of(request)

    def build() -> dict[str, Any]:
        return status_payload(api.ledger.overview.safety(api.clock.now()))

    body = await kept_answer(request, "safety-status", build)
    return Response(body, media_type="application/json")


def status_payload(view: SafetyOverview) -> dict[str, Any]:
    trading, cause, detail = effective_state(view.flags)
    ks, breaker = view.kill_switch, view.breaker
    return {
        "trading_state": trading.value,
        "halted_by": None if cause is None else {"control": cause.value, "detail": detail},
        "kill_switch": {
            "active": ks.active,
            "reason": ks.reason,
            "changed_at": None if ks.changed_at is None else ks.changed_at.isoformat(),
        },
        "kill_switch_steps": [
            {"at": e.at.isoformat(), "step": e.step, "detail": e.detail}
            for e in view.kill_switch_steps
        ],
        "circuit_breaker": {
            "tripped": bool(breaker and breaker.active),
            "reason": breaker.reason if breaker else None,
            "until": breaker.until.isoformat() if breaker and breaker.until else None,
        },
        "accepted_requests": [
            {"at": r.at.isoformat(), "action": r.action, "reason": r.reason, "client": r.client}
            for r in view.accepted
        ],
        "refused_requests": {
            "last_minute": view.refusals_last_minute,
            "last_hour": view.refusals_last_hour,
            "last_day": view.refusals_last_day,
        },
    }  # fmt: skip


@router.post(
    "/kill-switch",
    openapi_extra=_signed_request_doc(["activate", "deactivate"]),
    responses=SIGNED_ANSWERS,
)
async def kill_switch(request: Request) -> JSONResponse:
    """`{"action": "activate" | "deactivate", "reason": "..."}` signed over
    "<action>:<timestamp>"; an activation halts, cancels and closes before it answers."""
    api = api_of(request)
    answer = await _signed_write(request, api, "kill_switch", api.desk.apply_kill_switch)
    return JSONResponse(answer.body, status_code=answer.status)


@router.post(
    "/circuit-breaker", openapi_extra=_signed_request_doc(["reset"]), responses=SIGNED_ANSWERS
)
async def circuit_breaker_reset(request: Request) -> JSONResponse:
    """Reset a tripped breaker before its cooldown ends: `{"action": "reset", ...}`, signed
    like the kill switch (HMAC over "reset:<timestamp>")."""
    api = api_of(request)
    answer = await _signed_write(request, api, "breaker", api.desk.apply_breaker_reset)
    return JSONResponse(answer.body, status_code=answer.status)


async def _signed_write(request: Request, api: Api, kind: str, apply: Apply) -> Answer:
    """Check the request here (no I/O); record a refusal on a thread; apply a verified one on
    a thread with the door held until its write is in the ledger (serving/priority.py), which
    is also this process's news (serving/page_cache.py)."""
    signed = await read_signed(request, api.settings.trusted_proxies)
    now = api.clock.now()
    checked = api.desk.check(signed, kind, now)
    if isinstance(checked, Refusal):
        return await run_in_threadpool(api.desk.refuse, signed, checked, now)
    async with api.first.writing(on_written=api.wrote) as written:
        return await run_in_threadpool(apply, signed, checked, now, written)


async def read_signed(request: Request, trusted_proxies: tuple[str, ...]) -> SignedRequest:
    """Headers and at most MAX_BODY_BYTES of body: a larger body is not read on (its request
    is refused as too large), so no caller can make the server hold or parse much."""
    body = await bounded_body(request, MAX_BODY_BYTES)
    peer = request.client.host if request.client else None
    return SignedRequest(
        body=body,
        timestamp=request.headers.get(TIMESTAMP_HEADER),
        signature=request.headers.get(SIGNATURE_HEADER),
        client=client_of(peer, request.headers.get("x-forwarded-for"), trusted_proxies),
    )
