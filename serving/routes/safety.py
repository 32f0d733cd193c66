"""Kill switch: HMAC-signed, time-boxed, single-use requests; every attempt is recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from core.clock import Clock
from core.errors import FatalError
from core.ports import Ledger
from core.records import KillSwitchState
from core.risk.state import Control, effective_state
from core.safety.signing import verify
from services.bootstrap import Settings
from services.kill_switch import engage
from serving.deps import AlertsDep, BrokerDep, ClockDep, LedgerDep, SettingsDep

router = APIRouter(prefix="/safety", tags=["safety"])

TIMESTAMP_HEADER = "X-Kill-Switch-Timestamp"
SIGNATURE_HEADER = "X-Kill-Switch-Signature"


class KillSwitchIn(BaseModel):
    model_config = {"extra": "forbid"}
    action: Literal["activate", "deactivate"]
    reason: str = Field(min_length=1, max_length=500)


class BreakerResetIn(BaseModel):
    model_config = {"extra": "forbid"}
    action: Literal["reset"]
    reason: str = Field(min_length=1, max_length=500)


class KillSwitchOut(BaseModel):
    active: bool
    reason: str | None
    changed_at: datetime | None
    # Filled in on activation: what the kill switch did before this answer was sent.
    cancelled_orders: int | None = None
    closing_orders: int | None = None
    failures: list[str] = Field(default_factory=list)
    seconds: float | None = None

    @classmethod
    def of(cls, state: KillSwitchState) -> KillSwitchOut:
        return cls(active=state.active, reason=state.reason, changed_at=state.changed_at)


@router.get("/status")
def status(ledger: LedgerDep, clock: ClockDep) -> dict[str, object]:
    events = [
        {
            "at": e.at.isoformat(),
            "action": e.action,
            "accepted": e.accepted,
            "reason": e.reason,
            "rejection": e.rejection,
            "client": e.client,
        }
        for e in ledger.requests.recent(limit=20)
    ]
    trading, cause, detail = effective_state(ledger.safety.flags(clock.now()))
    steps = [
        {"at": e.at.isoformat(), "step": e.step, "detail": e.detail}
        for e in ledger.safety.events(Control.KILL_SWITCH, limit=10)
    ]
    return {
        "trading_state": trading.value,
        "halted_by": None if cause is None else {"control": cause.value, "detail": detail},
        "kill_switch": KillSwitchOut.of(ledger.safety.kill_switch()).model_dump(mode="json"),
        "kill_switch_steps": steps,
        "circuit_breaker": _breaker(ledger),
        "recent_events": events,
    }


@dataclass(frozen=True, slots=True)
class SignedRequest:
    action: str
    reason: str
    signature: str
    timestamp: int
    client: str | None
    now: datetime
    reject: Callable[[int, str], JSONResponse]


async def _authenticate(
    request: Request,
    ledger: Ledger,
    settings: Settings,
    clock: Clock,
    model: type[KillSwitchIn] | type[BreakerResetIn],
) -> SignedRequest | JSONResponse:
    """Rate limit, parse, check headers, time window and HMAC; every refusal is recorded."""
    now = clock.now()
    client = request.client.host if request.client else None
    raw_ts = request.headers.get(TIMESTAMP_HEADER)
    signature = request.headers.get(SIGNATURE_HEADER)
    body, body_error = _parse(await request.body(), model)
    action = body.action if body else None
    reason = body.reason if body else None
    timestamp = int(raw_ts) if raw_ts is not None and raw_ts.strip().isdigit() else None

    def reject(status: int, why: str) -> JSONResponse:
        ledger.requests.record_refusal(action, reason, why, now, client, timestamp)
        return JSONResponse({"detail": why}, status_code=status)

    recent = ledger.requests.count_refusals(client, now - timedelta(seconds=60))
    if recent >= settings.safety_rate_limit:
        return reject(429, f"too many rejected requests from {client}: {recent} in the last 60s")
    if body_error is not None:
        return reject(422, body_error)
    assert body is not None
    missing = [h for h, v in ((TIMESTAMP_HEADER, raw_ts), (SIGNATURE_HEADER, signature)) if not v]
    if missing:
        return reject(401, f"missing header(s): {', '.join(missing)}")
    if timestamp is None:
        return reject(401, f"{TIMESTAMP_HEADER} must be unix seconds, got {raw_ts!r}")
    secret = settings.kill_switch_secret
    assert secret is not None  # create_app refuses to start without it
    refusal = verify(
        secret.get_secret_value(),
        body.action,
        timestamp,
        signature or "",
        now,
        settings.kill_switch_window_s,
    )
    if refusal is not None:
        return reject(401, refusal)
    return SignedRequest(body.action, body.reason, signature or "", timestamp, client, now, reject)


@router.post("/kill-switch", response_model=KillSwitchOut)
async def kill_switch(
    request: Request,
    ledger: LedgerDep,
    settings: SettingsDep,
    clock: ClockDep,
    broker: BrokerDep,
    alerts: AlertsDep,
) -> JSONResponse:
    req = await _authenticate(request, ledger, settings, clock, KillSwitchIn)
    if isinstance(req, JSONResponse):
        return req
    try:
        state = ledger.requests.set_kill_switch(
            req.action == "activate", req.reason, req.signature, req.now, req.client, req.timestamp
        )
    except FatalError as exc:
        return req.reject(401, str(exc))
    out = KillSwitchOut.of(state)
    if state.active:
        # Runs before the answer: the caller learns what was cancelled and closed.
        report = engage(
            ledger, broker, settings.account, clock, alerts, settings.close_positions_on_kill
        )
        out.cancelled_orders = len(report.cancelled)
        out.closing_orders = len(report.closing_orders)
        out.failures = report.cancel_failed + report.close_failed
        out.seconds = round(report.seconds_total, 4)
    else:
        alerts.send("tradeflow kill switch released", f"reason: {req.reason}")
    return JSONResponse(out.model_dump(mode="json"))


@router.post("/circuit-breaker")
async def circuit_breaker_reset(
    request: Request, ledger: LedgerDep, settings: SettingsDep, clock: ClockDep, alerts: AlertsDep
) -> JSONResponse:
    """Reset a tripped breaker before its cooldown ends: signed like the kill switch, with
    action "reset" (HMAC over "reset:<timestamp>")."""
    req = await _authenticate(request, ledger, settings, clock, BreakerResetIn)
    if isinstance(req, JSONResponse):
        return req
    try:
        ledger.requests.reset_circuit_breaker(
            req.reason, req.signature, req.now, req.client, req.timestamp
        )
    except FatalError as exc:
        return req.reject(401, str(exc))
    alerts.send("tradeflow circuit breaker reset early", f"reason: {req.reason}")
    row = ledger.safety.control(Control.CIRCUIT_BREAKER)
    return JSONResponse(
        {"tripped": bool(row and row.active), "reason": req.reason, "reset_at": req.now.isoformat()}
    )


def _breaker(ledger: Ledger) -> dict[str, object]:
    row = ledger.safety.control(Control.CIRCUIT_BREAKER)
    if row is None:
        return {"tripped": False, "reason": None, "until": None}
    return {
        "tripped": row.active,
        "reason": row.reason,
        "until": None if row.until is None else row.until.isoformat(),
    }


def _parse(
    raw: bytes, model: type[KillSwitchIn] | type[BreakerResetIn]
) -> tuple[KillSwitchIn | BreakerResetIn | None, str | None]:
    try:
        payload = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"body is not JSON: {exc}"
    try:
        return model.model_validate(payload), None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return None, f"malformed body: {problems}"
