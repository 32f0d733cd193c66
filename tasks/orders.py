from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from core.clock import SystemClock
from core.orders import Order
from core.ports import Broker
from core.types import ClientOrderId
from infra.jobs.execution import submit_order as submit_order_once
from infra.ledger.repository import Ledger
from tasks.retry import only_retryable


# No result cache: a cached result would hide a real submit. Retries are safe because
# submit_order_once looks the client id up before sending anything.
@task(
    name="submit-order",
    retries=3,
    retry_delay_seconds=[1, 2, 5],
    retry_condition_fn=only_retryable,
    cache_policy=NO_CACHE,
)
def submit_order(ledger: Ledger, broker: Broker, client_order_id: ClientOrderId) -> Order:
    return submit_order_once(ledger, broker, client_order_id, SystemClock())
