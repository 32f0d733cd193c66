"""A backtest's results as ONE self-contained HTML file (plotly.js inline, so it opens
offline): summary, equity and drawdown, monthly returns, trades on the prices, per-pair table.

Sections carry stable ids (SECTIONS) so a test or a link can find them. Long price and equity
lines are thinned to at most MAX_POINTS points each, keeping every bucket's low and high, so
eight pairs of a year of 5m candles stay a few megabytes.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from core.backtest.stats import BacktestStats, PairStats, drawdown, price_frame
from core.candles.timeframe import timeframe_delta
from core.orders import Fill
from core.types import Side

MAX_POINTS = 5000
SECTIONS = {
    "summary": "Summary",
    "equity-drawdown": "Equity and drawdown",
    "monthly-returns": "Monthly returns",
    "trades": "Trades",
    "per-pair-results": "Per-pair results",
}
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem 2rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 1.5rem 1rem 0; display: inline-table;
        vertical-align: top; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.total td { font-weight: bold; background: #f3f3f3; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2rem; margin-top: 2rem; }
"""


def write_report(
    path: Path,
    stats: BacktestStats,
    closes: Mapping[str, pd.Series],
    title: str,
    meta: Mapping[str, str],
) -> Path:
    """Write the report to `path` atomically (a temp file beside it, then os.replace) and
    return `path`. `closes`: per symbol, closes indexed by candle open time, as given to
    compute_stats; `meta`: what the run was (run id, model, window, ...), shown as given."""
    sections = [
        _section("summary", _summary(stats, meta)),
        _section("equity-drawdown", _equity_figure(stats, closes)),
        _section("monthly-returns", _monthly_figure(stats.monthly_returns)),
        _section("trades", _trades_figures(stats, closes)),
        _section("per-pair-results", _pairs_table(stats)),
    ]
    page = "".join(
        [
            f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n"
            '<script type="text/javascript">',
            get_plotlyjs(),
            f"</script>\n</head>\n<body>\n<h1>{escape(title)}</h1>\n",
            "\n".join(sections),
            "\n</body>\n</html>\n",
        ]
    )
    return _write_atomically(path, page)


def _write_atomically(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _section(key: str, body: str) -> str:
    return f'<section id="{key}">\n<h2>{SECTIONS[key]}</h2>\n{body}\n</section>'


def downsample(series: pd.Series, max_points: int = MAX_POINTS) -> pd.Series:
    """At most `max_points` points (NaNs dropped) that keep the line's shape: the first and
    last points and, per equal bucket of positions, its lowest and highest."""
    known = series.dropna()
    n = len(known)
    if n <= max_points:
        return known
    buckets = max(1, (max_points - 2) // 2)
    groups = pd.Series(known.to_numpy()).groupby(np.arange(n) * buckets // n)
    keep = np.union1d(groups.idxmin().to_numpy(), groups.idxmax().to_numpy())
    return known.iloc[np.union1d(keep, [0, n - 1])]


def _utc(times: pd.DatetimeIndex | Sequence[datetime]) -> np.ndarray:
    """UTC times as naive datetime64: plotly copies these fast, unlike Timestamp objects."""
    index = pd.DatetimeIndex(times)
    return (index.tz_convert(None) if index.tz is not None else index).to_numpy()


def _figure_html(fig: go.Figure, div_id: str) -> str:
    fig.update_layout(margin={"l": 60, "r": 20, "t": 40, "b": 40}, template="plotly_white")
    fig.update_xaxes(hoverformat="%Y-%m-%d %H:%M UTC")
    return fig.to_html(
        full_html=False, include_plotlyjs=False, div_id=div_id, config={"responsive": True}
    )


def _fmt_pct(value: float | None, signed: bool = True) -> str:
    if value is None:
        return "n/a"
    return f"{value * 100:+.2f} %" if signed else f"{value * 100:.2f} %"


def _fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _fmt_time(value: datetime | None) -> str:
    return "n/a" if value is None else f"{value:%Y-%m-%d %H:%M}"


def _fmt_duration(value: timedelta | None) -> str:
    if value is None:
        return "n/a"
    minutes = int(value.total_seconds() // 60)
    days, rest = divmod(minutes, 1440)
    return f"{days}d {rest // 60:02d}:{rest % 60:02d}" if days else f"{rest // 60}:{rest % 60:02d}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], total: int | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    lines = []
    for k, row in enumerate(rows):
        cls = ' class="total"' if k == total else ""
        lines.append(f"<tr{cls}>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>")
    return (
        f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(lines)
        + "</tbody>\n</table>"
    )


def _money(value: Decimal) -> str:
    return f"{value:,.2f}"


def _summary(stats: BacktestStats, meta: Mapping[str, str]) -> str:
    run = stats.run
    about = [(k, str(v)) for k, v in meta.items()]
    about += [
        ("symbols", ", ".join(p.symbol for p in stats.pairs)),
        ("timeframe", run.timeframe),
        ("window", f"{_fmt_time(run.start)} .. {_fmt_time(run.end)}"),
    ]
    dd_dates = f"{_fmt_time(run.max_drawdown_start)} .. {_fmt_time(run.max_drawdown_end)}"
    figures = [
        ("Starting balance", _money(run.starting_cash), _money(run.starting_cash)),
        ("Final balance", _money(run.final_equity), _money(_hold_final(stats))),
        ("Total return", _fmt_pct(run.total_return), _fmt_pct(run.buy_and_hold_return)),
        ("CAGR", _fmt_pct(run.cagr), ""),
        ("Max drawdown", f"{_fmt_pct(run.max_drawdown, signed=False)} ({dd_dates})", ""),
        ("Sharpe", _fmt_ratio(run.sharpe), ""),
        ("Sortino", _fmt_ratio(run.sortino), ""),
        ("Calmar", _fmt_ratio(run.calmar), ""),
        ("Exposure", _fmt_pct(run.exposure, signed=False), "100.00 %"),
        ("Trades", str(run.trades), ""),
        ("Win rate", _fmt_pct(run.win_rate, signed=False), ""),
        ("Fees", _money(run.fees), ""),
        ("Best pair", run.best_pair or "n/a", ""),
        ("Worst pair", run.worst_pair or "n/a", ""),
    ]
    return _table(("Run", ""), about) + _table(("Figure", "Strategy", "Buy and hold"), figures)


def _hold_final(stats: BacktestStats) -> Decimal:
    growth = Decimal(repr(1.0 + stats.run.buy_and_hold_return))
    return stats.run.starting_cash * growth


def _buy_and_hold_curve(stats: BacktestStats, closes: Mapping[str, pd.Series]) -> pd.Series:
    """Equal weights bought at the first close, valued at each close (by close time)."""
    frame = price_frame(closes)
    growth = (frame / frame.bfill().iloc[0]).fillna(1.0).mean(axis=1)
    step = timeframe_delta(stats.run.timeframe)
    return pd.Series(growth.to_numpy() * float(stats.run.starting_cash), index=frame.index + step)


def _equity_figure(stats: BacktestStats, closes: Mapping[str, pd.Series]) -> str:
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.04
    )
    equity = downsample(stats.equity)
    hold = downsample(_buy_and_hold_curve(stats, closes))
    below = downsample(drawdown(stats.equity, stats.run.starting_cash) * -100.0)
    fig.add_trace(
        go.Scatter(x=_utc(equity.index), y=equity.to_numpy(), name="equity"), row=1, col=1
    )
    fig.add_trace(
        go.Scatter(
            x=_utc(hold.index), y=hold.to_numpy(), name="buy and hold", line={"dash": "dot"}
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=_utc(below.index),
            y=below.to_numpy(),
            name="drawdown %",
            fill="tozeroy",
            line={"color": "#c0392b"},
        ),
        row=2,
        col=1,
    )
    fig.update_yaxes(title_text="equity", row=1, col=1)
    fig.update_yaxes(title_text="drawdown %", row=2, col=1)
    fig.update_xaxes(title_text="time (UTC)", row=2, col=1)
    fig.update_layout(height=600, hovermode="x unified")
    return _figure_html(fig, "equity-drawdown-chart")


def _monthly_figure(monthly: pd.Series) -> str:
    if monthly.empty:
        return "<p>No months.</p>"
    years = sorted({t.year for t in monthly.index})
    z = np.full((len(years), 12), np.nan)
    for t, value in monthly.items():
        z[years.index(t.year), t.month - 1] = value * 100.0
    text = [["" if np.isnan(v) else f"{v:+.2f}%" for v in row] for row in z]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(MONTHS),
            y=[str(y) for y in years],
            text=text,
            texttemplate="%{text}",
            colorscale="RdYlGn",
            zmid=0.0,
            colorbar={"title": "%"},
            hovertemplate="%{y} %{x}: %{text}<extra></extra>",
        )
    )
    fig.update_layout(height=160 + 60 * len(years), yaxis={"autorange": "reversed"})
    return _figure_html(fig, "monthly-returns-chart")


def _markers(fills: Sequence[Fill], side: Side) -> go.Scatter:
    mine = [f for f in fills if f.side is side]
    up = side is Side.BUY
    return go.Scatter(
        x=_utc([f.filled_at for f in mine]),
        y=[float(f.price) for f in mine],
        mode="markers",
        name=side.value,
        text=[f"{side.value} {f.quantity} @ {f.price} (fee {f.fee})" for f in mine],
        hoverinfo="text+x",
        marker={
            "symbol": "triangle-up" if up else "triangle-down",
            "size": 9,
            "color": "#27ae60" if up else "#c0392b",
        },
    )


def _trades_figures(stats: BacktestStats, closes: Mapping[str, pd.Series]) -> str:
    step = timeframe_delta(stats.run.timeframe)
    parts = []
    for k, (symbol, series) in enumerate(closes.items()):
        line = downsample(series.astype(float))
        fills = [f for f in stats.fills if f.symbol == symbol]
        fig = go.Figure(
            go.Scatter(
                x=_utc(line.index + step), y=line.to_numpy(), name="close", line={"width": 1}
            )
        )
        fig.add_trace(_markers(fills, Side.BUY))
        fig.add_trace(_markers(fills, Side.SELL))
        fig.update_layout(height=380, title=f"{symbol}: {len(fills)} fills")
        parts.append(f"<h3>{escape(symbol)}</h3>\n" + _figure_html(fig, f"trades-chart-{k}"))
    return "\n".join(parts) if parts else "<p>No pairs.</p>"


def _pair_row(p: PairStats, change: float | None) -> list[str]:
    return [
        p.symbol,
        str(p.trades),
        f"{p.avg_profit_pct:+.2f}",
        _money(p.total_profit),
        f"{p.total_profit_pct:+.2f}",
        _fmt_duration(p.avg_duration),
        f"{p.wins} / {p.draws} / {p.losses}",
        _fmt_pct(p.win_rate, signed=False),
        _money(p.fees),
        _fmt_pct(change),
    ]


def _pairs_table(stats: BacktestStats) -> str:
    header = (
        "Pair",
        "Trades",
        "Avg profit %",
        "Tot profit",
        "Tot profit %",
        "Avg duration",
        "Win / Draw / Loss",
        "Win %",
        "Fees",
        "Market change",
    )
    changes = stats.run.market_change
    rows = [_pair_row(p, changes.get(p.symbol)) for p in stats.pairs]
    rows.append(_pair_row(stats.total, stats.run.buy_and_hold_return))
    return _table(header, rows, total=len(rows) - 1)
