from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from core.risk.limits import ProposedOrder, RiskLimits, RiskState, evaluate
from core.types import Side, Symbol

LIMITS = RiskLimits(
    whitelist=frozenset({"BTC/USDT", "ETH/USDT"}),
    max_order_notional=Decimal("1500"),
    max_position_notional=Decimal("3000"),
    max_total_exposure=Decimal("5000"),
    max_daily_loss=Decimal("300"),
)


def state(**kw: object) -> RiskState:
    base = dict(
        kill_switch_active=False,
        kill_switch_reason=None,
        position_quantity=Decimal(0),
        total_exposure=Decimal(0),
        daily_realised_pnl=Decimal(0),
        cash=Decimal("10000"),
    )
    base.update(kw)
    return RiskState(**base)  # type: ignore[arg-type]


def buy(qty: str, price: str = "100", symbol: str = "BTC/USDT") -> ProposedOrder:
    return ProposedOrder(Symbol(symbol), Side.BUY, Decimal(qty), Decimal(price))


def test_evaluate_when_within_every_limit_then_approved() -> None:
    assert evaluate(buy("10"), state(), LIMITS).approved


def test_evaluate_when_kill_switch_active_then_denied_with_its_reason() -> None:
    v = evaluate(buy("1"), state(kill_switch_active=True, kill_switch_reason="ops"), LIMITS)
    assert v.reasons == ("KILL_SWITCH_ACTIVE: ops",)


def test_evaluate_when_symbol_not_whitelisted_then_denied() -> None:
    assert (
        evaluate(buy("1", symbol="DOGE/USDT"), state(), LIMITS)
        .reasons[0]
        .startswith("SYMBOL_NOT_WHITELISTED")
    )


def test_evaluate_when_several_limits_broken_then_keeps_every_reason() -> None:
    v = evaluate(
        buy("20", price="100"),
        state(kill_switch_active=True, daily_realised_pnl=Decimal("-301"), cash=Decimal("5")),
        LIMITS,
    )
    codes = [r.split(":")[0] for r in v.reasons]
    assert codes == [
        "KILL_SWITCH_ACTIVE",
        "ORDER_NOTIONAL_EXCEEDS_MAX",
        "DAILY_LOSS_LIMIT",
        "INSUFFICIENT_CASH",
    ]


def test_evaluate_when_position_would_exceed_max_then_denied() -> None:
    v = evaluate(buy("10"), state(position_quantity=Decimal("25")), LIMITS)
    assert any(r.startswith("POSITION_EXCEEDS_MAX") for r in v.reasons)


def test_evaluate_when_total_exposure_would_exceed_then_denied() -> None:
    v = evaluate(buy("10"), state(total_exposure=Decimal("4500")), LIMITS)
    assert any(r.startswith("TOTAL_EXPOSURE_EXCEEDS_MAX") for r in v.reasons)


def test_evaluate_when_selling_while_flat_then_denied_no_short() -> None:
    sell = ProposedOrder(Symbol("BTC/USDT"), Side.SELL, Decimal(0), Decimal("100"))
    assert evaluate(sell, state(), LIMITS).reasons[0].startswith("NO_POSITION_TO_SELL")


def test_evaluate_when_closing_large_position_after_daily_loss_then_exit_allowed() -> None:
    sell = ProposedOrder(Symbol("BTC/USDT"), Side.SELL, Decimal(25), Decimal("100"))
    s = state(
        position_quantity=Decimal(25), daily_realised_pnl=Decimal("-1000"), kill_switch_active=False
    )
    assert evaluate(sell, s, LIMITS).approved


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([Side.BUY, Side.SELL]),
            st.decimals(min_value=Decimal("0.001"), max_value=Decimal("40"), places=3),
            st.decimals(min_value=Decimal("10"), max_value=Decimal("500"), places=2),
        ),
        max_size=40,
    )
)
def test_gate_property_when_any_order_sequence_then_limits_never_exceeded(orders) -> None:  # type: ignore[no-untyped-def]
    """Filling only approved orders keeps the position and exposure within limits at the price
    each order was approved at (a later price move may lift a held position's value; the gate
    then refuses further buys), never goes short and never spends cash it lacks."""
    held = Decimal(0)
    cash = Decimal("10000")
    for side, qty, price in orders:
        order = ProposedOrder(Symbol("BTC/USDT"), side, qty, price)
        s = state(position_quantity=held, total_exposure=held * price, cash=cash)
        if not evaluate(order, s, LIMITS).approved:
            continue
        if side is Side.BUY:
            held += qty
            cash -= qty * price
        else:
            held -= qty
            cash += qty * price
        assert held >= 0
        assert cash >= 0
        if side is Side.BUY:
            assert held * price <= LIMITS.max_position_notional
            assert held * price <= LIMITS.max_total_exposure
