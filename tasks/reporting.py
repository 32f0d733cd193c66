"""What a run tells a Prefect-only operator: lines in the run's log (get_run_logger) and one
markdown artifact per run, shown on the run's page and under Artifacts in the UI."""

from __future__ import annotations

from collections.abc import Sequence

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact

from core.backtest.stats import BacktestStats
from core.records import BacktestRun
from services import bootstrap
from services.decide.loop import DecisionRunReport
from services.ingest import IngestReport
from services.outcome import TradingOutcome
from services.reconcile import ReconciliationReport
from services.summary import summarise
from services.training import TrainingReport


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def publish_ingest(reports: Sequence[IngestReport], failures: Sequence[str]) -> None:
    log = get_run_logger()
    for r in reports:
        log.info(
            "%s %s: %d read, %d new, %d stored (%s .. %s), %d gaps",
            r.symbol, r.timeframe, r.received, r.inserted, r.stored, r.first, r.last, r.gaps,
        )  # fmt: skip
    rows = [
        (r.symbol, r.timeframe, r.received, r.inserted, r.stored, r.first, r.last, r.gaps)
        for r in reports
    ]
    body = "## Candles stored\n\n" + _table(
        ("symbol", "timeframe", "read", "new", "stored", "first", "last", "gaps"), rows
    )
    if failures:
        body += "\n\n## Failed\n\n" + "\n".join(f"- {f}" for f in failures)
    create_markdown_artifact(body, key="ingest", description="candles stored per symbol")


def publish_training(report: TrainingReport) -> None:
    log = get_run_logger()
    p = report.promotion
    log.info("registered %s v%s; %s", report.registered.name, report.registered.version, p.reason)
    metrics = sorted((k, f"{v:.4f}") for k, v in report.metrics.items() if k.startswith("ensemble"))
    body = (
        f"## {report.registered.name} v{report.registered.version}\n\n"
        f"feature set {report.feature_set_version}, {report.rows} rows\n\n"
        f"**Promotion:** {'champion' if p.promoted else 'challenger'}: {p.reason}\n\n"
        + _table(("metric", "value"), metrics)
    )
    create_markdown_artifact(body, key="train", description="metrics and promotion")


def publish_decisions(report: DecisionRunReport, outcome: TradingOutcome, title: str) -> None:
    log = get_run_logger()
    decided = ", ".join(
        f"{a}={report.decided.get(a, 0)}" for a in ("BUY", "SELL", "HOLD", "NO_TRADE")
    )
    log.info("%d candles decided on %s: %s", len(report.candle_times), report.broker, decided)
    if report.denied:
        log.info("denied by the risk gate: %s", dict(report.denied.most_common()))
    log.info("orders %d, fills %d; %s", report.orders, report.fills, outcome.line())
    settings = bootstrap.get_settings()
    summary = summarise(
        bootstrap.ledger(settings), settings.account, settings.exchange, settings.timeframe
    )
    positions = [
        (p.symbol, p.quantity, f"{p.avg_price:.2f}", f"{p.last_price:.2f}",
         f"{p.unrealised_pnl:.2f}", f"{p.realised_pnl:.2f}")
        for p in summary.positions
    ]  # fmt: skip
    body = "\n\n".join(
        [
            f"## {title}: {len(report.candle_times)} candles on `{report.broker}`",
            f"**{outcome.line()}**",
            f"Decisions: {decided}; {report.skipped_existing} decided by an earlier run",
            "### Denials by reason\n\n" + _table(("reason", "count"), report.denied.most_common()),
            f"Orders sent: {report.orders}; fills: {report.fills}",
            "### Positions\n\n"
            + _table(("symbol", "qty", "avg", "last", "unrealised", "realised"), positions),
            f"Cash {summary.cash:.2f}, equity {summary.equity:.2f}, "
            f"P&L {summary.pnl:+.2f} (from {summary.starting_cash:.2f})",
        ]
    )
    create_markdown_artifact(body, key="decisions", description=title)


def publish_reconciliation(report: ReconciliationReport) -> None:
    log = get_run_logger()
    verdict = "passed" if report.passed else "FAILED"
    log.info(
        "reconciliation %s: %d fills adopted, %d orders updated, %d found sent, "
        "%d unknown to the broker",
        verdict, len(report.adopted_fills), len(report.orders_updated),
        len(report.orders_found_sent), len(report.orders_unknown_to_broker),
    )  # fmt: skip
    for line in report.unexplained:
        log.error("unexplained: %s", line)
    rows = [
        ("fills adopted", ", ".join(report.adopted_fills) or "-"),
        ("orders found sent", ", ".join(report.orders_found_sent) or "-"),
        ("orders updated", ", ".join(report.orders_updated) or "-"),
        ("unknown to the broker", ", ".join(report.orders_unknown_to_broker) or "-"),
        ("unexplained", "; ".join(report.unexplained) or "-"),
    ]
    body = f"## Reconciliation {verdict}\n\n" + _table(("what", "items"), rows)
    create_markdown_artifact(body, key="reconcile", description=f"reconciliation {verdict}")


def publish_backtest(run: BacktestRun, stats: BacktestStats | None) -> None:
    """The run's headline figures in its log, and its per-pair table as an artifact."""
    log = get_run_logger()
    s = run.summary
    log.info(
        "backtest %s: %s %s %s..%s, return %s (buy and hold %s), max drawdown %s, report %s",
        run.run_id, ",".join(run.symbols), run.timeframe, f"{run.start:%F}", f"{run.end:%F}",
        _pct(s.get("total_return")), _pct(s.get("buy_and_hold_return")),
        _pct(s.get("max_drawdown")), run.report_path,
    )  # fmt: skip
    figures = [(k, _pct(v) if k.endswith(("return", "drawdown", "exposure", "rate")) else v)
               for k, v in s.items()]  # fmt: skip
    body = [
        f"## Backtest {run.run_id}",
        f"{run.model_name} v{run.model_version} on {', '.join(run.symbols)} {run.timeframe}, "
        f"{run.start:%F %H:%M} .. {run.end:%F %H:%M} UTC; ledger account `{run.account}`",
        _table(("figure", "value"), figures),
    ]
    if stats is not None:
        pairs = [
            (p.symbol, p.trades, f"{p.avg_profit_pct:.2f}", f"{p.total_profit:.2f}",
             f"{p.total_profit_pct:.2f}", f"{p.win_rate:.0%}", f"{p.fees:.2f}")
            for p in (*stats.pairs, stats.total)
        ]  # fmt: skip
        header = ("pair", "trades", "avg %", "total", "total %", "win rate", "fees")
        body.append("### Per pair\n\n" + _table(header, pairs))
    body.append(f"Report: `{run.report_path}`")
    create_markdown_artifact("\n\n".join(body), key="backtest", description=run.run_id)


def _pct(value: object) -> str:
    return f"{value:+.2%}" if isinstance(value, float) else str(value)
