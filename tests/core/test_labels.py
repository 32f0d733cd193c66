from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.labels import forward_return_label


def test_label_when_horizon_h_then_compares_close_t_to_close_t_plus_h(btc_1h: pd.DataFrame) -> None:
    c = btc_1h.head(200)
    label = forward_return_label(c, horizon=4, fee_threshold=0.002)
    close = c["close"].to_numpy()
    expected = (np.log(close[4:] / close[:-4]) > 0.002).astype(float)
    np.testing.assert_array_equal(label.to_numpy()[:-4], expected)
    assert label.iloc[-4:].isna().all()


def test_label_when_threshold_raised_then_fewer_positives(btc_1h: pd.DataFrame) -> None:
    low = forward_return_label(btc_1h, 4, 0.0).mean()
    high = forward_return_label(btc_1h, 4, 0.01).mean()
    assert high < low


def test_label_when_horizon_zero_then_raises(btc_1h: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="horizon"):
        forward_return_label(btc_1h, 0, 0.0)
