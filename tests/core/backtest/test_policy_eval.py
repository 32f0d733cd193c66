from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from core.backtest.policy_eval import (
    PolicyEvalError,
    TradingResult,
    buy_and_hold,
    combine_results,
    evaluate_positions,
    ledger,
    net_returns,
    portfolio_returns,
    trade_returns,
)

FEE, SLIP = 0.001, 0.0005
C = FEE + SLIP
HOURLY = 8760.0


def series(values: list[float]) -> pd.Series:
    index = pd.date_range("2024-01-01", periods=len(values), freq="h", tz="UTC", name="open_time")
    return pd.Series(values, index=index, dtype=float)


def closes_of(candles: pd.DataFrame) -> pd.Series:
    return pd.Series(
        candles["close"].to_numpy(), index=pd.DatetimeIndex(candles["open_time"], name="open_time")
    )


def test_evaluate_positions_when_one_round_trip_then_exact_net_of_both_costs() -> None:
    close, held = series([100, 110, 121, 121]), series([1, 1, 0, 0])
    result = evaluate_positions(close, held, FEE, SLIP, HOURLY)
    assert result.net_return == pytest.approx((1 - C) * 1.1 * 1.1 * (1 - C) - 1, abs=1e-15)
    assert result.fees == pytest.approx(C + (1 - C) * 1.21 * C, abs=1e-15)
    assert (result.trades, result.turnover, result.exposure) == (1, 2.0, 0.5)
    np.testing.assert_allclose(
        net_returns(close, held, FEE, SLIP).to_numpy(), [-C, 0.1, 1.1 * (1 - C) - 1, 0.0]
    )


def test_evaluate_positions_when_held_the_candle_before_a_jump_then_earns_it() -> None:
    close = series([100, 100, 100, 200, 200, 200])
    result = evaluate_positions(close, series([0, 0, 1, 0, 0, 0]), 0.0, 0.0, HOURLY)
    assert result.net_return == pytest.approx(1.0)


def test_evaluate_positions_when_entered_at_the_jump_candle_then_does_not_earn_it() -> None:
    close = series([100, 100, 100, 200, 200, 200])
    result = evaluate_positions(close, series([0, 0, 0, 1, 0, 0]), FEE, SLIP, HOURLY)
    assert result.net_return == pytest.approx((1 - C) ** 2 - 1)


def test_evaluate_positions_when_half_size_then_half_the_move_and_half_the_cost() -> None:
    close = series([100, 120, 120])
    result = evaluate_positions(close, series([0.5, 0.5, 0.5]), FEE, SLIP, HOURLY)
    assert result.net_return == pytest.approx((1 - C / 2) * 1.1 * (1 - C / 2) - 1)
    assert result.turnover == 1.0


def test_ledger_when_close_at_end_false_then_last_position_kept_and_not_charged() -> None:
    book = ledger(series([100, 110]), series([1, 1]), FEE, SLIP, close_at_end=False)
    np.testing.assert_allclose(book.net.to_numpy(), [-C, 0.1])
    assert book.position.iloc[-1] == 1.0


def test_evaluate_positions_when_price_falls_then_drawdown_from_the_peak() -> None:
    close = series([100, 120, 60, 90, 90])
    result = evaluate_positions(close, series([1, 1, 1, 1, 1]), 0.0, 0.0, HOURLY)
    assert result.max_drawdown == pytest.approx(0.5)
    assert result.net_return == pytest.approx(-0.1)


def test_evaluate_positions_when_returns_known_then_sharpe_and_sortino_by_formula() -> None:
    close = series([100, 101, 99, 102, 100, 103])
    held = series([1, 1, 1, 1, 1, 1])
    net = net_returns(close, held, FEE, SLIP).to_numpy()
    result = evaluate_positions(close, held, FEE, SLIP, HOURLY)
    assert result.sharpe == pytest.approx(net.mean() / net.std(ddof=1) * math.sqrt(HOURLY))
    downside = math.sqrt(np.mean(np.minimum(net, 0) ** 2))
    assert result.sortino == pytest.approx(net.mean() / downside * math.sqrt(HOURLY))


def test_evaluate_positions_when_never_in_a_position_then_all_zero() -> None:
    result = evaluate_positions(series([100, 50, 200]), series([0, 0, 0]), FEE, SLIP, HOURLY)
    assert result == TradingResult(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0.0)
    assert result.as_dict()["trades"] == 0.0


@pytest.mark.parametrize(
    ("close", "held", "fee"),
    [
        ([100, 0, 100], [0, 0, 0], FEE),
        ([100, 100, 100], [0, 1.5, 0], FEE),
        ([100, 100, 100], [0, math.nan, 0], FEE),
        ([100, 100, 100], [0, 1, 0], -0.001),
    ],
)
def test_evaluate_positions_when_inputs_invalid_then_policy_eval_error(
    close: list[float], held: list[float], fee: float
) -> None:
    with pytest.raises(PolicyEvalError):
        evaluate_positions(series(close), series(held), fee, SLIP, HOURLY)


def test_evaluate_positions_when_indexes_differ_then_policy_eval_error() -> None:
    with pytest.raises(PolicyEvalError, match="same index"):
        evaluate_positions(series([1, 2, 3]), series([0, 1, 0]).shift(1, freq="h"), 0, 0, HOURLY)


def test_buy_and_hold_when_real_btc_2024_then_growth_less_entry_and_exit_cost(
    btc_1h: pd.DataFrame,
) -> None:
    close = closes_of(btc_1h)
    result = buy_and_hold(close, FEE, SLIP, HOURLY)
    growth = close.iloc[-1] / close.iloc[0]
    # Each side keeps (1 - fee - slippage) of the equity it trades.
    assert result.net_return == pytest.approx((1 - C) * growth * (1 - C) - 1, abs=1e-9)
    assert (result.trades, result.turnover) == (1, 2.0)
    assert result.exposure == pytest.approx((len(close) - 1) / len(close))
    assert 0 < result.max_drawdown < 1


def test_trade_returns_when_two_round_trips_then_each_compounded_with_its_costs() -> None:
    close = series([100, 110, 110, 100, 90, 90])
    book = ledger(close, series([1, 0, 0, 1, 0, 0]), FEE, SLIP)
    np.testing.assert_allclose(
        trade_returns(book), [(1 - C) * 1.1 * (1 - C) - 1, (1 - C) * 0.9 * (1 - C) - 1]
    )


def test_trade_returns_when_one_trip_on_real_btc_then_equals_buy_and_hold(
    btc_1h: pd.DataFrame,
) -> None:
    close = closes_of(btc_1h).head(500)
    book = ledger(close, pd.Series(1.0, index=close.index), FEE, SLIP)
    trips = trade_returns(book)
    assert trips.shape == (1,)
    assert trips[0] == pytest.approx(buy_and_hold(close, FEE, SLIP, HOURLY).net_return)
    assert trade_returns(ledger(close, close * 0, FEE, SLIP)).size == 0


def test_combine_results_when_one_symbol_flat_then_half_the_other_every_candle() -> None:
    close = series([100, 110, 121, 121])
    active = ledger(close, series([1, 1, 0, 0]), FEE, SLIP)
    idle = ledger(close, series([0, 0, 0, 0]), FEE, SLIP)
    result = combine_results({"A": active, "B": idle}, HOURLY)
    expected = np.prod(1 + active.net.to_numpy() / 2) - 1
    assert result.net_return == pytest.approx(expected)
    assert result.fees == pytest.approx(
        np.sum(np.cumprod(np.r_[1, 1 + active.net / 2])[:-1] * active.cost / 2)
    )
    assert (result.trades, result.turnover, result.exposure) == (1, 1.0, 0.25)


def test_portfolio_returns_when_real_btc_and_eth_then_equal_weight_mean(
    btc_1h: pd.DataFrame, eth_1h: pd.DataFrame
) -> None:
    btc, eth = closes_of(btc_1h).head(800), closes_of(eth_1h).head(800)
    nets = {
        "BTC/USDT": net_returns(btc, pd.Series(1.0, index=btc.index), FEE, SLIP),
        "ETH/USDT": net_returns(eth, pd.Series(1.0, index=eth.index), FEE, SLIP),
    }
    mixed = portfolio_returns(nets)
    np.testing.assert_allclose(mixed.to_numpy(), (nets["BTC/USDT"] + nets["ETH/USDT"]) / 2)
    both = combine_results(
        {
            s: ledger(c, pd.Series(1.0, index=c.index), FEE, SLIP)
            for s, c in (("BTC/USDT", btc), ("ETH/USDT", eth))
        },
        HOURLY,
    )
    assert both.net_return == pytest.approx(float(np.prod(1 + mixed.to_numpy()) - 1))
    assert both.trades == 2


def test_portfolio_returns_when_a_symbol_misses_candles_then_its_sleeve_is_cash() -> None:
    a, b = series([0.01, 0.02, 0.03]), series([0.04, 0.05, 0.06]).iloc[1:]
    np.testing.assert_allclose(
        portfolio_returns({"A": a, "B": b}).to_numpy(), [0.005, 0.035, 0.045]
    )
    with pytest.raises(PolicyEvalError):
        portfolio_returns({})
