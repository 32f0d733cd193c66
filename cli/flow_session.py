"""How every command runs a flow: under our Prefect server, with its own display on screen and
stderr (MLflow's notices, which would tear a progress bar) kept in var/logs/<name>-stderr.log;
a refusal or failure is one line and exit code 1."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import typer
from rich.console import Console

from cli import prefect_server
from cli.prefect_server import PrefectServerError
from core.errors import TradeflowError


@contextlib.contextmanager
def flow_session(
    console: Console, var_dir: Path, name: str, display: AbstractContextManager[object]
) -> Iterator[None]:
    captured = io.StringIO()
    try:
        # Looked up at call time: a test swaps the server for a stand-in.
        server = prefect_server.managed_prefect_server(var_dir)
        with server, display, contextlib.redirect_stderr(captured):
            yield
    except TradeflowError as exc:
        fail(console, exc)
    finally:
        log_path = var_dir / "logs" / f"{name}-stderr.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(captured.getvalue())


def fail(console: Console, exc: TradeflowError) -> None:
    """One line for the error, where to look, and exit code 1."""
    console.print(f"[red]error:[/] {type(exc).__name__}: {exc}", highlight=False, soft_wrap=True)
    if not isinstance(exc, PrefectServerError):  # else no run was recorded
        console.print("the failed run and its logs are in the Prefect UI (`make ui`)")
    raise typer.Exit(1) from None
