from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from core.errors import LedgerMisconfigured, LedgerUnavailable
from serving.deps import LedgerDep

router = APIRouter(tags=["health"])


@router.get("/health")
def health(ledger: LedgerDep) -> JSONResponse:
    try:
        ledger.ping()
    except (LedgerUnavailable, LedgerMisconfigured, OSError) as exc:
        reason = f"ledger unavailable: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
    return JSONResponse({"status": "ok", "ledger": "ok"})
