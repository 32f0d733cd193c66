from __future__ import annotations

import warnings
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


# Secrets as files (/run/secrets in a container, TRADEFLOW_SECRETS_DIR elsewhere).
KILL_SWITCH_SECRET = "fs-secret-0123456789abcdef0123456789abcdef"


@pytest.fixture
def secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty secrets directory, named by TRADEFLOW_SECRETS_DIR."""
    directory = tmp_path / "secrets"
    directory.mkdir()
    monkeypatch.setenv("TRADEFLOW_SECRETS_DIR", str(directory))
    return directory


@pytest.mark.parametrize("name", ["tradeflow_kill_switch_secret", "TRADEFLOW_KILL_SWITCH_SECRET"])
def test_load_settings_when_secret_file_named_after_the_variable_then_read(
    secrets: Path, name: str
) -> None:
    (secrets / name).write_text(KILL_SWITCH_SECRET + "\n")  # as editors and echo leave it
    (secrets / "tradeflow_database_url").write_text("postgresql+psycopg://u:pw@db:5432/ledger")
    s = load_settings()
    assert s.kill_switch_secret is not None
    assert s.kill_switch_secret.get_secret_value() == KILL_SWITCH_SECRET
    assert s.ledger_url == "postgresql+psycopg://u:pw@db:5432/ledger"


def test_load_settings_when_variable_and_secret_file_both_given_then_the_variable_wins(
    secrets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (secrets / "tradeflow_database_url").write_text("postgresql+psycopg://u:pw@db:5432/ledger")
    monkeypatch.setenv("TRADEFLOW_DATABASE_URL", "sqlite:///elsewhere.db")
    assert load_settings().ledger_url == "sqlite:///elsewhere.db"


def test_load_settings_when_no_secrets_dir_named_then_run_secrets_read_where_it_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import infra.settings

    monkeypatch.delenv("TRADEFLOW_SECRETS_DIR", raising=False)
    monkeypatch.setattr(infra.settings, "DEFAULT_SECRETS_DIR", tmp_path)
    (tmp_path / "tradeflow_kill_switch_secret").write_text(KILL_SWITCH_SECRET)
    assert load_settings().kill_switch_secret is not None
    monkeypatch.setattr(infra.settings, "DEFAULT_SECRETS_DIR", tmp_path / "absent")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # outside a container: no directory, and no warning
        assert load_settings().kill_switch_secret is None


def test_load_settings_when_secrets_dir_is_not_a_directory_then_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADEFLOW_SECRETS_DIR", str(tmp_path / "secrest"))
    monkeypatch.setenv("TRADEFLOW_SYMBOL", "SOL/USDT")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert str(err.value).splitlines() == [
        "TRADEFLOW_SYMBOL: unknown setting (did you mean TRADEFLOW_SYMBOLS?)",
        f"TRADEFLOW_SECRETS_DIR={tmp_path / 'secrest'}: not a directory",
    ]


def test_load_settings_when_secret_file_names_no_setting_then_refused_naming_the_nearest(
    secrets: Path,
) -> None:
    (secrets / "tradeflow_kill_swich_secret").write_text(KILL_SWITCH_SECRET)
    (secrets / "postgres_password").write_text("another program's")  # not ours: ignored
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert str(err.value) == (
        f"{secrets / 'tradeflow_kill_swich_secret'}: unknown setting "
        "(did you mean tradeflow_kill_switch_secret?)"
    )


def test_load_settings_when_secret_file_value_invalid_then_refused_without_echoing_it(
    secrets: Path,
) -> None:
    (secrets / "tradeflow_redis_url").write_text("http://:hunter2-password@redis:6379/0")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert str(err.value).startswith("TRADEFLOW_REDIS_URL=***: String should match pattern")
    assert "hunter2" not in str(err.value)
