"""Builds a realistic open book in the ledger and a simulated exchange: resting limit orders
and filled positions, each from a recorded decision, through the real submit path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from core.agents.base import Vote
from core.candles.bar import Bar
from core.clock import FakeClock
from core.consensus import Consensus
from core.decision import Decision, DecisionInput
from core.orders import Order, OrderType, client_order_id_for, decision_id_for
from core.risk.limits import RiskVerdict
from core.types import Action, ClientOrderId, Side, Symbol
from infra.brokers.simulated import SimulatedBroker
from infra.ledger.ledger import Ledger
from services.execution import settle_simulated, submit_order

T0 = datetime(2024, 9, 1, tzinfo=UTC)
ACCOUNT = "paper"


def record_order(
    ledger: Ledger,
    symbol: str,
    n: int,
    side: Side = Side.BUY,
    qty: str = "1",
    limit: str | None = None,
    at: datetime | None = None,
) -> ClientOrderId:
    """A recorded decision and its order for the candle opening at `at` (default T0 + n h)."""
    t = at or T0 + timedelta(hours=n)
    did = decision_id_for(ACCOUNT, symbol, "1h", t)
    order = Order(
        client_order_id_for(did), did, Symbol(symbol), side, Decimal(qty), t, t,
        order_type=OrderType.LIMIT if limit else OrderType.MARKET,
        limit_price=Decimal(limit) if limit else None,
    )  # fmt: skip
    inp = DecisionInput(ACCOUNT, Symbol(symbol), "1h", t, Decimal(100), {}, 0.6, "m", "1", "fs",
                        0.004, True)  # fmt: skip
    action = Action.BUY if side is Side.BUY else Action.SELL
    ledger.orders.record_decision(
        Decision(
            did,
            inp,
            (Vote("bull", action, 0.7, "r"),),
            Consensus(action, 0.4, 0.4, "r"),
            None,
            RiskVerdict(()),
            order,
            t,
        ),
        "paper",
    )
    return order.client_order_id


def open_book(
    ledger: Ledger, broker: SimulatedBroker, open_orders: int, positions: int
) -> tuple[list[ClientOrderId], list[Symbol]]:
    """`positions` symbols bought and filled; `open_orders` limit buys resting far below."""
    clock = FakeClock(T0)
    ledger.accounts.ensure(ACCOUNT, broker.config.starting_cash, T0)
    held = [Symbol(f"S{i:02d}/USDT") for i in range(positions)]
    for i, symbol in enumerate(held):
        coid = record_order(ledger, symbol, i, qty="1")
        submit_order(ledger, broker, coid, clock)
        t = T0 + timedelta(hours=i + 1)
        bar = Bar(t, Decimal(100), Decimal(100), Decimal(100), Decimal(100), Decimal(1000))
        settle_simulated(ledger, broker, ACCOUNT, symbol, bar, clock)
    resting = []
    for i in range(open_orders):
        coid = record_order(ledger, f"R{i:02d}/USDT", 100 + i, qty="1", limit="1")
        submit_order(ledger, broker, coid, clock)
        resting.append(coid)
    return resting, held
