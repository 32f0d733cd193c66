from __future__ import annotations

import shlex
from datetime import UTC, datetime

import pytest
import typer
from typer.testing import CliRunner

from cli.main import app
from core.safety.signing import verify

runner = CliRunner()


def set_or_unset(monkeypatch: pytest.MonkeyPatch, name: str, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv(name, raising=False)
    else:
        monkeypatch.setenv(name, value)


def test_sign_kill_switch_when_secret_set_then_prints_curl_with_valid_signature(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from infra.settings import get_settings

    monkeypatch.setenv("TRADEFLOW_KILL_SWITCH_SECRET", "cli-secret-0123456789abcdef0123456789")
    get_settings.cache_clear()
    result = runner.invoke(app, ["sign-kill-switch", "activate", "--reason", "halt all"])
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    words = shlex.split(result.output)
    assert words[:4] == ["curl", "-sS", "-X", "POST"]
    headers = dict(w.split(": ", 1) for w in words if w.startswith("X-Kill-Switch-"))
    ts = int(headers["X-Kill-Switch-Timestamp"])
    assert (
        verify(
            "cli-secret-0123456789abcdef0123456789",
            "activate",
            ts,
            headers["X-Kill-Switch-Signature"],
            datetime.now(tz=UTC),
            30,
        )
        is None
    )
    assert '{"action": "activate", "reason": "halt all"}' in words


def test_sign_kill_switch_when_no_secret_then_exit_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from infra.settings import get_settings

    monkeypatch.delenv("TRADEFLOW_KILL_SWITCH_SECRET", raising=False)
    monkeypatch.chdir("/")  # no .env to pick one up from
    get_settings.cache_clear()
    result = runner.invoke(app, ["sign-kill-switch", "activate"])
    get_settings.cache_clear()
    assert result.exit_code == 2
    assert "TRADEFLOW_KILL_SWITCH_SECRET" in result.output


def test_trading_state_when_operator_sets_reducing_then_effective_state_and_transition_recorded(
    app_settings,  # type: ignore[no-untyped-def]
) -> None:
    from core.risk.state import Control
    from services import bootstrap

    result = runner.invoke(app, ["trading-state", "reducing", "--reason", "news risk"])
    assert result.exit_code == 0, result.output
    assert "effective reducing (operator" in result.output
    ledger = bootstrap.ledger(app_settings())
    back = runner.invoke(app, ["trading-state", "active"])
    assert "effective active" in back.output
    changes = [
        (e.step, e.detail["previous"], e.detail["cause"])
        for e in ledger.safety.events(Control.TRADING_STATE)
    ]
    assert changes == [("reducing", "active", "operator"), ("active", "reducing", "cleared")]
    assert runner.invoke(app, ["trading-state", "sideways"]).exit_code == 2


def test_run_when_settings_bad_then_one_line_each_and_exit_2_without_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from infra.settings import get_settings

    monkeypatch.setenv("TRADEFLOW_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("TRADEFLOW_ORDER_NOTIONAL", "-5")
    monkeypatch.setenv("TRADEFLOW_SYMBOL", "SOL/USDT")
    get_settings.cache_clear()
    result = runner.invoke(app, ["run"])
    get_settings.cache_clear()
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [
        "setting refused: TRADEFLOW_SYMBOL: unknown setting (did you mean TRADEFLOW_SYMBOLS?)",
        "setting refused: TRADEFLOW_ORDER_NOTIONAL=-5: Input should be greater than 0",
    ]
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("secret", "line"),
    [
        (None, "refusing to start: no kill-switch secret: set TRADEFLOW_KILL_SWITCH_SECRET"),
        ("   ", "setting refused: TRADEFLOW_KILL_SWITCH_SECRET=***: must be at least 32 bytes"),
        ("too-short", "setting refused: TRADEFLOW_KILL_SWITCH_SECRET=***: must be at least 32"),
    ],
)
def test_serve_when_secret_missing_or_weak_then_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path, secret: str | None, line: str
) -> None:  # type: ignore[no-untyped-def]
    from infra.settings import get_settings

    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("TRADEFLOW_VAR_DIR", str(tmp_path))
    set_or_unset(monkeypatch, "TRADEFLOW_KILL_SWITCH_SECRET", secret)
    get_settings.cache_clear()
    result = runner.invoke(app, ["serve"])
    get_settings.cache_clear()
    assert result.exit_code == 2
    [out] = [x for x in result.output.splitlines() if x.strip()]
    assert out.replace("Value error, ", "").startswith(line)


@pytest.mark.parametrize(
    ("database", "exit_code", "line"),
    [
        (None, 0, "ledger at sqlite:///"),
        ("postgresql+psycopg://postgres@127.0.0.1:1/nowhere", 1,
         "error: LedgerUnavailable: ledger database unavailable: connection failed"),
    ],
)  # fmt: skip
def test_migrate_when_database_reachable_or_not_then_up_to_date_or_one_line_exit_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path, database: str | None, exit_code: int, line: str
) -> None:  # type: ignore[no-untyped-def]
    from services import bootstrap

    monkeypatch.setenv("TRADEFLOW_VAR_DIR", str(tmp_path))
    set_or_unset(monkeypatch, "TRADEFLOW_DATABASE_URL", database)
    bootstrap.forget()
    result = runner.invoke(app, ["migrate"])
    bootstrap.forget()
    assert result.exit_code == exit_code, result.output
    [out] = [x for x in result.output.splitlines() if x.strip()]
    assert out.startswith(line)
    assert "Traceback" not in result.output


def test_backtest_when_a_date_is_not_a_date_then_one_line_and_exit_2(app_settings) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(app, ["backtest", "--from", "last tuesday", "--to", "2024-09-01"])
    assert result.exit_code == 2
    assert "--from 'last tuesday' is not a date" in result.output
    assert "Traceback" not in result.output


def test_backtest_when_options_given_then_the_flow_gets_each_by_name(
    app_settings,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    # Found by running it: the flow gained a `days` parameter and positional arguments shifted.
    import contextlib

    import flows.backtest
    from tasks.backtest import BacktestOutcome

    seen: dict[str, object] = {}

    def flow(**kwargs: object) -> BacktestOutcome:
        seen.update(kwargs)
        raise typer.Exit(0)

    monkeypatch.setattr(flows.backtest, "backtest", flow)
    monkeypatch.setattr(
        "cli.prefect_server.managed_prefect_server", lambda _: contextlib.nullcontext()
    )
    result = runner.invoke(app, [
        "backtest", "--from", "2024-06-01", "--to", "2024-07-01", "--symbols",
        "BTC/USDT,ETH/USDT", "--timeframe", "5m", "--model-version", "3",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert seen == {
        "start": datetime(2024, 6, 1, tzinfo=UTC),
        "end": datetime(2024, 7, 1, tzinfo=UTC),
        "symbols": ["BTC/USDT", "ETH/USDT"],
        "timeframe": "5m",
        "model_version": "3",
    }
