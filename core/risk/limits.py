"""Pre-trade risk gate. Each check returns a denial reason or None; a verdict keeps them all.

Exposure is counted the pessimistic way: open (unfilled) buy orders are treated as if they had
filled, and open sells as if they had not, so that no sequence of accepted orders can leave a
position or an exposure above its limit whatever fills arrive later. Limits come in four
layers (per order, per symbol, per quote currency, whole portfolio), each as a notional in
quote currency and as a fraction of equity.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from enum import StrEnum

from core.portfolio import equity
from core.risk.state import TradingState
from core.types import Side, Symbol, as_price, as_quantity, quote_of

ZERO = Decimal(0)
UNLIMITED = Decimal("Infinity")


@dataclass(frozen=True, slots=True)
class MarketRules:
    """An exchange's trading rules for one symbol (ccxt market: precision and limits)."""

    amount_step: Decimal = Decimal("0.00001")
    price_step: Decimal = Decimal("0.01")
    min_amount: Decimal = ZERO
    min_notional: Decimal = ZERO


DEFAULT_RULES = MarketRules()


@dataclass(frozen=True, slots=True)
class RiskLimits:
    whitelist: frozenset[str]
    max_order_notional: Decimal
    max_position_notional: Decimal
    max_total_exposure: Decimal
    max_daily_loss: Decimal  # a positive amount of quote currency, realised + unrealised
    max_order_pct_equity: Decimal = Decimal(1)
    max_position_pct_equity: Decimal = Decimal(1)
    max_quote_exposure: Decimal = UNLIMITED  # per quote currency (all USDT pairs together)
    max_quote_pct_equity: Decimal = Decimal(1)
    max_total_pct_equity: Decimal = Decimal(1)
    max_daily_loss_pct: Decimal = Decimal(1)  # of the equity at 00:00 UTC
    max_leverage: Decimal = Decimal(1)  # gross exposure / equity; 1 = spot, no borrowing
    max_open_orders: int = 50
    max_price_deviation_pct: Decimal = Decimal("0.05")  # limit price vs last trade
    # A live decision on a candle that closed longer ago than this trades on stale prices.
    max_candle_age: timedelta | None = None
    rules: Mapping[str, MarketRules] = field(default_factory=dict)

    def rules_for(self, symbol: str) -> MarketRules:
        return self.rules.get(symbol, DEFAULT_RULES)

    def too_old(self, age: timedelta) -> bool:
        """Whether a candle that closed `age` ago is too old to trade on."""
        return self.max_candle_age is not None and age > self.max_candle_age


@dataclass(frozen=True, slots=True)
class ProposedOrder:
    symbol: Symbol
    side: Side
    quantity: Decimal
    price: Decimal  # the last known price, used to value the order
    limit_price: Decimal | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "quantity", as_quantity(self.quantity))
        object.__setattr__(self, "price", as_price(self.price))
        if self.limit_price is not None:
            object.__setattr__(self, "limit_price", as_price(self.limit_price))

    @property
    def notional(self) -> Decimal:
        return self.quantity * (self.limit_price or self.price)

    @property
    def quote(self) -> str:
        return quote_of(self.symbol)


@dataclass(frozen=True, slots=True)
class RiskState:
    """The portfolio and the safety controls as they are at decision time."""

    cash: Decimal  # free quote currency (open buys already reserved out of it)
    positions: Mapping[Symbol, Decimal]  # quantity held per symbol
    prices: Mapping[Symbol, Decimal]  # last price per symbol
    daily_pnl: Decimal = ZERO  # realised + unrealised since 00:00 UTC, fees included
    day_start_equity: Decimal = ZERO
    open_buys: Mapping[Symbol, Decimal] = field(default_factory=dict)  # unfilled quantity
    open_sells: Mapping[Symbol, Decimal] = field(default_factory=dict)
    open_orders: int = 0
    trading_state: TradingState = TradingState.ACTIVE
    halt_reason: str = ""
    candle_age: timedelta = timedelta(0)  # decision time minus the decided candle's close
    # When each current holding was opened (its first fill after being flat): the decision
    # policy holds a position for the label horizon unless the edge reverses.
    entered_at: Mapping[Symbol, datetime] = field(default_factory=dict)
    # Equity and exposures, computed once per state: the gate asks for them in several checks
    # of every order, and a state is never changed, only replaced.
    _memo: dict[object, Decimal] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_memo", {})

    def held(self, symbol: str) -> Decimal:
        return self.positions.get(Symbol(symbol), ZERO)

    def committed(self, symbol: str) -> Decimal:
        """Held plus what open buys may still add: the most this symbol can come to hold."""
        return self.held(symbol) + self.open_buys.get(Symbol(symbol), ZERO)

    def notional(self, symbol: str) -> Decimal:
        return self.committed(symbol) * self.prices.get(Symbol(symbol), ZERO)

    @property
    def equity(self) -> Decimal:
        found = self._memo.get("equity")
        if found is None:
            # Cash set aside for open buys is still ours until they fill: count it back in.
            reserved = equity(ZERO, self.open_buys, self.prices)
            found = self._memo["equity"] = equity(self.cash + reserved, self.positions, self.prices)
        return found

    def with_order(self, side: Side, symbol: Symbol, quantity: Decimal) -> RiskState:
        """The state once this order is open: a buy reserves its cash at the last price, a sell
        holds back what it offers (the same bookkeeping the ledger's snapshot does)."""
        if side is Side.BUY:
            buys = {**self.open_buys, symbol: self.open_buys.get(symbol, ZERO) + quantity}
            reserved = quantity * self.prices.get(symbol, ZERO)
            return replace(
                self, cash=self.cash - reserved, open_buys=buys, open_orders=self.open_orders + 1
            )
        sells = {**self.open_sells, symbol: self.open_sells.get(symbol, ZERO) + quantity}
        return replace(self, open_sells=sells, open_orders=self.open_orders + 1)

    def exposure(self, quote: str | None = None) -> Decimal:
        found = self._memo.get(("exposure", quote))
        if found is None:
            found = self._memo[("exposure", quote)] = sum(
                (
                    self.notional(s)
                    for s in {*self.positions, *self.open_buys}
                    if quote is None or quote_of(s) == quote
                ),
                ZERO,
            )
        return found


class DenialCode(StrEnum):
    TRADING_HALTED = "TRADING_HALTED"
    REDUCING_ONLY = "REDUCING_ONLY"
    STALE_CANDLE = "STALE_CANDLE"
    SYMBOL_NOT_WHITELISTED = "SYMBOL_NOT_WHITELISTED"
    ORDER_SIZE_NOT_POSITIVE = "ORDER_SIZE_NOT_POSITIVE"
    AMOUNT_PRECISION = "AMOUNT_PRECISION"
    PRICE_PRECISION = "PRICE_PRECISION"
    ORDER_BELOW_MIN_AMOUNT = "ORDER_BELOW_MIN_AMOUNT"
    ORDER_BELOW_MIN_NOTIONAL = "ORDER_BELOW_MIN_NOTIONAL"
    ORDER_NOTIONAL_EXCEEDS_MAX = "ORDER_NOTIONAL_EXCEEDS_MAX"
    NO_POSITION_TO_SELL = "NO_POSITION_TO_SELL"
    NO_SHORT_SELLING = "NO_SHORT_SELLING"
    POSITION_EXCEEDS_MAX = "POSITION_EXCEEDS_MAX"
    QUOTE_EXPOSURE_EXCEEDS_MAX = "QUOTE_EXPOSURE_EXCEEDS_MAX"
    TOTAL_EXPOSURE_EXCEEDS_MAX = "TOTAL_EXPOSURE_EXCEEDS_MAX"
    INSUFFICIENT_MARGIN = "INSUFFICIENT_MARGIN"
    LEVERAGE_EXCEEDS_MAX = "LEVERAGE_EXCEEDS_MAX"
    DAILY_LOSS_LIMIT = "DAILY_LOSS_LIMIT"
    TOO_MANY_OPEN_ORDERS = "TOO_MANY_OPEN_ORDERS"
    NO_LAST_PRICE = "NO_LAST_PRICE"
    PRICE_SANITY = "PRICE_SANITY"


@dataclass(frozen=True, slots=True)
class Denial:
    """Why the gate refused an order: a code to count and act on, a detail for people."""

    code: DenialCode
    detail: str

    def __str__(self) -> str:
        return f"{self.code.value}: {self.detail}"

    @classmethod
    def parse(cls, text: str) -> Denial:
        """The inverse of str(): how the ledger stores a denial."""
        code, _, detail = text.partition(": ")
        return cls(DenialCode(code), detail)


@dataclass(frozen=True, slots=True)
class RiskVerdict:
    denials: tuple[Denial, ...]

    @property
    def approved(self) -> bool:
        return not self.denials


Check = Callable[[ProposedOrder, RiskState, RiskLimits], Denial | None]


def reduces_exposure(order: ProposedOrder, state: RiskState) -> bool:
    return order.side is Side.SELL and order.quantity <= available_to_sell(order.symbol, state)


def available_to_sell(symbol: str, state: RiskState) -> Decimal:
    return state.held(symbol) - state.open_sells.get(Symbol(symbol), ZERO)


def normalise(order: ProposedOrder, rules: MarketRules) -> ProposedOrder:
    """Round the amount down to the exchange's step and a limit price to its tick (down for a
    buy, up for a sell: never a worse price than asked)."""
    qty = order.quantity.quantize(rules.amount_step, ROUND_DOWN)
    limit = order.limit_price
    if limit is not None:
        ticks = limit / rules.price_step
        ticks = ticks.to_integral_value(ROUND_DOWN if order.side is Side.BUY else ROUND_UP)
        limit = ticks * rules.price_step
    return ProposedOrder(order.symbol, order.side, qty, order.price, limit)


def check_trading_state(
    order: ProposedOrder, state: RiskState, limits: RiskLimits
) -> Denial | None:
    if state.trading_state is TradingState.HALTED:
        return Denial(DenialCode.TRADING_HALTED, f"{state.halt_reason or 'no reason given'}")
    if state.trading_state is TradingState.REDUCING and not reduces_exposure(order, state):
        return Denial(
            DenialCode.REDUCING_ONLY, f"{order.side} {order.symbol} would not shrink exposure"
        )
    return None


def check_freshness(order: ProposedOrder, state: RiskState, limits: RiskLimits) -> Denial | None:
    if limits.too_old(state.candle_age):
        return Denial(
            DenialCode.STALE_CANDLE,
            f"decided {state.candle_age} after the candle closed, max {limits.max_candle_age}",
        )
    return None


def check_whitelist(order: ProposedOrder, state: RiskState, limits: RiskLimits) -> Denial | None:
    if order.symbol not in limits.whitelist:
        return Denial(
            DenialCode.SYMBOL_NOT_WHITELISTED, f"{order.symbol} not in {sorted(limits.whitelist)}"
        )
    return None


def check_size_and_precision(
    order: ProposedOrder, state: RiskState, limits: RiskLimits
) -> Denial | None:
    rules = limits.rules_for(order.symbol)
    if order.quantity <= 0:
        # A sell of nothing is reported once, by the position check (NO_POSITION_TO_SELL).
        if order.side is Side.SELL:
            return None
        return Denial(DenialCode.ORDER_SIZE_NOT_POSITIVE, f"{order.quantity}")
    if order.quantity != order.quantity.quantize(rules.amount_step, ROUND_DOWN):
        return Denial(
            DenialCode.AMOUNT_PRECISION,
            f"{order.quantity} is not a multiple of {rules.amount_step}",
        )
    if order.limit_price is not None and order.limit_price % rules.price_step:
        return Denial(
            DenialCode.PRICE_PRECISION,
            f"{order.limit_price} is not a multiple of {rules.price_step}",
        )
    if order.quantity < rules.min_amount:
        return Denial(DenialCode.ORDER_BELOW_MIN_AMOUNT, f"{order.quantity} < {rules.min_amount}")
    if order.notional < rules.min_notional:
        return Denial(
            DenialCode.ORDER_BELOW_MIN_NOTIONAL, f"{order.notional:.2f} < {rules.min_notional}"
        )
    return None


def check_order_notional(
    order: ProposedOrder, state: RiskState, limits: RiskLimits
) -> Denial | None:
    # Caps new risk: a sell closing a long may be larger, or the gate would trap the position.
    if order.side is Side.SELL:
        return None
    cap = min(limits.max_order_notional, limits.max_order_pct_equity * state.equity)
    if order.notional > cap:
        return Denial(
            DenialCode.ORDER_NOTIONAL_EXCEEDS_MAX, f"notional={order.notional:.2f} max={cap:.2f}"
        )
    return None


def check_position(order: ProposedOrder, state: RiskState, limits: RiskLimits) -> Denial | None:
    if order.side is Side.SELL:
        if state.held(order.symbol) <= 0:
            return Denial(
                DenialCode.NO_POSITION_TO_SELL, f"flat in {order.symbol} (spot, no shorting)"
            )
        free = available_to_sell(order.symbol, state)
        if order.quantity <= 0:  # all of it is already being sold, or less than one step is left
            return Denial(
                DenialCode.NO_POSITION_TO_SELL,
                f"nothing free to sell in {order.symbol}: {free.normalize():f} held and not "
                "already being sold",
            )
        if order.quantity > free:
            return Denial(
                DenialCode.NO_SHORT_SELLING,
                f"sell {order.quantity} > held and not already being sold {free} {order.symbol}",
            )
        return None
    cap = min(limits.max_position_notional, limits.max_position_pct_equity * state.equity)
    after = state.notional(order.symbol) + order.quantity * order.price
    if after > cap:
        return Denial(
            DenialCode.POSITION_EXCEEDS_MAX,
            f"{order.symbol} notional after={after:.2f} max={cap:.2f}",
        )
    return None


def check_quote_exposure(
    order: ProposedOrder, state: RiskState, limits: RiskLimits
) -> Denial | None:
    if order.side is Side.SELL:
        return None
    cap = min(limits.max_quote_exposure, limits.max_quote_pct_equity * state.equity)
    after = state.exposure(order.quote) + order.quantity * order.price
    if after > cap:
        return Denial(
            DenialCode.QUOTE_EXPOSURE_EXCEEDS_MAX, f"{order.quote} after={after:.2f} max={cap:.2f}"
        )
    return None


def check_total_exposure(
    order: ProposedOrder, state: RiskState, limits: RiskLimits
) -> Denial | None:
    if order.side is Side.SELL:
        return None
    cap = min(limits.max_total_exposure, limits.max_total_pct_equity * state.equity)
    after = state.exposure() + order.quantity * order.price
    if after > cap:
        return Denial(DenialCode.TOTAL_EXPOSURE_EXCEEDS_MAX, f"after={after:.2f} max={cap:.2f}")
    return None


def check_leverage_and_margin(
    order: ProposedOrder, state: RiskState, limits: RiskLimits
) -> Denial | None:
    if order.side is Side.SELL:
        return None
    if order.notional > state.cash * limits.max_leverage:
        return Denial(
            DenialCode.INSUFFICIENT_MARGIN, f"needs {order.notional:.2f} has {state.cash:.2f} free"
        )
    equity = state.equity
    after = state.exposure() + order.notional
    if equity <= 0 or after > limits.max_leverage * equity:
        return Denial(DenialCode.LEVERAGE_EXCEEDS_MAX, f"gross {after:.2f} on equity {equity:.2f}")
    return None


def check_daily_loss(order: ProposedOrder, state: RiskState, limits: RiskLimits) -> Denial | None:
    # Reducing exposure is always allowed: the limit stops new risk, not an exit.
    if reduces_exposure(order, state):
        return None
    cap = min(limits.max_daily_loss, limits.max_daily_loss_pct * state.day_start_equity)
    if state.day_start_equity <= 0:
        cap = limits.max_daily_loss
    if -state.daily_pnl >= cap:
        return Denial(DenialCode.DAILY_LOSS_LIMIT, f"today={state.daily_pnl:.2f} limit=-{cap:.2f}")
    return None


def check_open_orders(order: ProposedOrder, state: RiskState, limits: RiskLimits) -> Denial | None:
    if state.open_orders >= limits.max_open_orders:
        return Denial(
            DenialCode.TOO_MANY_OPEN_ORDERS,
            f"{state.open_orders} open, max {limits.max_open_orders}",
        )
    return None


def check_price_sanity(order: ProposedOrder, state: RiskState, limits: RiskLimits) -> Denial | None:
    last = state.prices.get(order.symbol)
    if last is None or last <= 0:
        return Denial(DenialCode.NO_LAST_PRICE, f"{order.symbol}")
    if order.limit_price is None:
        return None
    deviation = abs(order.limit_price - last) / last
    if deviation > limits.max_price_deviation_pct:
        return Denial(
            DenialCode.PRICE_SANITY,
            f"limit {order.limit_price} is {deviation:.2%} from last {last}, "
            f"max {limits.max_price_deviation_pct:.2%}",
        )
    return None


CHECKS: tuple[Check, ...] = (
    check_trading_state,
    check_freshness,
    check_whitelist,
    check_size_and_precision,
    check_order_notional,
    check_position,
    check_quote_exposure,
    check_total_exposure,
    check_leverage_and_margin,
    check_daily_loss,
    check_open_orders,
    check_price_sanity,
)


def evaluate(order: ProposedOrder, state: RiskState, limits: RiskLimits) -> RiskVerdict:
    return RiskVerdict(tuple(d for check in CHECKS if (d := check(order, state, limits))))
