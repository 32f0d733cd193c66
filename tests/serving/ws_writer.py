"""The other process of the WebSocket tests: it opens the ledger the API serves and writes, as a
flow worker would, while the test's clients listen to the API.

    python -m tests.serving.ws_writer URL trade HOUR   a decision at T0 + HOUR hours, its order
        sent and filled, the kill switch engaged and released, then a denied decision (the
        marker: the last event)
    python -m tests.serving.ws_writer URL flood N SIZE   N order.updated events of SIZE bytes of
        payload each, then a decision.made marker

Prints the marker's correlation id (the decision id) on its last line.
"""

from __future__ import annotations

import secrets
import sys
from datetime import timedelta
from decimal import Decimal

from core.events import EventKind
from core.orders import Fill, OrderEvent
from core.risk.state import Control
from core.types import Side, Symbol
from infra.ledger.ledger import Ledger, open_ledger
from tests.infra.ledger.test_ledger import T0, make_decision


def trade(ledger: Ledger, hour: int) -> str:
    at = T0 + timedelta(hours=hour)
    ledger.accounts.ensure("paper", Decimal("10000"), at)
    decision = make_decision(at)
    assert decision.order is not None
    coid = decision.order.client_order_id
    assert ledger.orders.record_decision(decision, "paper")
    ledger.orders.transition(coid, OrderEvent.SUBMIT, at)
    fill = Fill(
        coid,
        Symbol("BTC/USDT"),
        Side.BUY,
        decision.order.quantity,
        Decimal("57040.85617"),
        Decimal("0.5"),
        at + timedelta(hours=1),
        f"{coid}-1",
    )
    assert ledger.fills.record("paper", fill)
    ledger.safety.set_control(Control.KILL_SWITCH, True, "drill", at)
    ledger.safety.set_control(Control.KILL_SWITCH, False, "drill over", at)
    marker = make_decision(at + timedelta(minutes=30), approved=False)
    assert ledger.orders.record_decision(marker, "paper")
    return marker.decision_id


def flood(ledger: Ledger, n: int, size: int) -> str:
    for i in range(n):
        padding = secrets.token_hex(size // 2)  # random: no compression shrinks it
        ledger.events.publish(EventKind.ORDER_UPDATED, {"n": i, "padding": padding}, T0)
    ledger.events.publish(EventKind.DECISION_MADE, {"marker": True}, T0, "flood-marker")
    return "flood-marker"


def main(argv: list[str]) -> None:
    url, command, *args = argv
    ledger = open_ledger(url)
    if command == "trade":
        print(trade(ledger, int(args[0])))
    elif command == "flood":
        print(flood(ledger, int(args[0]), int(args[1])))
    else:
        raise SystemExit(f"unknown command {command!r}: trade or flood")


if __name__ == "__main__":
    main(sys.argv[1:])
