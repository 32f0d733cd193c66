"""Send one recorded order: a task of its own, so a retry is visible and never doubles it."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from core.clock import SystemClock
from core.orders import Order
from core.types import ClientOrderId
from services import bootstrap
from services.execution import submit_order as submit_once
from tasks.futures import wait_all
from tasks.retry import only_retryable


# No result cache: a cached result would hide a real submit. Retries are safe because
# submit_once looks the client id up at the broker before sending anything.
@task(
    name="submit-order",
    task_run_name="submit-{client_order_id}",
    retries=3,
    retry_delay_seconds=[1, 2, 5],
    retry_condition_fn=only_retryable,
    cache_policy=NO_CACHE,
)
def submit_order(client_order_id: ClientOrderId) -> Order:
    settings = bootstrap.get_settings()
    return submit_once(
        bootstrap.ledger(settings),
        bootstrap.broker(settings),
        client_order_id,
        SystemClock(),
        max_age=settings.max_candle_age,
    )


def send_all(client_order_ids: list[ClientOrderId]) -> list[str]:
    """Each order as its own submit-order task, all started at once; one that fails stops
    none of the others. Returns what failed, one line each."""
    _, failed = wait_all([(coid, submit_order.submit(coid)) for coid in client_order_ids])
    return failed
