"""The API's background work: the webhook dispatcher's passes (which also flush the alerts' due
summaries), about every half second for as long as the app runs.

Each pass runs in a worker thread (it sends HTTP and writes the ledger), never on the event
loop. A pass that fails is logged and the loop goes on, pausing longer (up to MAX_PAUSE_S) while
the failures last, so a ledger outage costs a log line now and then, not two a second. Several
workers (uvicorn --workers) may each run one: the ledger's claims keep them from sending a
delivery twice. It has a connection pool of its own, apart from the requests'.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI

from core.errors import TradeflowError
from services import bootstrap
from services.webhooks import WebhookDispatcher
from serving.deps import Api

log = logging.getLogger(__name__)

PERIOD_S = 0.5
MAX_PAUSE_S = 30.0


async def run_forever(
    work: Callable[[], bool],
    stop: asyncio.Event,
    period_s: float = PERIOD_S,
    max_pause_s: float = MAX_PAUSE_S,
) -> None:
    """`work` in a thread, then a pause, until `stop` is set (a pass under way finishes
    first: its results are recorded before the app closes). No pause while `work` says there is
    more to do (a backlog drains at full speed); a failure doubles the pause (up to
    `max_pause_s`), a success brings it back to `period_s`."""
    pause = period_s
    while not stop.is_set():
        failed, more = True, False
        try:
            more = await anyio.to_thread.run_sync(work)
            failed = False
        except TradeflowError as exc:  # the ledger down, say: known, no traceback
            log.warning("background pass failed: %s", exc)
        except Exception:  # anything else is a bug to see, but must not end the loop
            log.exception("background pass failed")
        pause = next_pause(pause, failed, period_s, max_pause_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0 if more else pause)


def next_pause(pause: float, failed: bool, period_s: float, max_pause_s: float) -> float:
    """Back to the period after a pass that worked; twice as long after each failure, capped."""
    return min(pause * 2, max_pause_s) if failed else period_s


@asynccontextmanager
async def dispatching(app: FastAPI) -> AsyncIterator[WebhookDispatcher]:
    """The app's webhook dispatcher, passing in the background for as long as the block."""
    api: Api = app.state.api
    dispatcher, close = bootstrap.background_dispatcher(api.settings, api.clock)

    def one_pass() -> bool:
        return dispatcher.run_once().more

    stop = asyncio.Event()
    task = asyncio.create_task(run_forever(one_pass, stop), name="webhook-dispatcher")
    try:
        yield dispatcher
    finally:
        stop.set()
        await task  # the pass under way ends (within about one send timeout), then it stops
        await anyio.to_thread.run_sync(close)
