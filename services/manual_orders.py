"""Manual orders: an operator's order through the same risk gate and the same order manager as
a decision's, placed at most once per Idempotency-Key.

The gate (core.risk.limits.evaluate) sees the state a decision would (services.risk_snapshot:
positions, open orders, cash, today's P&L, the kill switch and the breaker), with each symbol
priced at its newest candle's close and that candle's age checked as a decision's is. An
approved order is recorded (origin MANUAL, status NEW), then sent by services.execution's
submit_order, which asks the broker for the client id before it places anything. A refused
one writes nothing and sends nothing: the same key may be used again once the cause is gone.

Idempotency, as Stripe does it: the client order id is a hash of (token id, key), so the same
key from the same token can only ever name one order (the ledger's primary key). The same key
with the same order returns it; with a different one it is a conflict (IdempotencyConflict,
409): a key is never reused for another order. Of two requests racing with one key, one
records the order and sends it; the other finds it and returns it unsent. A request that finds
its order recorded but never sent (the request that recorded it died before sending) sends it,
once `resume_after` has passed since it was recorded (before then the recording request may
still be sending it); submit_order's look-up makes that safe, and an order older than
`max_resume_age` is cancelled rather than sent late.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal

from core.clock import Clock
from core.errors import FatalError
from core.orders import InvalidTransition, Order, OrderEvent, OrderOrigin, OrderStatus, OrderType
from core.ports import Broker, Ledger
from core.risk.limits import Denial, DenialCode, ProposedOrder, RiskLimits, RiskVerdict, evaluate
from core.types import ClientOrderId, Side, Symbol
from services.execution import follow_broker, submit_order
from services.risk_snapshot import RiskSnapshots

MANUAL_PREFIX = "tf-m-"


class ManualOrderError(FatalError):
    pass


class IdempotencyConflict(ManualOrderError):
    """The key already names another order: a key is never reused."""


class RiskRefused(ManualOrderError):
    """The risk gate refused the order: nothing was recorded or sent."""

    def __init__(self, denials: Sequence[Denial]) -> None:
        self.denials = tuple(denials)
        super().__init__("refused by the risk gate: " + "; ".join(str(d) for d in denials))


class OrderNotFound(ManualOrderError):
    pass


class NotCancellable(ManualOrderError):
    """The order is final (or on its way to the exchange right now): there is nothing to
    cancel, or not yet."""

    def __init__(self, order: Order, why: str) -> None:
        self.order = order
        super().__init__(f"order {order.client_order_id} is {order.status.value}: {why}")


def manual_order_id(token_id: str, key: str) -> ClientOrderId:
    """One client order id per (token, key): a retry names the same order. Short enough for
    every exchange's client id (Binance: 36 characters of [.A-Z:/a-z0-9_-]). The token id's
    length goes first, so no two (token, key) pairs hash the same text."""
    digest = hashlib.sha256(f"{len(token_id)}:{token_id}:{key}".encode()).hexdigest()
    return ClientOrderId(MANUAL_PREFIX + digest[:28])


@dataclass(frozen=True, slots=True)
class ManualOrderRequest:
    symbol: Symbol
    side: Side
    quantity: Decimal
    order_type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None

    def __post_init__(self) -> None:
        if (self.order_type is OrderType.LIMIT) != (self.limit_price is not None):
            raise ValueError("a limit order needs a limit price, and only a limit order has one")

    def matches(self, order: Order) -> bool:
        """Whether `order` is what this request asks for (numbers compared by value)."""
        return (
            order.origin is OrderOrigin.MANUAL
            and (order.symbol, order.side, order.order_type)
            == (self.symbol, self.side, self.order_type)
            and order.quantity == self.quantity
            and order.limit_price == self.limit_price
        )


def _missing(coid: ClientOrderId) -> Order:
    raise OrderNotFound(f"order {coid} vanished from the ledger")


@dataclass(frozen=True, slots=True)
class ManualConfig:
    account: str
    exchange: str
    timeframe: str
    symbols: tuple[str, ...]  # priced for the gate's exposure checks, as a decision's are
    limits: RiskLimits
    resume_after: timedelta = timedelta(seconds=30)
    max_resume_age: timedelta = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class Placed:
    order: Order
    created: bool  # False: the key's order, found


class ManualOrders:
    """One per API process; the broker is built on first use and then kept."""

    def __init__(self, ledger: Ledger, broker: Callable[[], Broker], config: ManualConfig) -> None:
        self.ledger, self.config = ledger, config
        self._make_broker, self._broker = broker, None
        self._lock = threading.Lock()
        # This process's manual orders pass the gate one at a time, each recorded before the
        # next is judged: two at once cannot both fit a limit only one of them fits. (Across
        # API workers they can, as a decision and a manual order can: the gate reads the
        # ledger, it does not lock it.)
        self._gate = threading.Lock()

    @property
    def broker(self) -> Broker:
        with self._lock:
            if self._broker is None:
                self._broker = self._make_broker()
            return self._broker

    def place(self, token_id: str, key: str, request: ManualOrderRequest, clock: Clock) -> Placed:
        coid = manual_order_id(token_id, key)
        found = self.ledger.orders.get(coid)
        if found is not None:
            return Placed(self._replay(found, request, clock), created=False)
        try:
            with self._gate:
                # Again inside the gate: a request with the same key may have recorded the
                # order since, and the gate would count it against this one's limits.
                found = self.ledger.orders.get(coid)
                if found is not None:
                    return Placed(self._matching(found, request), created=False)
                raced = self._record(self._approved(coid, request, clock))
        except RiskRefused:
            # Refused because another worker's request with this key got in first (its order
            # now counts against the limits)? Then that order is the answer, never a refusal
            # that would make the client place it again under another key.
            found = self.ledger.orders.get(coid)
            if found is None:
                raise
            return Placed(self._matching(found, request), created=False)
        if raced is not None:
            return Placed(self._matching(raced, request), created=False)
        return Placed(self._send(coid, clock), created=True)

    def _record(self, order: Order) -> Order | None:
        """Record the order: None when this call recorded it, else the order a concurrent
        request with the same key recorded first (the primary key lets only one in)."""
        coid = order.client_order_id
        try:
            fresh = self.ledger.orders.insert_many([order], self.config.account, self.broker.name)
        except Exception:  # that request's row won: found now, or a real failure
            raced = self.ledger.orders.get(coid)
            if raced is None:
                raise
            return raced
        return None if coid in fresh else (self.ledger.orders.get(coid) or order)

    def _approved(self, coid: ClientOrderId, request: ManualOrderRequest, clock: Clock) -> Order:
        now = clock.now()
        verdict = self.verdict(request, clock)
        if not verdict.approved:
            raise RiskRefused(verdict.denials)
        return Order(
            client_order_id=coid,
            decision_id=None,
            symbol=request.symbol,
            side=request.side,
            quantity=request.quantity,
            created_at=now,
            market_time=now,  # fills only on prices from now on, as a decision's order
            order_type=request.order_type,
            limit_price=request.limit_price,
            origin=OrderOrigin.MANUAL,
        )

    def verdict(self, request: ManualOrderRequest, clock: Clock) -> RiskVerdict:
        """The gate's verdict on the request now, on the state a decision would see."""
        cfg, now = self.config, clock.now()
        symbols = sorted({*cfg.symbols, request.symbol})
        marks = self.ledger.browse.marks(cfg.exchange, symbols, cfg.timeframe)
        prices = {s: m.close for s, m in marks.items()}
        snapshots = RiskSnapshots(self.ledger, cfg.account, cfg.exchange, cfg.timeframe)
        state = snapshots.snapshot(prices, now)
        mark = marks.get(request.symbol)
        if mark is not None:
            state = replace(state, candle_age=now - mark.close_time)
        price = mark.close if mark is not None else request.limit_price
        if price is None:  # a market order on a symbol without a stored candle: no value
            return RiskVerdict((Denial(DenialCode.NO_LAST_PRICE, f"{request.symbol}"),))
        proposed = ProposedOrder(
            request.symbol, request.side, request.quantity, price, request.limit_price
        )
        return evaluate(proposed, state, cfg.limits)

    def _matching(self, order: Order, request: ManualOrderRequest) -> Order:
        if not request.matches(order):
            raise IdempotencyConflict(
                f"this Idempotency-Key already placed order {order.client_order_id} "
                f"({order.side.value} {order.quantity} {order.symbol} {order.order_type.value}"
                f"{'' if order.limit_price is None else f' at {order.limit_price}'}): "
                "a key is never used for another order; use a new key"
            )
        return order

    def _replay(self, order: Order, request: ManualOrderRequest, clock: Clock) -> Order:
        order = self._matching(order, request)
        if order.status is not OrderStatus.NEW:
            return order
        if clock.now() - order.created_at < self.config.resume_after:
            return order  # its recording request may be sending it right now
        return self._send(order.client_order_id, clock)

    def _send(self, coid: ClientOrderId, clock: Clock) -> Order:
        """submit_order, as a decision's order is sent: it looks at the halts once more (the
        kill switch may have come since the gate looked), and a halt that lands while the
        order is in flight cancels it at the exchange (services/execution.py)."""
        try:
            return submit_order(self.ledger, self.broker, coid, clock, self.config.max_resume_age)
        except InvalidTransition:  # the kill switch cancelled it meanwhile: that is the answer
            return self.ledger.orders.get(coid) or _missing(coid)

    def cancel(self, client_order_id: str, clock: Clock) -> Order:
        """Cancel one of the account's open orders (any origin): unsent ones in the ledger,
        sent ones at the broker, following the order state machine."""
        stored = self.ledger.browse.order(self.config.account, client_order_id)
        if stored is None:
            raise OrderNotFound(f"no order {client_order_id!r} in account {self.config.account}")
        order = stored.order
        if order.status.is_terminal:
            raise NotCancellable(order, "it is final")
        if order.origin is OrderOrigin.KILL_SWITCH:  # a bearer token never undoes the kill switch
            raise NotCancellable(order, "the kill switch placed it to close a position")
        coid = order.client_order_id
        if order.status is OrderStatus.NEW:
            order = self._cancel_unsent(order, clock)
            if order.status.is_terminal:
                return order
        try:
            if order.status is not OrderStatus.CANCEL_PENDING:
                order = self.ledger.orders.transition(coid, OrderEvent.REQUEST_CANCEL, clock.now())
        except InvalidTransition:  # it filled (or was cancelled) since it was read
            current = self.ledger.orders.get(coid) or order
            raise NotCancellable(current, "it changed while being cancelled") from None
        return follow_broker(self.ledger, order, self.broker.cancel(coid, order.symbol), clock)

    def _cancel_unsent(self, order: Order, clock: Clock) -> Order:
        """Cancelled in the ledger if no sender has claimed it; else as the broker has it."""
        coid, now = order.client_order_id, clock.now()
        if self.ledger.orders.cancel_unsent(coid, now, "cancelled through the API, unsent"):
            return self.ledger.orders.get(coid) or order
        seen = self.broker.get_order(coid, order.symbol)
        if seen is None:
            raise NotCancellable(order, "it is being sent: try again in a moment")
        sent = self.ledger.orders.mark_submitted(coid, now) or self.ledger.orders.get(coid) or order
        return follow_broker(self.ledger, sent, seen, clock)
