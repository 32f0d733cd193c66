"""`tradeflow evaluate` on a small regime folder of real candle files: the table, the report
and the MLflow run."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from cli.evaluate import EXPERIMENT, evaluate_command

runner = CliRunner()


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("evaluate")(evaluate_command)

    @app.callback()
    def main() -> None:
        """tradeflow, as cli.main registers the command."""

    return app


@pytest.fixture
def regime(tmp_path: Path, shared_data: Path) -> Path:
    folder = tmp_path / "mini-2024"
    folder.mkdir()
    source = shared_data / "ohlcv" / "genetrader-binance-spot-2024"
    for name in ("BTC_USDT-1h.feather", "ETH_USDT-1h.feather"):
        pd.read_feather(source / name).head(1800).to_feather(folder / name)
    return folder


def test_evaluate_when_run_then_prints_table_writes_report_and_logs_run(
    regime: Path,
    app_settings,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    result = runner.invoke(
        cli(), ["evaluate", "--regime", str(regime), "--members", "xgboost", "--folds", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "mini-2024" in result.output
    assert "baseline AUC" in result.output
    assert "B&H net" in result.output
    assert "goal:" in result.output
    reports = list((tmp_path / "var" / "reports" / "evaluation").glob("*.html"))
    assert len(reports) == 1
    html = reports[0].read_text()
    assert "calibration-0" in html
    assert "equity-0" in html
    runs = mlflow.search_runs(experiment_names=[EXPERIMENT])
    assert len(runs) == 1
    assert "metrics.mini-2024.overall.model_auc" in runs.columns
    assert "metrics.mini-2024.overall.buy_and_hold_net_return" in runs.columns


def test_evaluate_when_folder_has_no_candles_then_exit_2(
    tmp_path: Path,
    app_settings,  # type: ignore[no-untyped-def]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(cli(), ["evaluate", "--regime", str(empty), "--members", "xgboost"])
    assert result.exit_code == 2
    assert "no 1h candle files" in result.output


@pytest.mark.parametrize(
    ("symbols", "said"),
    [
        ("BTCUSDT,ETH/USDT", "no 1h candle file for ['BTCUSDT']"),
        ("ETH/USDT", "BTC/USDT, the reference symbol of the cross-asset features"),
    ],
)
def test_evaluate_when_symbols_have_no_file_or_lack_the_reference_then_exit_2_naming_them(
    regime: Path,
    app_settings,
    symbols: str,
    said: str,  # type: ignore[no-untyped-def]
) -> None:
    result = runner.invoke(
        cli(), ["evaluate", "--regime", str(regime), "--symbols", symbols], terminal_width=200
    )
    assert result.exit_code == 2
    assert said in result.output
    assert "Traceback" not in result.output
