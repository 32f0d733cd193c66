"""A real exchange through ccxt's unified API (spot).

`create_order` carries our client order id (ccxt maps `clientOrderId` to the exchange's own
field, Binance's newClientOrderId), so an order is looked up by it before anything is re-sent.
ccxt errors are translated here, at the boundary: network trouble, timeouts and rate limits
and an exchange's internal errors are RetryableExchangeError (the outcome may be unknown:
look the order up, then retry); insufficient funds and invalid orders are OrderRejected; bad
symbols and authentication are FatalExchangeError.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import ccxt

from core.errors import FatalExchangeError
from core.orders import Fill, Order, OrderStatus, OrderType
from core.ports import Balance, BrokerOrder
from core.types import ClientOrderId, Side, Symbol, base_of, quote_of
from infra.exchange_errors import ccxt_errors

ZERO = Decimal(0)

_STATUS = {
    "closed": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELLED,
    "cancelled": OrderStatus.CANCELLED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
}


def _dec(value: object) -> Decimal:
    return ZERO if value is None else Decimal(str(value))


class CcxtBroker:
    def __init__(self, exchange: ccxt.Exchange) -> None:
        self.exchange = exchange
        self.name = str(exchange.id)
        self._client_ids: dict[str, ClientOrderId] = {}  # exchange order id -> ours

    def place(self, order: Order) -> BrokerOrder:
        """Send as is. Callers look the client id up first (submit_order does), so a send whose
        answer was lost is found, not repeated, without a second lookup here."""
        with ccxt_errors(f"{self.name} create_order {order.client_order_id}"):
            raw = self.exchange.create_order(
                order.symbol,
                order.order_type.value,
                order.side.value,
                float(order.quantity),
                None if order.limit_price is None else float(order.limit_price),
                {"clientOrderId": order.client_order_id},
            )
        return self._order(raw, order.client_order_id)

    def cancel(self, client_order_id: ClientOrderId, symbol: Symbol) -> BrokerOrder:
        try:
            with ccxt_errors(f"{self.name} cancel_order {client_order_id}"):
                raw = self.exchange.cancel_order(None, symbol, {"clientOrderId": client_order_id})
        except FatalExchangeError as exc:
            if not isinstance(exc.__cause__, ccxt.OrderNotFound):
                raise
            # Filled or cancelled in the meantime: say what it is now.
            seen = self.get_order(client_order_id, symbol)
            if seen is None:
                raise
            return seen
        return self._order(raw, client_order_id)

    def get_order(self, client_order_id: ClientOrderId, symbol: Symbol) -> BrokerOrder | None:
        try:
            with ccxt_errors(f"{self.name} fetch_order {client_order_id}"):
                raw = self.exchange.fetch_order(None, symbol, {"clientOrderId": client_order_id})
        except FatalExchangeError as exc:
            if isinstance(exc.__cause__, ccxt.OrderNotFound):
                return None
            raise
        return self._order(raw, client_order_id)

    def open_orders(self, symbol: Symbol | None = None) -> list[BrokerOrder]:
        with ccxt_errors(f"{self.name} fetch_open_orders {symbol or 'all'}"):
            raws = self.exchange.fetch_open_orders(symbol)
        return [self._order(r) for r in raws]

    def fills(self, symbol: Symbol, since: datetime | None = None) -> list[Fill]:
        since_ms = None if since is None else int(since.timestamp() * 1000)
        with ccxt_errors(f"{self.name} fetch_my_trades {symbol}"):
            trades = self.exchange.fetch_my_trades(symbol, since_ms)
        return [self._fill(t) for t in trades]

    def balances(self) -> dict[str, Balance]:
        with ccxt_errors(f"{self.name} fetch_balance"):
            raw = self.exchange.fetch_balance()
        free, used = raw.get("free", {}), raw.get("used", {})
        return {
            asset: Balance(asset, _dec(free.get(asset)), _dec(used.get(asset)))
            for asset in raw.get("total", {})
        }

    def positions(self, symbols: Sequence[Symbol]) -> dict[Symbol, Decimal]:
        balances = self.balances()
        out = {}
        for s in symbols:
            base = base_of(s)
            out[s] = balances[base].total if base in balances else ZERO
        return out

    # -- ccxt structures -> ours -----------------------------------------------------------
    def _order(self, raw: dict[str, Any], client_order_id: str | None = None) -> BrokerOrder:
        try:
            return self._parse_order(raw, client_order_id)
        except (KeyError, ValueError, ArithmeticError) as exc:
            raise FatalExchangeError(
                f"{self.name}: order payload not understood ({type(exc).__name__}: {exc}): "
                f"{_summary(raw)}"
            ) from exc

    def _parse_order(self, raw: dict[str, Any], client_order_id: str | None) -> BrokerOrder:
        coid = ClientOrderId(client_order_id or raw.get("clientOrderId") or "")
        if raw.get("id"):
            self._client_ids[str(raw["id"])] = coid
        filled = _dec(raw.get("filled"))
        status = _STATUS.get(str(raw.get("status")))
        if status is None:  # open
            status = OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.ACCEPTED
        price = raw.get("price")
        return BrokerOrder(
            client_order_id=coid,
            exchange_order_id=None if raw.get("id") is None else str(raw["id"]),
            symbol=Symbol(str(raw["symbol"])),
            side=Side(str(raw["side"])),
            status=status,
            quantity=_dec(raw.get("amount")),
            filled=filled,
            average_price=None if raw.get("average") is None else _dec(raw["average"]),
            limit_price=_dec(price) if raw.get("type") == OrderType.LIMIT.value and price else None,
        )

    def _fill(self, trade: dict[str, Any]) -> Fill:
        if not trade.get("order"):
            raise FatalExchangeError(f"{self.name}: trade without an order id: {_summary(trade)}")
        exchange_id = str(trade["order"])
        coid = self._client_ids.get(exchange_id)
        if coid is None:
            with ccxt_errors(f"{self.name} fetch_order {exchange_id}"):
                raw = self.exchange.fetch_order(exchange_id, trade["symbol"])
            coid = self._order(raw).client_order_id
        try:
            return self._parse_fill(trade, coid)
        except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
            raise FatalExchangeError(
                f"{self.name}: trade payload not understood ({type(exc).__name__}: {exc}): "
                f"{_summary(trade)}"
            ) from exc

    def _parse_fill(self, trade: dict[str, Any], coid: ClientOrderId) -> Fill:
        symbol = Symbol(str(trade["symbol"]))
        base, quote = base_of(symbol), quote_of(symbol)
        price, amount = _dec(trade["price"]), _dec(trade["amount"])
        if price <= 0 or amount <= 0 or trade.get("timestamp") is None or not trade.get("id"):
            raise ValueError("a trade needs an id, a time and a positive price and amount")
        fee = trade.get("fee") or {}
        fee_cost, fee_ccy = _dec(fee.get("cost")), fee.get("currency")
        if fee_ccy not in (None, base, quote):
            raise FatalExchangeError(
                f"{self.name} trade {trade['id']}: fee in {fee_ccy}, neither {base} nor {quote}; "
                "pay fees in the quote currency or the base asset to keep the ledger exact"
            )
        return Fill(
            client_order_id=coid,
            symbol=symbol,
            side=Side(str(trade["side"])),
            quantity=amount,
            price=price,
            fee=fee_cost,
            filled_at=datetime.fromtimestamp(int(trade["timestamp"]) / 1000, tz=UTC),
            fill_id=f"{self.name}-{trade['id']}",
            # Taken from the base asset: the holding changes by less (or more) than the amount.
            fee_in_base=fee_ccy == base and fee_cost > 0,
        )


def _summary(raw: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "clientOrderId", "order", "symbol", "side", "status", "price", "amount")
    return {k: raw.get(k) for k in keys if k in raw}
