"""Health: the ledger answers, and what the system is doing: trading state, kill switch, and
the model the newest decision used. A ledger that does not answer is the app's 503 with a
reason code (serving/app.py), as on every route."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from core.records import HealthOverview
from core.risk.state import effective_state
from serving.deps import api_of
from serving.json import json_response
from serving.page_cache import kept_answer

router = APIRouter(tags=["health"])

LEDGER_DOWN = {
    503: {"description": "The ledger does not answer: `{status: unavailable, reason: <code>}`"}
}


@router.get("/health", responses=LEDGER_DOWN)
async def health(request: Request) -> Response:
    """Liveness, with the trading state and the model in use: read from the ledger, or kept
    while nothing has changed (serving/page_cache.py)."""
    api = api_of(request)

    def build() -> dict[str, Any]:
        return health_payload(api.ledger.overview.health(api.clock.now(), api.settings.account))

    body = await kept_answer(request, "health", build)
    return Response(body, media_type="application/json")


def health_payload(view: HealthOverview) -> dict[str, Any]:
    trading, cause, _ = effective_state(view.flags)
    model = view.model
    return {
        "status": "ok",
        "ledger": "ok",
        "trading_state": trading.value,
        "halted_by": None if cause is None else cause.value,
        "kill_switch": {"active": view.kill_switch.active, "reason": view.kill_switch.reason},
        "model": None if model is None else {
            "name": model.name,
            "version": model.version,
            "feature_set_version": model.feature_set_version,
            "last_decided_at": model.decided_at.isoformat(),
        },
    }  # fmt: skip


@router.get(
    "/ready",
    responses={
        200: {"description": "Ready: `{status: ready, checks: {ledger, reconciliation, model}}`"},
        503: {"description": "Not ready: `{status: not_ready, checks}`, each check not ok named"},
    },
)
def ready(request: Request) -> Response:
    """Readiness: 200 when the ledger answers, reconciliation is not pending and the model has
    a champion; else 503 naming what is not (a load balancer holds traffic back). Sync: the
    registry's client blocks, so it runs on the thread pool."""
    from services.readiness import readiness

    api = api_of(request)
    result = readiness(
        lambda: api.ledger.overview.health(api.clock.now(), api.settings.account),
        request.app.state.ml.catalog,
        api.settings.model_name,
    )
    body = {"status": "ready" if result.ready else "not_ready", "checks": result.checks}
    return json_response(body, status_code=200 if result.ready else 503)
