"""The served ensemble: rows of several symbols in one frame, a sequence member's context,
and clear refusals of bad feature rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from core.features.registry import FEATURE_NAMES
from core.models.ensemble import FeatureRowsError, StackedEnsemble, segments_of, with_context
from core.models.members import SequenceNet
from core.models.sequence import SequenceConfig
from core.models.training import EnsembleConfig, train_ensemble

from .conftest import COST, HORIZON

TINY = SequenceConfig(window=4, hidden=8, heads=2, epochs=2, patience=1, max_train_windows=2000)


@pytest.fixture(scope="module")
def with_lstm(rows: pd.DataFrame) -> StackedEnsemble:
    torch.set_num_threads(1)
    rng = np.random.default_rng(8)
    hinted = rows.copy()  # a feature that knows the label: the LSTM must earn a weight
    y = hinted["label"].to_numpy()
    hinted[FEATURE_NAMES[0]] = np.where(rng.random(len(y)) < 0.8, y, 1 - y)
    cfg = EnsembleConfig(horizon=HORIZON, cost=COST, sequence=TINY, folds=2, seed=2)
    return train_ensemble(hinted, FEATURE_NAMES, cfg, [SequenceNet("lstm", TINY)]).model


def test_segments_when_symbol_level_column_or_none_then_codes() -> None:
    idx = pd.MultiIndex.from_arrays([["a", "a", "b"], [1, 2, 1]], names=["symbol", "t"])
    np.testing.assert_array_equal(segments_of(pd.DataFrame(index=idx)), [0, 0, 1])
    np.testing.assert_array_equal(segments_of(pd.DataFrame({"symbol": ["x", "y", "x"]})), [0, 1, 0])
    np.testing.assert_array_equal(segments_of(pd.DataFrame({"v": [1, 2]})), [0, 0])


def test_predict_when_given_only_context_rows_before_then_same_as_full_history(
    with_lstm: StackedEnsemble, rows: pd.DataFrame
) -> None:
    assert with_lstm.context == TINY.window - 1
    assert with_lstm.weights["lstm"] > 0
    btc = rows[rows["symbol"] == "BTC/USDT"]
    full = with_lstm.predict_proba(btc)[-5:]
    short = with_lstm.predict_proba(btc.tail(5 + with_lstm.context))[-5:]
    np.testing.assert_allclose(short, full, rtol=1e-6)


def test_predict_when_a_feature_is_missing_or_not_finite_then_named(
    with_lstm: StackedEnsemble, rows: pd.DataFrame
) -> None:
    frame = rows.tail(3).drop(columns=[FEATURE_NAMES[5]])
    with pytest.raises(FeatureRowsError, match=FEATURE_NAMES[5]):
        with_lstm.predict_proba(frame)
    bad = rows.tail(3).copy()
    bad.loc[bad.index[0], FEATURE_NAMES[2]] = np.inf
    with pytest.raises(FeatureRowsError, match=FEATURE_NAMES[2]):
        with_lstm.predict_proba(bad)


def test_with_context_when_symbols_interleave_then_each_gets_its_own_rows_before() -> None:
    times = pd.date_range("2024-01-01", periods=5, freq="1h", tz="UTC")
    frame = pd.DataFrame({"symbol": ["A", "B"] * 5, "v": range(10)}, index=times.repeat(2))
    scored, keep = with_context(frame, times[-1:], context=2)
    assert list(scored["v"]) == [4, 5, 6, 7, 8, 9]  # hours 2-4 of both symbols
    assert list(keep) == [False, False, False, False, True, True]
    alone, kept = with_context(frame, times[-1:], context=0)
    assert list(alone["v"]) == [8, 9]
    assert kept.all()
