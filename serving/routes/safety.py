"""Kill switch: HMAC-signed, time-boxed, single-use requests; every attempt is recorded."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from core.safety.signing import verify
from infra.ledger.repository import KillSwitchState, SignatureReplayed
from serving.deps import ClockDep, LedgerDep, SettingsDep

router = APIRouter(prefix="/safety", tags=["safety"])

TIMESTAMP_HEADER = "X-Kill-Switch-Timestamp"
SIGNATURE_HEADER = "X-Kill-Switch-Signature"


class KillSwitchIn(BaseModel):
    model_config = {"extra": "forbid"}
    action: Literal["activate", "deactivate"]
    reason: str = Field(min_length=1, max_length=500)


class KillSwitchOut(BaseModel):
    active: bool
    reason: str | None
    changed_at: datetime | None

    @classmethod
    def of(cls, state: KillSwitchState) -> KillSwitchOut:
        return cls(active=state.active, reason=state.reason, changed_at=state.changed_at)


@router.get("/status")
def status(ledger: LedgerDep) -> dict[str, object]:
    events = [
        {
            "at": e.at.isoformat(),
            "action": e.action,
            "accepted": e.accepted,
            "reason": e.reason,
            "rejection": e.rejection,
            "client": e.client,
        }
        for e in ledger.kill_switch_events(limit=20)
    ]
    return {
        "kill_switch": KillSwitchOut.of(ledger.kill_switch()).model_dump(mode="json"),
        "recent_events": events,
    }


@router.post("/kill-switch", response_model=KillSwitchOut)
async def kill_switch(
    request: Request, ledger: LedgerDep, settings: SettingsDep, clock: ClockDep
) -> JSONResponse:
    now = clock.now()
    client = request.client.host if request.client else None
    raw_ts = request.headers.get(TIMESTAMP_HEADER)
    signature = request.headers.get(SIGNATURE_HEADER)
    body, body_error = _parse(await request.body())
    action = body.action if body else None
    reason = body.reason if body else None
    timestamp = int(raw_ts) if raw_ts is not None and raw_ts.strip().isdigit() else None

    def reject(status: int, why: str) -> JSONResponse:
        ledger.record_kill_switch_rejection(action, reason, why, now, client, timestamp)
        return JSONResponse({"detail": why}, status_code=status)

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
    try:
        state = ledger.set_kill_switch(
            body.action == "activate", body.reason, signature or "", now, client, timestamp
        )
    except SignatureReplayed:
        return reject(401, "signature already used (replay)")
    return JSONResponse(KillSwitchOut.of(state).model_dump(mode="json"))


def _parse(raw: bytes) -> tuple[KillSwitchIn | None, str | None]:
    try:
        payload = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"body is not JSON: {exc}"
    try:
        return KillSwitchIn.model_validate(payload), None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return None, f"malformed body: {problems}"
