from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from infra.settings import Settings


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
        "TRADEFLOW_MAX_DAILY_LOSS=123.45\nTRADEFLOW_KILL_SWITCH_SECRET=zq9-topsecret\n"
    )
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert s.max_daily_loss == Decimal("123.45")
    assert s.kill_switch_secret is not None
    assert "zq9-topsecret" not in repr(s)  # secrets never print
    assert s.kill_switch_secret.get_secret_value() == "zq9-topsecret"


def test_settings_when_defaults_then_sqlite_and_mlflow_under_var(tmp_path: Path) -> None:
    s = Settings(var_dir=tmp_path, kill_switch_secret=None)
    assert s.ledger_url == f"sqlite:///{tmp_path / 'ledger.db'}"
    assert s.tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert s.kill_switch_secret is None


def test_settings_when_value_invalid_then_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEFLOW_SOURCE", "carrier-pigeon")
    with pytest.raises(ValidationError, match="source"):
        Settings()
