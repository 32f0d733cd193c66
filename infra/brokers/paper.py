"""Paper broker: market orders fill at the open of the first candle after the decision.

A decision made at a candle's close can never fill at that close or any earlier price: the fill
price is the next candle's open, moved against the order by the slippage, and a fee is charged.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from core.orders import Fill, Order, OrderEvent, OrderStatus
from core.types import ClientOrderId, Side

_BPS = Decimal("0.0001")
_PRICE_STEP = Decimal("0.00000001")
_FEE_STEP = Decimal("0.00000001")


class PaperBroker:
    name = "paper"

    def __init__(self, slippage_bps: Decimal, fee_rate: Decimal) -> None:
        self.slippage = slippage_bps * _BPS
        self.fee_rate = fee_rate
        self._orders: dict[ClientOrderId, Order] = {}

    def place(self, order: Order) -> Order:
        known = self._orders.get(order.client_order_id)
        if known is not None:
            return known
        accepted = order.apply(OrderEvent.SUBMIT) if order.status is OrderStatus.NEW else order
        self._orders[order.client_order_id] = accepted
        return accepted

    def get_order(self, client_order_id: ClientOrderId) -> Order | None:
        return self._orders.get(client_order_id)

    def adopt(self, orders: Iterable[Order]) -> None:
        """Take over working orders recorded by an earlier process (paper state is in-memory)."""
        for order in orders:
            if order.status is OrderStatus.SUBMITTED:
                self._orders.setdefault(order.client_order_id, order)

    def match(self, symbol: str, candle_open_time: datetime, open_price: Decimal) -> list[Fill]:
        """Fill every working order of `symbol` whose decision closed at or before this open."""
        fills = []
        for coid, order in list(self._orders.items()):
            if (
                order.symbol != symbol
                or order.status is not OrderStatus.SUBMITTED
                or candle_open_time < order.market_time
            ):
                continue
            sign = 1 if order.side is Side.BUY else -1
            price = (open_price * (1 + sign * self.slippage)).quantize(_PRICE_STEP, ROUND_HALF_EVEN)
            fee = (price * order.remaining * self.fee_rate).quantize(_FEE_STEP, ROUND_HALF_EVEN)
            fills.append(
                Fill(
                    coid,
                    order.symbol,
                    order.side,
                    order.remaining,
                    price,
                    fee,
                    candle_open_time,
                    f"{coid}-1",
                )
            )
            self._orders[coid] = order.fill(order.remaining, price)
        return fills
