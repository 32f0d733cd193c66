from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from core.models.dataset import LabelSpec, training_rows

HORIZON = timedelta(hours=4)
COST = 0.003


@pytest.fixture(scope="session")
def rows(btc_1h: pd.DataFrame, eth_1h: pd.DataFrame) -> pd.DataFrame:
    """Real labelled rows: BTC and ETH 1h, Jan-Apr 2024."""
    return training_rows(
        {"BTC/USDT": btc_1h.head(2500), "ETH/USDT": eth_1h.head(2500)},
        "BTC/USDT",
        LabelSpec(HORIZON, COST),
    )
