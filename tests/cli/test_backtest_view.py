from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
from rich.console import Console

from cli.backtest_view import print_backtest
from core.backtest.stats import compute_stats
from core.orders import Fill
from core.types import ClientOrderId, Side, Symbol

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def fill(side: Side, qty: str, price: str, at: datetime, n: int) -> Fill:
    return Fill(
        ClientOrderId(f"c{n}"),
        Symbol("BTC/USDT"),
        side,
        Decimal(qty),
        Decimal(price),
        Decimal("1"),
        at,
        f"f{n}",
    )


def rendered(fills: list[Fill]) -> str:
    index = pd.date_range(T0, periods=6, freq="1h")
    closes = {
        "BTC/USDT": pd.Series([100.0, 110, 90, 120, 130, 125], index),
        "ETH/USDT": pd.Series([10.0, 11, 12, 13, 14, 15], index),
    }
    stats = compute_stats(Decimal(1000), fills, closes, "1h")
    console = Console(record=True, width=200)
    print_backtest(console, stats, "nightly")
    return console.export_text()


def test_print_backtest_when_trades_then_pair_rows_total_row_and_summary() -> None:
    # Arrange: +19 - 2 fees on BTC, nothing on ETH
    fills = [
        fill(Side.BUY, "1", "100", T0, 0),
        fill(Side.SELL, "1", "119", T0 + 2 * HOUR, 1),
    ]
    # Act
    text = rendered(fills)
    # Assert
    lines = text.splitlines()
    [total] = [line for line in lines if "TOTAL" in line]
    assert "17.000" in total  # profit in USDT
    assert "2.000" in total  # fees
    assert any("BTC/USDT" in line and "2:00" in line for line in lines)  # avg duration
    assert any("ETH/USDT" in line and " 0 " in line for line in lines)
    assert "Tot profit USDT" in text
    assert "Sharpe" in text
    assert "Sortino" in text
    assert "Calmar" in text
    [row] = [line for line in lines if "Total return" in line]
    assert "+1.70%" in row  # the strategy, 1017 / 1000
    assert "+37.50%" in row  # buy and hold: (25% + 50%) / 2
    assert "Market change ETH/USDT" in text


def test_print_backtest_when_no_fills_then_zero_trades_and_no_sharpe() -> None:
    text = rendered([])

    [total] = [line for line in text.splitlines() if "TOTAL" in line]
    assert " 0 " in total
    [sharpe] = [line for line in text.splitlines() if "Sharpe" in line]
    assert sharpe.split("│")[2].strip() == "-"


def test_backtest_progress_when_candles_are_decided_then_counted_and_detached_after() -> None:
    import logging
    from datetime import UTC, datetime

    from cli.backtest_view import BacktestProgress
    from services import progress

    logger = logging.getLogger("tradeflow.progress")
    level = logger.level
    with BacktestProgress(Console(record=True), candles=10, every=4) as bar:
        for _ in range(7):
            progress.candle(datetime(2024, 1, 1, tzinfo=UTC))
    assert bar.bars.tasks[0].completed == 7
    assert bar not in logger.handlers
    assert logger.level == level
