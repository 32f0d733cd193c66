"""Trading metrics from a real ledger (SQLite and PostgreSQL), checked against a hand computation
on three fills and four candles:

    starting cash 10,000 USDT
    Mon 2026-11-02 10:00  buy  0.1 BTC at 40,000, fee 4     cash  5,996
    BTC closes 41,000 at Tue 00:00 and 39,000 at Wed 00:00
    Wed 2026-11-04 12:00  sell 0.1 BTC at 42,000, fee 4.2   cash 10,191.8  (realised 195.8)
    Mon 2026-11-09 09:00  buy  1 ETH at 2,000, fee 2        cash  8,189.8
    ETH closes 1,900 at Tue 00:00 and 1,950 at Tue 05:00;   now Tue 2026-11-10 06:00

Equity at each day's end: 10,096 | 9,896 | 10,191.8 (x5) | 10,089.8 | now 10,139.8.
"""

from __future__ import annotations

import itertools
import math
import statistics
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from core.types import Side
from infra.ledger.ledger import Ledger
from services.trading_metrics import TradingMetrics, trading_metrics
from tests.infra.ledger.book import (
    ACCOUNT,
    BTC,
    ETH,
    EXCHANGE,
    open_account,
    store_candles,
    trade,
)

D = Decimal
MON = datetime(2026, 11, 2, tzinfo=UTC)
NOW = MON + timedelta(days=8, hours=6)
DAY_ENDS = ["10096", "9896", "10191.8", "10191.8", "10191.8", "10191.8", "10191.8", "10089.8",
            "10139.8"]  # fmt: skip


def at(days: int, hours: int = 0) -> datetime:
    return MON + timedelta(days=days, hours=hours)


@pytest.fixture
def traded(ledger: Ledger) -> Ledger:
    open_account(ledger, "10000", MON)
    trade(ledger, BTC, Side.BUY, "0.1", "40000", at(0, 10), fee="4")
    store_candles(ledger, BTC, ["41000"], at(0, 23))
    store_candles(ledger, BTC, ["39000"], at(1, 23))
    trade(ledger, BTC, Side.SELL, "0.1", "42000", at(2, 12), fee="4.2")
    trade(ledger, ETH, Side.BUY, "1", "2000", at(7, 9), fee="2")
    store_candles(ledger, ETH, ["1900"], at(7, 23))
    store_candles(ledger, ETH, ["1950"], at(8, 4))
    return ledger


@pytest.fixture
def figures(traded: Ledger) -> TradingMetrics:
    return trading_metrics(traded, ACCOUNT, EXCHANGE, "1h", NOW)


def test_metrics_when_traded_then_pnl_per_symbol_and_total_as_computed_by_hand(
    figures: TradingMetrics,
) -> None:
    assert (figures.starting_cash, figures.equity, figures.pnl) == (D(10000), D("10139.8"),
                                                                    D("139.8"))  # fmt: skip
    assert (figures.realised, figures.unrealised, figures.fees) == (D("189.8"), D(-50), D("10.2"))
    btc, eth = figures.per_symbol
    assert (btc.symbol, btc.pnl, btc.realised, btc.unrealised, btc.fees) == (
        BTC, D("191.8"), D("191.8"), 0, D("8.2")
    )  # fmt: skip
    assert (btc.quantity, btc.mark, btc.trades, btc.wins, btc.win_rate) == (0, None, 1, 1, 1.0)
    assert (eth.pnl, eth.realised, eth.unrealised, eth.quantity, eth.mark) == (
        D(-52), D(-2), D(-50), D(1), D(1950)
    )  # fmt: skip
    assert (eth.trades, eth.win_rate) == (0, None)  # open: not a closed round trip yet
    assert (figures.trades, figures.wins, figures.losses, figures.win_rate) == (1, 1, 0, 1.0)


def test_metrics_when_traded_then_pnl_per_day_and_iso_week(figures: TradingMetrics) -> None:
    days = [(d.label, d.pnl, dict(d.per_symbol)) for d in figures.daily]
    assert days[:3] == [
        ("2026-11-02", D(96), {BTC: D(96)}),
        ("2026-11-03", D(-200), {BTC: D(-200)}),
        ("2026-11-04", D("295.8"), {BTC: D("295.8")}),
    ]
    assert [d.pnl for d in figures.daily[3:7]] == [0, 0, 0, 0]
    assert days[7:] == [
        ("2026-11-09", D(-102), {BTC: 0, ETH: D(-102)}),
        ("2026-11-10", D(50), {BTC: 0, ETH: D(50)}),
    ]
    assert [d.equity for d in figures.daily] == [D(x) for x in DAY_ENDS]
    weeks = [(w.label, w.start, w.pnl, dict(w.per_symbol), w.equity) for w in figures.weekly]
    assert weeks == [
        ("2026-W45", date(2026, 11, 2), D("191.8"), {BTC: D("191.8")}, D("10191.8")),
        ("2026-W46", date(2026, 11, 9), D(-52), {BTC: 0, ETH: D(-52)}, D("10139.8")),
    ]
    assert sum((d.pnl for d in figures.daily), D(0)) == figures.pnl


def test_metrics_when_traded_then_equity_curve_at_each_fill_and_day_end_with_drawdown(
    figures: TradingMetrics,
) -> None:
    curve = [(p.time, p.equity) for p in figures.equity_curve]
    assert curve[:4] == [(MON, D(10000)), (at(0, 10), D(9996)), (at(1), D(10096)),
                         (at(2), D(9896))]  # fmt: skip
    assert (at(2, 12), D("10191.8")) in curve
    assert (at(7, 9), D("10189.8")) in curve  # the ETH just bought, at its fill price
    assert curve[-2:] == [(at(8), D("10089.8")), (NOW, D("10139.8"))]
    assert [p.time for p in figures.equity_curve] == sorted(p.time for p in figures.equity_curve)
    assert figures.max_drawdown == pytest.approx(200 / 10096)
    assert figures.current_drawdown == pytest.approx(52 / 10191.8)
    assert figures.equity_curve[-1].drawdown == figures.current_drawdown


def test_metrics_when_traded_then_sharpe_and_sortino_of_daily_returns_annualised(
    figures: TradingMetrics,
) -> None:
    values = [10000.0] + [float(x) for x in DAY_ENDS]
    returns = [b / a - 1 for a, b in itertools.pairwise(values)]
    mean = statistics.fmean(returns)
    sharpe = mean / statistics.stdev(returns) * math.sqrt(365)
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / len(returns))
    assert figures.sharpe == pytest.approx(sharpe)
    assert figures.sortino == pytest.approx(mean / downside * math.sqrt(365))


def test_metrics_when_nothing_traded_then_zeros_and_nulls(ledger: Ledger) -> None:
    open_account(ledger, "10000", MON)
    empty = trading_metrics(ledger, ACCOUNT, EXCHANGE, "1h", NOW)
    assert (empty.equity, empty.pnl) == (D(10000), 0)
    assert (empty.max_drawdown, empty.current_drawdown) == (0.0, 0.0)
    assert (empty.sharpe, empty.sortino, empty.win_rate, empty.trades) == (None, None, None, 0)
    assert (empty.daily, empty.weekly, empty.per_symbol) == ((), (), ())
    assert [(p.time, p.equity) for p in empty.equity_curve] == [(NOW, D(10000))]


def test_metrics_when_no_account_yet_then_zeros(ledger: Ledger) -> None:
    none = trading_metrics(ledger, ACCOUNT, EXCHANGE, "1h", NOW)
    assert (none.starting_cash, none.equity, none.sharpe) == (0, 0, None)


def test_metrics_when_asked_in_the_past_then_only_what_was_known_then(traded: Ledger) -> None:
    early = trading_metrics(traded, ACCOUNT, EXCHANGE, "1h", at(1, 12))
    # At noon on Tuesday the newest BTC price is Monday's last close, not Tuesday's (not yet).
    assert [d.equity for d in early.daily] == [D(10096), D(10096)]
    assert early.pnl == D(96)
    assert early.sortino is None  # no losing day: no downside to divide by
    first_day = trading_metrics(traded, ACCOUNT, EXCHANGE, "1h", at(0, 12))
    assert (first_day.sharpe, first_day.sortino) == (None, None)  # one return: no spread
