from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from core.features.schema import DatasetValidationError, validate_training_rows
from core.models.dataset import LabelSpec, training_rows


@pytest.fixture(scope="module")
def rows(btc_1h: pd.DataFrame) -> pd.DataFrame:
    return training_rows(
        {"BTC/USDT": btc_1h.head(800)}, "BTC/USDT", LabelSpec(timedelta(hours=4), 0.003)
    )


def test_training_rows_when_real_candles_then_pass_the_schema(rows: pd.DataFrame) -> None:
    assert len(rows) > 300
    assert set(rows["label"].unique()) == {0.0, 1.0}


def test_schema_when_feature_is_infinite_then_report_names_column_and_rows(
    rows: pd.DataFrame,
) -> None:
    bad = rows.copy()
    bad.iloc[[3, 7], bad.columns.get_loc("rsi_14")] = np.inf
    with pytest.raises(DatasetValidationError, match="rsi_14") as err:
        validate_training_rows(bad)
    assert err.value.check == "finite"
    assert err.value.count == 2
    assert err.value.first_rows[0] == str(bad.index[3])


def test_schema_when_label_not_binary_then_rejected(rows: pd.DataFrame) -> None:
    bad = rows.copy()
    bad.iloc[0, bad.columns.get_loc("label")] = 0.5
    with pytest.raises(DatasetValidationError, match="label"):
        validate_training_rows(bad)


def test_schema_when_unknown_column_then_rejected(rows: pd.DataFrame) -> None:
    with pytest.raises(DatasetValidationError):
        validate_training_rows(rows.assign(future_close=1.0))
