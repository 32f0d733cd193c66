"""`tradeflow` command line: run the pipeline, sign kill-switch requests, serve the API."""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from infra.settings import Settings, apply_offline_env, get_settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Automated crypto trading: candles -> features -> models -> agents -> orders.",
)
console = Console()


def _settings() -> Settings:
    settings = get_settings()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    apply_offline_env(settings.var_dir)
    return settings


@app.command()
def run(
    replay_candles: Annotated[
        int | None, typer.Option(help="candles to replay (default: settings)")
    ] = None,
) -> None:
    """Ingest, train + register, replay the newest window on the paper broker, print a summary."""
    settings = _settings()
    # The progress display is the user's view here: Prefect's console handler stays quiet while
    # flow and task logs still go, at INFO, to the Prefect UI (`make ui`).
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    import contextlib
    import io
    import warnings

    warnings.filterwarnings("ignore", module="mlflow")
    from flows.pipeline import pipeline  # heavy imports after the offline environment is set
    from infra import composition
    from infra.jobs.summary import summarise

    n = replay_candles or settings.replay_candles
    console.print(
        f"[bold]tradeflow[/]  source={settings.source} data={settings.data_dir}  "
        f"symbols={', '.join(settings.symbols)} {settings.timeframe}"
    )
    console.print(f"ledger={settings.ledger_url}  mlflow={settings.tracking_uri}")
    stages = {
        "ingest": "ingest candles",
        "train": "features, train, register",
        "decide": f"replay {n} candles (paper)",
    }
    started = time.perf_counter()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        tasks: dict[str, int] = {}

        def on_stage(name: str) -> None:
            for open_task in tasks.values():
                progress.update(open_task, completed=progress.tasks[open_task].total)
            if name in stages:
                total = n if name == "decide" else 1
                tasks[name] = progress.add_task(stages[name], total=total)

        def on_candle(_: datetime) -> None:
            progress.advance(tasks["decide"])

        # MLflow prints registry notices straight to stderr; they would tear the progress bars.
        captured = io.StringIO()
        failure: Exception | None = None
        try:
            with contextlib.redirect_stderr(captured):
                report = pipeline(replay_candles=n, on_stage=on_stage, on_candle=on_candle)
        except _user_errors() as exc:
            failure = exc
    log_path = settings.var_dir / "logs" / "run-stderr.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(captured.getvalue())
    if failure is not None:
        console.print(f"[red]error:[/] {type(failure).__name__}: {failure}", highlight=False)
        console.print("the failed run and its logs are in the Prefect UI (`make ui`)")
        raise typer.Exit(1)
    elapsed = time.perf_counter() - started
    summary = summarise(
        composition.ledger(settings),
        settings.account,
        settings.exchange,
        settings.timeframe,
        since=report.replay_from,
    )
    _print_summary(settings, report, summary, elapsed)


def _user_errors() -> tuple[type[Exception], ...]:
    """Failures a user can act on from one line: bad data, no exchange, no model."""
    from core.candles.clean import CandleConflictError
    from core.candles.gaps import CandleGapError
    from core.candles.schema import CandleValidationError
    from core.features.build import MissingReference
    from core.features.schema import DatasetValidationError
    from core.models.training import NotEnoughData
    from flows.ingest import IngestFailed
    from infra.exchange_errors import ExchangeError
    from infra.ledger.repository import StoredCandleConflict
    from infra.market_data.files import CandleFileError
    from registry.mlflow_registry import RegistryError

    return (
        IngestFailed,
        CandleConflictError,
        CandleGapError,
        StoredCandleConflict,
        DatasetValidationError,
        MissingReference,
        CandleValidationError,
        CandleFileError,
        ExchangeError,
        NotEnoughData,
        RegistryError,
        LookupError,
    )


def _print_summary(settings: Settings, report, summary, elapsed: float) -> None:  # type: ignore[no-untyped-def]
    t = Table(title="Candles ingested", title_justify="left")
    for col in ("symbol", "source", "read", "new", "stored", "first", "last"):
        t.add_column(col)
    for r in report.ingest:
        t.add_row(
            r.symbol,
            r.source.rsplit("/", 1)[-1],
            str(r.received),
            str(r.inserted),
            str(r.stored),
            f"{r.first:%Y-%m-%d %H:%M}" if r.first else "-",
            f"{r.last:%Y-%m-%d %H:%M}" if r.last else "-",
        )
    console.print(t)

    tr = report.training
    m = tr.metrics
    t = Table(
        title=f"Model {tr.registered.name} v{tr.registered.version} "
        f"(feature set {tr.feature_set_version}, {tr.rows} rows)",
        title_justify="left",
    )
    for col in ("split", "range", "AUC", "log-loss", "accuracy"):
        t.add_column(col)
    for split in ("train", "validation", "test"):
        a, b = tr.ranges[split]
        t.add_row(
            split,
            f"{a[:16]} .. {b[:16]}",
            f"{m[f'ensemble_{split}_auc']:.4f}",
            f"{m[f'ensemble_{split}_log_loss']:.4f}",
            f"{m[f'ensemble_{split}_accuracy']:.4f}",
        )
    console.print(t)
    console.print(
        f"promotion: {tr.promotion.reason} -> champion is v{tr.promotion.champion_version}"
    )

    d = report.decisions
    console.print(
        f"\n[bold]Decisions[/] since {report.replay_from} "
        f"({len(d.candle_times)} candles, {d.skipped_existing} already decided earlier):"
    )
    console.print(
        "  " + "  ".join(f"{a}={summary.actions.get(a, 0)}" for a in ("BUY", "SELL", "HOLD"))
    )
    console.print(f"  denied by the risk gate: {summary.denied_decisions}")
    for reason, count in summary.denial_reasons.most_common():
        console.print(f"    {reason}: {count}")
    console.print(
        f"  orders: {dict(summary.orders_by_status)}  fills: {summary.fills}  "
        f"fees: {summary.fees:.2f}"
    )

    t = Table(title="Positions (paper)", title_justify="left")
    for col in ("symbol", "quantity", "avg price", "last", "unrealised", "realised"):
        t.add_column(col, justify="right")
    for p in summary.positions:
        t.add_row(
            p.symbol,
            f"{p.quantity}",
            f"{p.avg_price:.2f}",
            f"{p.last_price:.2f}",
            f"{p.unrealised_pnl:.2f}",
            f"{p.realised_pnl:.2f}",
        )
    console.print(t)
    console.print(
        f"cash {summary.cash:.2f}  equity {summary.equity:.2f}  "
        f"P&L {summary.pnl:+.2f} USDT (from {summary.starting_cash:.2f})"
    )
    console.print(f"\nfinished in {elapsed:.1f}s. Look at what was just recorded:")
    console.print(
        f"  Prefect UI: PREFECT_HOME={settings.var_dir / 'prefect'} "
        ".venv/bin/prefect server start --host 127.0.0.1 --port 4200  "
        "-> http://127.0.0.1:4200/runs"
    )
    console.print(
        f"  MLflow UI:  .venv/bin/mlflow ui --backend-store-uri {settings.tracking_uri} "
        "--host 127.0.0.1 --port 5000 --workers 1  -> http://127.0.0.1:5000/#/models"
    )
    console.print("  (or `make ui` for both)")


@app.command("sign-kill-switch")
def sign_kill_switch(
    action: Annotated[
        str, typer.Argument(help="activate or deactivate (kill switch), reset (breaker)")
    ],
    reason: Annotated[str, typer.Option(help="why, recorded in the ledger")] = "manual",
    url: Annotated[str, typer.Option(help="API base URL")] = "http://127.0.0.1:8000",
) -> None:
    """Print a curl command with a fresh HMAC signature for the kill switch or the breaker."""
    import json
    import shlex

    from core.safety.signing import sign

    settings = get_settings()
    if settings.kill_switch_secret is None:
        console.print("[red]TRADEFLOW_KILL_SWITCH_SECRET is not set[/]")
        raise typer.Exit(2)
    if action not in ("activate", "deactivate", "reset"):
        console.print("[red]action must be 'activate', 'deactivate' or 'reset'[/]")
        raise typer.Exit(2)
    route = "circuit-breaker" if action == "reset" else "kill-switch"
    ts = int(time.time())
    sig = sign(settings.kill_switch_secret.get_secret_value(), action, ts)
    body = json.dumps({"action": action, "reason": reason})
    typer.echo(
        f"curl -sS -X POST {url}/api/v1/safety/{route} -H 'Content-Type: application/json' "
        f"-H 'X-Kill-Switch-Timestamp: {ts}' -H 'X-Kill-Switch-Signature: {sig}' "
        f"-d {shlex.quote(body)}"
    )


@app.command("trading-state")
def trading_state(
    state: Annotated[str, typer.Argument(help="active, reducing or halted")],
    reason: Annotated[str, typer.Option(help="why, recorded in the ledger")] = "operator",
) -> None:
    """Set the operator's trading state (whoever can run this can write the ledger anyway).
    The effective state is the most restrictive of this, the kill switch, the breaker and
    reconciliation."""
    from core.clock import SystemClock
    from core.risk.state import TradingState, effective_state
    from infra import composition
    from infra.ledger.repository import OPERATOR

    try:
        wanted = TradingState(state)
    except ValueError:
        console.print("[red]state must be active, reducing or halted[/]")
        raise typer.Exit(2) from None
    settings = _settings()
    ledger = composition.ledger(settings)
    now = SystemClock().now()
    ledger.set_control(
        OPERATOR, wanted is not TradingState.ACTIVE, wanted.value, now, detail={"why": reason}
    )
    effective, cause, detail = effective_state(ledger.safety_flags(now))
    console.print(f"operator state {wanted.value}; effective {effective.value}" + (
        f" ({cause.value}: {detail})" if cause else ""
    ))  # fmt: skip


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the safety/health API (needs TRADEFLOW_KILL_SWITCH_SECRET)."""
    import uvicorn

    from serving.app import create_app

    _settings()
    uvicorn.run(create_app(), host=host, port=port)


@app.command()
def migrate() -> None:
    """Upgrade the ledger schema to the newest migration."""
    from infra.ledger.database import migrate as upgrade

    settings = _settings()
    upgrade(settings.ledger_url)
    console.print(f"ledger at {settings.ledger_url} is up to date")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
