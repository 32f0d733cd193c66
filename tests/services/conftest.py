"""Fixtures the decision services' tests share."""

from __future__ import annotations

import pandas as pd
import pytest

from infra.ledger.ledger import Ledger
from tests.services.decide.fakes import ROWS, SYMBOLS, D


@pytest.fixture
def stored(ledger: Ledger, btc_1h: pd.DataFrame, eth_1h: pd.DataFrame) -> Ledger:
    """A ledger with the first ROWS real 1h candles of BTC and ETH and the paper account."""
    ledger.accounts.ensure("paper", D(10000), btc_1h["open_time"].iloc[0].to_pydatetime())
    for symbol, frame in zip(SYMBOLS, (btc_1h, eth_1h), strict=True):
        ledger.candles.upsert("binance", symbol, "1h", frame.head(ROWS))
    return ledger
