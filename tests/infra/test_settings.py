from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from infra.settings import Settings, SettingsError, load_settings


def test_settings_when_lists_given_comma_separated_then_split(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRADEFLOW_SYMBOLS", "BTC/USDT, ETH/USDT,SOL/USDT")
    monkeypatch.setenv("TRADEFLOW_WHITELIST", "BTC/USDT")
    s = Settings()
    assert s.symbols == ("BTC/USDT", "ETH/USDT", "SOL/USDT")
    assert s.whitelist == ("BTC/USDT",)


def test_settings_when_env_file_present_then_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "TRADEFLOW_MAX_DAILY_LOSS=123.45\nTRADEFLOW_KILL_SWITCH_SECRET=zq9-topsecret-0123456789abcdef0123456789\n"
    )
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert s.max_daily_loss == Decimal("123.45")
    assert s.kill_switch_secret is not None
    assert "zq9-topsecret-0123456789abcdef0123456789" not in repr(s)  # secrets never print
    assert s.kill_switch_secret.get_secret_value() == "zq9-topsecret-0123456789abcdef0123456789"


def test_settings_when_defaults_then_sqlite_and_mlflow_under_var(tmp_path: Path) -> None:
    s = Settings(var_dir=tmp_path, kill_switch_secret=None)
    assert s.ledger_url == f"sqlite:///{tmp_path / 'ledger.db'}"
    assert s.tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert s.kill_switch_secret is None


def test_settings_when_value_invalid_then_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEFLOW_SOURCE", "carrier-pigeon")
    with pytest.raises(ValidationError, match="source"):
        Settings()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "TRADEFLOW_ORDER_NOTIONAL",
            "-5",
            "TRADEFLOW_ORDER_NOTIONAL=-5: Input should be greater than 0",
        ),
        (
            "TRADEFLOW_MAX_DAILY_LOSS",
            "0",
            "TRADEFLOW_MAX_DAILY_LOSS=0: Input should be greater than 0",
        ),
        ("TRADEFLOW_FEE_RATE", "0.5", "TRADEFLOW_FEE_RATE=0.5: Input should be less than 0.1"),
        ("TRADEFLOW_SLIPPAGE_BPS", "-1", "TRADEFLOW_SLIPPAGE_BPS=-1: Input should be greater than"),
        (
            "TRADEFLOW_MAX_ORDER_PCT_EQUITY",
            "1.5",
            "TRADEFLOW_MAX_ORDER_PCT_EQUITY=1.5: Input should",
        ),
        ("TRADEFLOW_TIMEFRAME", "1x", "TRADEFLOW_TIMEFRAME=1x: Value error, unknown timeframe"),
        (
            "TRADEFLOW_SYMBOLS",
            "BTCUSDT",
            "TRADEFLOW_SYMBOLS=BTCUSDT: Value error, symbols are BASE/QUOTE",
        ),
        (
            "TRADEFLOW_KILL_SWITCH_SECRET",
            "   ",
            "TRADEFLOW_KILL_SWITCH_SECRET=***: Value error, must be at least 32 bytes",
        ),
        (
            "TRADEFLOW_KILL_SWITCH_SECRET",
            "short",
            "TRADEFLOW_KILL_SWITCH_SECRET=***: Value error, must be",
        ),
    ],
)
def test_load_settings_when_value_out_of_range_then_one_line_names_variable_value_and_rule(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    [line] = str(err.value).splitlines()
    assert line.replace("Value error, ", "").startswith(message.replace("Value error, ", ""))
    assert "short" not in line  # a secret is never echoed


def test_load_settings_when_unknown_tradeflow_variable_then_refused_naming_the_nearest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRADEFLOW_SYMBOL", "SOL/USDT")  # a typo for TRADEFLOW_SYMBOLS
    monkeypatch.setenv("TRADEFLOW_SHARED_DATA", "/data")  # the tests' own variable: fine
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert str(err.value) == "TRADEFLOW_SYMBOL: unknown setting (did you mean TRADEFLOW_SYMBOLS?)"


def test_load_settings_when_several_problems_then_one_line_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRADEFLOW_ORDER_NOTIONAL", "-1")
    monkeypatch.setenv("TRADEFLOW_FEE_RATE", "2")
    monkeypatch.setenv("TRADEFLOW_MAX_LEVRAGE", "3")
    with pytest.raises(SettingsError) as err:
        load_settings()
    lines = str(err.value).splitlines()
    assert [line.split(":")[0].split("=")[0] for line in lines] == [
        "TRADEFLOW_MAX_LEVRAGE",
        "TRADEFLOW_ORDER_NOTIONAL",
        "TRADEFLOW_FEE_RATE",
    ]


def test_load_settings_when_symbols_mix_quote_currencies_then_refused() -> None:
    with pytest.raises(SettingsError, match="one quote currency"):
        load_settings(symbols=("BTC/USDT", "ETH/BTC"))


def test_load_settings_when_order_notional_above_its_cap_then_refused() -> None:
    with pytest.raises(SettingsError, match="every BUY would be refused"):
        load_settings(order_notional=Decimal(2000), max_order_notional=Decimal(1500))


def test_load_settings_when_env_file_has_an_unknown_key_then_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("TRADEFLOW_MAX_DAILY_LOS=5\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError, match="TRADEFLOW_MAX_DAILY_LOS"):
        load_settings()


def test_risk_limits_when_every_limit_set_then_the_gate_gets_each_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services import bootstrap

    values = {
        "MAX_QUOTE_EXPOSURE": "4000",
        "MAX_ORDER_PCT_EQUITY": "0.1",
        "MAX_POSITION_PCT_EQUITY": "0.2",
        "MAX_QUOTE_PCT_EQUITY": "0.3",
        "MAX_TOTAL_PCT_EQUITY": "0.4",
        "MAX_DAILY_LOSS_PCT": "0.02",
        "MAX_LEVERAGE": "2",
        "MAX_OPEN_ORDERS": "7",
        "MAX_PRICE_DEVIATION_PCT": "0.01",
    }
    for name, value in values.items():
        monkeypatch.setenv(f"TRADEFLOW_{name}", value)
    limits = bootstrap.risk_limits(load_settings())
    for name, value in values.items():
        assert str(getattr(limits, name.lower())) == value
    # File data: exchange rules from the documented table (Binance, as ccxt records it).
    assert limits.rules_for("ETH/USDT").amount_step == Decimal("0.0001")
    assert limits.rules_for("BTC/USDT").min_notional == Decimal(5)


@pytest.mark.parametrize(
    ("weights", "named"),
    [
        ('{"trend-up": {"model": 0.5}}', "trend-up"),  # a misspelt regime
        ('{"range": {"modle": 0.5}}', "range.modle"),  # a misspelt input
    ],
)
def test_load_settings_when_regime_weights_name_unknown_regime_or_input_then_refused(
    monkeypatch: pytest.MonkeyPatch, weights: str, named: str
) -> None:
    monkeypatch.setenv("TRADEFLOW_CONSENSUS_REGIME_WEIGHTS", weights)
    with pytest.raises(SettingsError, match=named.replace(".", r"\.")):
        load_settings()


def test_load_settings_when_regime_weights_known_then_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "TRADEFLOW_CONSENSUS_REGIME_WEIGHTS",
        '{"trend_down_high_vol": {"model": 0.4, "bull": 0.1, "bear": 0.5}}',
    )
    assert load_settings().consensus_regime_weights == {
        "trend_down_high_vol": {"model": 0.4, "bull": 0.1, "bear": 0.5}
    }


def test_load_settings_when_live_replay_cache_strict_then_refused() -> None:
    """Strict answers only from a decision's own recorded calls: a live run has none."""
    with pytest.raises(
        SettingsError, match=r"TRADEFLOW_LLM_REPLAY_CACHE=strict: .*'off' or 'read'"
    ):
        load_settings(llm_replay_cache="strict")
