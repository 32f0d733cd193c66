"""`tradeflow` command line: run the pipeline, sign kill-switch requests, serve the API."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from cli.backtest_diff import backtest_diff_command
from cli.decision_view import decision_command
from cli.evaluate import evaluate_command
from cli.options import load_settings, parse_utc
from cli.replay_decision import replay_decision_command
from cli.token import token_app
from cli.walk_forward import walk_forward_command
from infra.settings import Settings

if TYPE_CHECKING:  # the flows are imported only once the offline environment is set
    from flows.pipeline import PipelineReport

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Automated crypto trading: candles -> features -> models -> agents -> orders.",
)
console = Console()


def _settings() -> Settings:
    return load_settings(console)


@app.command()
def run(
    replay_candles: Annotated[
        int | None, typer.Option(help="candles to replay (default: settings)")
    ] = None,
) -> None:
    """Ingest, train + register, replay the newest window on the paper exchange, print a summary."""
    settings = _settings()
    # The progress display is the user's view here: Prefect's console handler stays quiet while
    # flow and task logs still go, at INFO, to the Prefect UI (`make ui`).
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    import warnings

    warnings.filterwarnings("ignore", module="mlflow")
    from cli.run_view import print_summary
    from services import bootstrap
    from services.summary import summarise

    n = replay_candles or settings.replay_candles
    console.print(
        f"[bold]tradeflow[/]  source={settings.source} data={settings.data_dir}  "
        f"symbols={', '.join(settings.symbols)} {settings.timeframe}"
    )
    console.print(f"ledger={settings.ledger_url}  mlflow={settings.tracking_uri}")
    started = time.perf_counter()
    report = _run_pipeline(settings, n)
    elapsed = time.perf_counter() - started
    summary = summarise(
        bootstrap.ledger(settings),
        settings.account,
        settings.exchange,
        settings.timeframe,
        since=report.replay_from,
    )
    print_summary(console, settings, report, summary, elapsed)


def _run_pipeline(settings: Settings, n: int) -> PipelineReport:
    """The pipeline flow under a progress display; a failure is one line and exit code 1."""
    from cli.flow_session import fail, flow_session
    from cli.run_view import RunProgress
    from core.errors import TradeflowError
    from flows.pipeline import pipeline  # heavy imports after the offline environment is set
    from services import bootstrap

    try:
        bootstrap.replay_exchange(settings)  # refuses any broker but the simulated exchange
    except TradeflowError as exc:
        fail(console, exc)
    # Our own Prefect server (unless PREFECT_API_URL is set): one a killed run left behind is
    # stopped and that run's flow and task runs are marked Crashed before this one starts.
    with flow_session(console, settings.var_dir, "run", RunProgress(console, n)):
        report = pipeline(replay_candles=n)
    return report


@app.command()
def backtest(
    start: Annotated[str, typer.Option("--from", help="first candle, UTC: 2024-01-01[T00:00]")],
    end: Annotated[str, typer.Option("--to", help="candles opening before this are tested")],
    symbols: Annotated[
        str | None, typer.Option(help="comma-separated, e.g. BTC/USDT,ETH/USDT (default: settings)")
    ] = None,
    timeframe: Annotated[str | None, typer.Option(help="e.g. 5m (default: settings)")] = None,
    model_version: Annotated[
        str | None, typer.Option(help="a registered version (default: the champion)")
    ] = None,
    walk_forward: Annotated[
        bool, typer.Option("--walk-forward", help="retrain before each fold (`walk-forward`)")
    ] = False,
    retrain_every: Annotated[str, typer.Option(help="with --walk-forward: fold length")] = "30d",
) -> None:
    """Backtest a window through the live decision code on the simulated exchange: per-pair
    results, an HTML report under var/backtests/, the run in the ledger under its own account.
    With --walk-forward, the `walk-forward` command over the same window."""
    if walk_forward:
        walk_forward_command(start, end, retrain_every, None, symbols, timeframe)
        return
    settings = _settings()
    window = (_utc(start, "--from"), _utc(end, "--to"))
    chosen = tuple(s.strip() for s in symbols.split(",") if s.strip()) if symbols else None
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    from cli.backtest_run import run_backtest_flow

    run_backtest_flow(console, settings, window, chosen, timeframe, model_version)


def _utc(text: str, option: str):  # type: ignore[no-untyped-def]
    return parse_utc(text, option, console)


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

    settings = _settings()
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
    from core.risk.state import Control, TradingState, effective_state
    from services import bootstrap

    try:
        wanted = TradingState(state)
    except ValueError:
        console.print("[red]state must be active, reducing or halted[/]")
        raise typer.Exit(2) from None
    settings = _settings()
    ledger = bootstrap.ledger(settings)
    now = SystemClock().now()
    ledger.safety.set_control(
        Control.OPERATOR, wanted is not TradingState.ACTIVE, wanted.value, now,
        detail={"why": reason},
    )  # fmt: skip
    effective, cause, detail = effective_state(ledger.safety.flags(now))
    console.print(f"operator state {wanted.value}; effective {effective.value}" + (
        f" ({cause.value}: {detail})" if cause else ""
    ))  # fmt: skip


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(min=1, help="worker processes")] = 1,
) -> None:
    """Serve the safety/health API (needs TRADEFLOW_KILL_SWITCH_SECRET, 32 bytes or more)."""
    import uvicorn

    from core.errors import ConfigurationError
    from serving.app import SERVER_OPTIONS, create_app

    _settings()
    try:
        create_app()  # refuses at once, in one line, what every worker would refuse
    except ConfigurationError as exc:
        console.print(f"[red]refusing to start:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    from infra.logging import uvicorn_log_config

    uvicorn.run(
        "serving.app:create_app", factory=True, host=host, port=port, workers=workers,
        log_config=uvicorn_log_config(),  # each worker process sets up our logging
        **SERVER_OPTIONS,
    )  # fmt: skip


@app.command()
def migrate() -> None:
    """Upgrade the ledger schema to the newest migration."""
    from core.errors import TradeflowError
    from infra.ledger.ledger import open_ledger  # the CLI may reach any layer

    settings = _settings()
    try:
        open_ledger(settings.ledger_url)  # migrates; the driver's errors become ours
    except TradeflowError as exc:
        console.print(
            f"[red]error:[/] {type(exc).__name__}: {exc}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(1) from None
    console.print(f"ledger at {settings.ledger_url} is up to date", soft_wrap=True)


# Registered from their modules: their options and help live with them.
app.command("backtest-diff")(backtest_diff_command)
app.command("walk-forward")(walk_forward_command)
app.command("evaluate")(evaluate_command)
app.command("decision")(decision_command)
app.command("replay-decision")(replay_decision_command)
app.add_typer(token_app, name="token")


def main() -> None:
    _configure_logging()
    app()


def _configure_logging() -> None:
    """JSON (or console) log lines with correlation ids and no secrets, before any command
    runs. Settings that are refused are left to the command, which says why, one line each."""
    from infra.logging import configure_logging
    from infra.settings import SettingsError, get_settings

    try:
        configure_logging(get_settings())
    except SettingsError:
        return


if __name__ == "__main__":
    main()
