"""Fixtures of the ledger tests."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from core.decision import Decision
from tests.services.backtest.test_identity import CANDLES, FEATURE_WINDOW, run_backtest


@pytest.fixture(scope="session")
def decisions(btc_1h: pd.DataFrame, eth_1h: pd.DataFrame) -> list[Decision]:
    rows = FEATURE_WINDOW + CANDLES
    scratch = run_backtest({"BTC/USDT": btc_1h.head(rows), "ETH/USDT": eth_1h.head(rows)})
    made = [d for d, _ in scratch.records("paper").decisions]
    # A decision with an order book and provenance: the JSON columns that are mostly NULL.
    first = made[0]
    features = {**first.input.features, "book_spread_bps": 1.5, "book_imbalance_top5": -0.25}
    made[0] = replace(
        first,
        input=replace(first.input, features=features),
        provenance={"panel": "offline", "risk_state": {"cash": "10000"}},
    )
    return made
