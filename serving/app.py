"""FastAPI app: health, the safety controls and the decisions with their LLM calls, over the same
ledger the flows write."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import pkgutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

import serving.routes
from core.clock import Clock, SystemClock
from core.errors import LedgerMisconfigured, LedgerUnavailable, TradeflowError
from services import bootstrap
from services.bootstrap import Settings, get_settings
from serving.auth import install_auth
from serving.background import dispatching
from serving.correlation import CorrelationIdMiddleware
from serving.deps import Api, News
from serving.metrics import install_metrics
from serving.page_cache import WritesTouchNews
from serving.priority import HostDoor, SafetyFirst, SafetyFirstGate, safety_first_process
from serving.routes import dashboard
from serving.ws import hub_running

log = logging.getLogger(__name__)


@asynccontextmanager
async def watching(news: News | None) -> AsyncIterator[None]:
    """The news watch (infra.ledger.listen) kept for as long as the block."""
    if news is None:  # an in-memory ledger: nothing to watch
        yield
        return
    task = asyncio.create_task(news.run(), name="outbox-watch")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# How uvicorn serves this app (tradeflow serve, and bench/api.py's reference alike). Forwarded
# headers are the app's business (TRADEFLOW_TRUSTED_PROXIES), never uvicorn's: its default
# trusts X-Forwarded-For from loopback, which would let a local caller pick its own name.
SERVER_OPTIONS: dict[str, bool] = {
    "proxy_headers": False,
    "server_header": False,
    "access_log": False,
}


async def _ledger_down(request: Request, exc: Exception) -> JSONResponse:
    """The database did not answer (or cannot be used), on any route: 503 with a code, never
    the driver's text (it names users and hosts); nothing was applied (every write is one
    transaction)."""
    code = "ledger_misconfigured" if isinstance(exc, LedgerMisconfigured) else "ledger_unavailable"
    return JSONResponse({"status": "unavailable", "reason": code}, status_code=503)


def routers() -> list[APIRouter]:
    """Every module of serving.routes with a `router`, by name: a resource is added by adding
    its module. Paths never overlap, so the order does not matter."""
    found = []
    for info in sorted(pkgutil.iter_modules(serving.routes.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"serving.routes.{info.name}")
        if isinstance(router := getattr(module, "router", None), APIRouter):
            found.append(router)
    return found


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    """The API over the ledger `settings` names; `clock` is the wall clock unless a test
    brings its own. Refused without a kill-switch secret (bootstrap.MissingSecret)."""
    settings = settings or get_settings()
    desk = bootstrap.safety_desk(settings)

    @asynccontextmanager
    async def lifespan(running: FastAPI) -> AsyncIterator[None]:
        try:
            bootstrap.ledger(settings)  # migrates once per process
        except TradeflowError as exc:  # the API still starts: /health reports the outage
            log.error("ledger not ready at start-up: %s", exc)
        # Safety writes first; the news watch that lets read answers be kept; the
        # WebSocket's push follows the outbox; webhooks and alert summaries go out in the
        # background.
        async with (
            safety_first_process(),
            watching(running.state.api.news),
            hub_running(running),
            dispatching(running),
        ):
            yield

    app = FastAPI(title="tradeflow", version="0.1.0", lifespan=lifespan)
    app.add_exception_handler(LedgerUnavailable, _ledger_down)
    app.add_exception_handler(LedgerMisconfigured, _ledger_down)
    for router in routers():
        app.include_router(router, prefix="/api/v1")
    app.include_router(dashboard.page)  # the operator's page at /dashboard, outside /api/v1
    app.state.ml = bootstrap.ml_service(settings)

    app.state.api = Api(
        settings=settings,
        ledger=bootstrap.ledger_unmigrated(settings),
        desk=desk,
        clock=clock or SystemClock(),
        news=bootstrap.outbox_watch(settings),
        first=SafetyFirst(host=HostDoor(settings.var_dir / f"api-door-{settings.ledger_tag}")),
    )
    install_metrics(app, app.state.api)
    install_auth(app, app.state.api)  # tokens, rate limits, CORS when configured
    app.add_middleware(WritesTouchNews, api=app.state.api)
    app.add_middleware(SafetyFirstGate, first=app.state.api.first)
    app.add_middleware(CorrelationIdMiddleware)  # last added, outermost: every answer has it
    return app
