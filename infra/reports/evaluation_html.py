"""The walk-forward evaluation as one self-contained HTML file (plotly.js inline: it opens
offline): per regime the table, the equity of the model's policy beside the baseline and
buy-and-hold, the calibration curve and the feature importance."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from core.models.evaluation import STRATEGIES, FoldScores, RegimeEvaluation
from infra.reports.backtest_html import _STYLE, _figure_html, _write_atomically, downsample

COLUMNS = (
    "period", "rows", "AUC", "log-loss", "Brier", "ECE", "net", "Sharpe", "Sortino", "max DD",
    "turnover", "fees", "trades", "may trade", "weights",
    "baseline AUC", "baseline net", "baseline Sharpe",
    "B&H net", "B&H Sharpe",
)  # fmt: skip


def row_of(f: FoldScores) -> list[str]:
    """One line of the evaluation table, as printed and as stored."""
    m, b, h = (f.trading[s] for s in STRATEGIES)
    return [
        f"{f.label} ({f.start:%Y-%m-%d} .. {f.end:%Y-%m-%d})",
        str(f.rows),
        *(f"{f.model[k]:.4f}" for k in ("auc", "log_loss", "brier", "ece")),
        f"{m.net_return:+.2%}", f"{m.sharpe:+.2f}", f"{m.sortino:+.2f}", f"{m.max_drawdown:.2%}",
        f"{m.turnover:.1f}", f"{m.fees:.2%}", str(m.trades),
        ("yes" if f.tradeable else "no") if f.weights else "",
        " ".join(f"{n[:2]}{w:.2f}" for n, w in f.weights.items()),
        f"{f.baseline_auc:.4f}", f"{b.net_return:+.2%}", f"{b.sharpe:+.2f}",
        f"{h.net_return:+.2%}", f"{h.sharpe:+.2f}",
    ]  # fmt: skip


def _table(regime: RegimeEvaluation) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in COLUMNS)
    lines = []
    for f in [*regime.folds, regime.overall]:
        cls = ' class="total"' if f.label == "overall" else ""
        lines.append(f"<tr{cls}>" + "".join(f"<td>{escape(v)}</td>" for v in row_of(f)) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(lines)}</table>"


def _equity(regime: RegimeEvaluation) -> go.Figure:
    fig = go.Figure()
    for strategy in STRATEGIES:
        line = downsample(regime.equity[strategy])
        fig.add_trace(go.Scatter(x=line.index, y=line.to_numpy(), name=strategy, mode="lines"))
    fig.update_layout(title="Equity over the test folds (costs paid)", height=380)
    return fig


def calibration_curve(p: np.ndarray, y: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Equal-count bins: mean predicted probability against the observed rate."""
    order = np.argsort(p, kind="stable")
    parts = [part for part in np.array_split(order, bins) if len(part)]
    return pd.DataFrame(
        {"predicted": [p[i].mean() for i in parts], "observed": [y[i].mean() for i in parts]}
    )


def _calibration(regime: RegimeEvaluation) -> go.Figure:
    scored = regime.scored
    curve = calibration_curve(scored["p"].to_numpy(), scored["label"].to_numpy())
    top = float(max(curve.max().max(), 0.01))
    fig = go.Figure(
        [
            go.Scatter(x=[0, top], y=[0, top], name="perfect", mode="lines", line={"dash": "dot"}),
            go.Scatter(
                x=curve["predicted"], y=curve["observed"], name="model", mode="lines+markers"
            ),
        ]
    )
    fig.update_layout(
        title="Calibration, out of sample",
        height=380,
        xaxis_title="predicted P(label = 1)",
        yaxis_title="observed rate",
    )
    return fig


def _importance(regime: RegimeEvaluation) -> go.Figure:
    top = regime.importance.head(20)[::-1]
    fig = go.Figure(go.Bar(x=top.to_numpy(), y=list(top.index), orientation="h"))
    fig.update_layout(title="Tree members' gain share, mean over folds (top 20)", height=520)
    return fig


def write_evaluation(path: Path, regimes: Sequence[RegimeEvaluation], meta: dict[str, str]) -> Path:
    parts = []
    for i, regime in enumerate(regimes):
        parts.append(f"<h2>{escape(regime.name)}: {escape(', '.join(regime.symbols))}</h2>")
        parts.append(_table(regime))
        parts.append(_figure_html(_equity(regime), f"equity-{i}"))
        parts.append(_figure_html(_calibration(regime), f"calibration-{i}"))
        if not regime.importance.empty:
            parts.append(_figure_html(_importance(regime), f"importance-{i}"))
    about = "".join(f"<li>{escape(k)}: {escape(v)}</li>" for k, v in meta.items())
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>Walk-forward evaluation</title>\n<style>{_STYLE}</style>\n"
        f'<script type="text/javascript">{get_plotlyjs()}</script>\n</head>\n<body>\n'
        f"<h1>Walk-forward evaluation</h1>\n<ul>{about}</ul>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )
    return _write_atomically(path, page)
