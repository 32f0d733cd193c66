from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from decimal import Decimal
from itertools import count
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from core.backtest.stats import BacktestStats, compute_stats
from core.orders import Fill
from core.types import ClientOrderId, Side, Symbol
from infra.reports import backtest_html
from infra.reports.backtest_html import MAX_POINTS, SECTIONS, downsample, write_report

T0 = datetime(2024, 1, 1, tzinfo=UTC)
META = {"run id": "bt-42", "model": "ensemble v7", "window": "2024-01-01 .. 2024-03-01"}
_ids = count()


def fill(symbol: str, side: Side, qty: str, price: str, at: pd.Timestamp) -> Fill:
    n = next(_ids)
    return Fill(
        ClientOrderId(f"c{n}"),
        Symbol(symbol),
        side,
        Decimal(qty),
        Decimal(price),
        Decimal("0.1"),
        at.to_pydatetime(),
        f"f{n}",
    )


def scenario(
    pairs: int, candles: int, trips_per_pair: int, freq: str = "5min"
) -> tuple[BacktestStats, dict[str, pd.Series]]:
    """Random-walk closes; per pair, round trips of four buys of 100 and one sell of all."""
    rng = np.random.default_rng(3)
    index = pd.date_range(T0, periods=candles, freq=freq)
    closes, fills = {}, []
    for p in range(pairs):
        symbol = f"P{p}/USDT"
        series = pd.Series(100 * np.exp(np.cumsum(rng.normal(0, 0.002, candles))), index)
        closes[symbol] = series
        at = np.sort(rng.choice(candles, trips_per_pair * 5, replace=False))
        for t in range(trips_per_pair):
            held = Decimal(0)
            for k in at[t * 5 : t * 5 + 4]:
                price = Decimal(f"{series.iloc[k]:.4f}")
                qty = (100 / price).quantize(Decimal("0.00001"))
                fills.append(fill(symbol, Side.BUY, str(qty), str(price), index[k]))
                held += qty
            k = at[t * 5 + 4]
            price = f"{series.iloc[k]:.4f}"
            fills.append(fill(symbol, Side.SELL, str(held), price, index[k]))
    timeframe = {"5min": "5m", "1h": "1h"}[freq]
    return compute_stats(Decimal(10_000), fills, closes, timeframe), closes


def test_write_report_when_small_run_then_every_section_and_plotly_divs_are_there(
    tmp_path: Path,
) -> None:
    # Arrange
    stats, closes = scenario(pairs=2, candles=3000, trips_per_pair=3, freq="1h")
    # Act
    path = write_report(tmp_path / "report.html", stats, closes, "Backtest <bt-42>", META)
    # Assert
    html = path.read_text(encoding="utf-8")
    for key, heading in SECTIONS.items():
        assert re.search(rf'<section id="{key}">\s*<h2>{heading}</h2>', html)
    assert html.count('class="plotly-graph-div"') == 1 + 1 + 2  # equity, months, a pair each
    for div in ("equity-drawdown-chart", "monthly-returns-chart", "trades-chart-0"):
        assert f'id="{div}"' in html
    assert "<script src=" not in html  # plotly.js is inline: the file opens offline
    # One call per figure, beyond any the inline library's own source contains.
    assert html.count("Plotly.newPlot(") - get_plotlyjs().count("Plotly.newPlot(") == 4
    assert "<title>Backtest &lt;bt-42&gt;</title>" in html
    for value in ("bt-42", "ensemble v7", "2024-01-01 .. 2024-03-01", "P0/USDT, P1/USDT"):
        assert value in html
    assert '<tr class="total"><td>TOTAL</td><td>6</td>' in html


def test_write_report_when_file_exists_then_replaced_and_no_temp_file_left(
    tmp_path: Path,
) -> None:
    stats, closes = scenario(pairs=1, candles=200, trips_per_pair=1, freq="1h")
    target = tmp_path / "out" / "report.html"
    target.parent.mkdir()
    target.write_text("old")

    write_report(target, stats, closes, "t", {})

    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]


def test_write_report_when_the_replace_fails_then_old_file_kept_and_temp_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange
    stats, closes = scenario(pairs=1, candles=200, trips_per_pair=1, freq="1h")
    target = tmp_path / "report.html"
    target.write_text("old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(backtest_html.os, "replace", broken_replace)
    # Act
    with pytest.raises(OSError, match="disk full"):
        write_report(target, stats, closes, "t", {})
    # Assert
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["report.html"]


def test_write_report_when_no_fills_then_written_with_zero_trades(tmp_path: Path) -> None:
    index = pd.date_range(T0, periods=100, freq="1h")
    closes = {"BTC/USDT": pd.Series(np.linspace(100, 120, 100), index)}
    stats = compute_stats(Decimal(1000), [], closes, "1h")

    html = write_report(tmp_path / "r.html", stats, closes, "flat", {}).read_text()

    assert '<tr class="total"><td>TOTAL</td><td>0</td>' in html
    assert "<td>Sharpe</td><td>n/a</td>" in html


def test_write_report_when_8_pairs_of_70k_candles_then_under_15_mb(tmp_path: Path) -> None:
    stats, closes = scenario(pairs=8, candles=70_000, trips_per_pair=250)

    path = write_report(tmp_path / "big.html", stats, closes, "big", META)

    assert len(stats.fills) == 10_000
    assert path.stat().st_size < 15 * 1024 * 1024


def test_downsample_when_longer_than_the_limit_then_keeps_ends_lows_and_highs() -> None:
    rng = np.random.default_rng(1)
    index = pd.date_range(T0, periods=70_000, freq="5min")
    series = pd.Series(np.cumsum(rng.normal(0, 1, 70_000)), index)

    thin = downsample(series)

    assert len(thin) <= MAX_POINTS
    assert thin.index.is_monotonic_increasing
    assert (thin.index[0], thin.index[-1]) == (index[0], index[-1])
    assert (thin.min(), thin.max()) == (series.min(), series.max())
    assert (thin == series.loc[thin.index]).all()


def test_downsample_when_short_then_unchanged() -> None:
    series = pd.Series([1.0, 2.0, 3.0])

    assert downsample(series).equals(series)
