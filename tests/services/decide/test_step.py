"""The pure decision step at one candle time, on a hand-built batch: no ledger, no exchange."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from core.orders import decision_id_for
from core.risk.limits import DenialCode, RiskState
from core.types import Action, Side, Symbol
from services.decide.batch import DecisionBatch
from services.decide.step import decide_at
from tests.services.decide.fakes import BUYERS, SELLERS, SYMBOLS, D, config

T0 = datetime(2024, 9, 1, tzinfo=UTC)
TIMES = pd.date_range(T0, periods=4, freq="1h", tz="UTC")
PRICES = {"BTC/USDT": 50_000.0, "ETH/USDT": 2_500.0}


def batch(probability: float = 0.9, warm_from: int = 0) -> DecisionBatch:
    candles, features, probabilities = {}, {}, {}
    for symbol, price in PRICES.items():
        candles[symbol] = pd.DataFrame(
            {c: price for c in ("open", "high", "low", "close")} | {"volume": 10.0},
            index=pd.DatetimeIndex(TIMES, name="open_time"),
        )
        rsi = [np.nan] * warm_from + [50.0] * (len(TIMES) - warm_from)
        features[symbol] = pd.DataFrame({"rsi_14": rsi}, index=TIMES)
        probabilities[symbol] = pd.Series(probability, index=TIMES[warm_from:])
    return DecisionBatch(
        candles=candles,
        features=features,
        probabilities=probabilities,
        edges={s: (p - 0.5) * 0.02 for s, p in probabilities.items()},
        books={s: {} for s in SYMBOLS},
        times=list(TIMES),
        model_name="fixed",
        model_version="1",
        feature_set_version="fs-test",
        tradeable=True,
    )


def state(cash: str = "10000", **held: str) -> RiskState:
    prices = {Symbol(s): D(str(p)) for s, p in PRICES.items()}
    positions = {Symbol(s.replace("_", "/")): D(q) for s, q in held.items()}
    return RiskState(cash=D(cash), positions=positions, prices=prices, day_start_equity=D(cash))


def close_of(t: pd.Timestamp) -> datetime:
    return t.to_pydatetime() + timedelta(hours=1)


def test_decide_at_when_both_symbols_buy_then_each_gets_an_order_in_symbol_order() -> None:
    t = TIMES[2]
    step = decide_at(batch(), t, state(), close_of(t), config(), BUYERS)
    assert [d.input.symbol for d in step.decisions] == list(SYMBOLS)
    assert [d.consensus.action for d in step.decisions] == [Action.BUY, Action.BUY]
    orders = [d.order for d in step.decisions]
    assert all(o is not None and o.side is Side.BUY for o in orders)
    assert step.state.open_orders == 2
    assert step.state.cash == D(10000) - sum(o.quantity * D(str(PRICES[o.symbol])) for o in orders)


def test_decide_at_when_cash_covers_one_buy_then_the_second_sees_it_reserved_and_is_denied() -> (
    None
):
    t = TIMES[2]
    step = decide_at(batch(), t, state(cash="1500"), close_of(t), config(), BUYERS)
    first, second = step.decisions
    assert first.order is not None
    assert second.order is None
    assert second.verdict is not None
    assert DenialCode.INSUFFICIENT_MARGIN in {d.code for d in second.verdict.denials}


def test_decide_at_when_already_decided_then_skipped_not_decided_again() -> None:
    t = TIMES[2]
    done = {decision_id_for("paper", "BTC/USDT", "1h", t.to_pydatetime())}
    step = decide_at(batch(), t, state(), close_of(t), config(), BUYERS, already=done)
    assert step.skipped == 1
    assert [d.input.symbol for d in step.decisions] == ["ETH/USDT"]


def test_decide_at_when_features_still_warming_up_then_nothing_decided() -> None:
    t = TIMES[1]
    step = decide_at(batch(warm_from=2), t, state(), close_of(t), config(), BUYERS)
    assert (step.decisions, step.skipped) == ([], 0)


def test_decide_at_when_decided_long_after_the_close_then_stale_and_no_order() -> None:
    t = TIMES[0]
    late = close_of(t) + timedelta(hours=3)
    cfg = config(max_candle_age=timedelta(hours=1, minutes=5))
    step = decide_at(batch(), t, state(), late, cfg, BUYERS)
    assert all(d.order is None for d in step.decisions)
    assert all(
        d.verdict and d.verdict.denials[0].code is DenialCode.STALE_CANDLE for d in step.decisions
    )
    fresh = decide_at(batch(), t, state(), close_of(t) + timedelta(minutes=2), cfg, BUYERS)
    assert all(d.order is not None for d in fresh.decisions)


def test_decide_at_when_selling_what_is_held_then_the_sell_covers_the_position() -> None:
    t = TIMES[3]
    step = decide_at(batch(0.1), t, state(BTC_USDT="0.5"), close_of(t), config(), SELLERS)
    btc, eth = step.decisions
    assert btc.order is not None
    assert (btc.order.side, btc.order.quantity) == (Side.SELL, D("0.5"))
    assert eth.order is None  # flat in ETH: nothing to sell
    assert step.state.open_sells == {"BTC/USDT": D("0.5")}


def test_decide_at_when_called_twice_on_the_same_inputs_then_the_same_decisions() -> None:
    t, s, cfg = TIMES[2], state(), config()
    first = decide_at(batch(), t, s, close_of(t), cfg, BUYERS)
    second = decide_at(batch(), t, s, close_of(t), cfg, BUYERS)
    assert first == second
