"""What a backtest run trades under: its own account, its symbols as the whitelist."""

from __future__ import annotations

import pytest

from core.errors import ConfigurationError
from services.backtest.compose import backtest_settings


def test_backtest_settings_when_built_then_own_account_and_symbols_as_whitelist(
    app_settings,  # type: ignore[no-untyped-def]
) -> None:
    base = app_settings()
    chosen = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
    settings = backtest_settings(base, chosen, "5m", "r1")
    assert settings.account == "bt-r1" != base.account
    assert settings.symbols == settings.whitelist == chosen
    assert settings.timeframe == "5m"
    assert settings.max_order_notional == base.max_order_notional


def test_backtest_settings_when_reference_symbol_left_out_then_refused_with_the_fix(
    app_settings,  # type: ignore[no-untyped-def]
) -> None:
    with pytest.raises(ConfigurationError, match=r"--symbols BTC/USDT,ETH/USDT"):
        backtest_settings(app_settings(), ("ETH/USDT",), None, "r1")
