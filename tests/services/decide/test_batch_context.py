"""A sequence member reads the rows before each one: the decision flow's model call hands the
model `context` rows of each symbol's past, also across chunks of a long backtest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.features.registry import FEATURE_NAMES
from services.decide import batch
from services.decide.batch import predict_at_times

TIMES = pd.date_range("2024-03-01", periods=40, freq="1h", tz="UTC")


class LookBack:
    """P depends on the row 3 rows earlier in the frame it is given (like a window of 4)."""

    name, version, feature_set_version = "lookback", "1", "fs"
    tradeable, context = True, 3
    quality: dict[str, float] = {}  # noqa: RUF012

    def __init__(self) -> None:
        self.frames: list[pd.DataFrame] = []

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Per symbol (the `symbol` index level when several come in one frame), as the
        ensemble's sequence members window each symbol's own rows."""
        self.frames.append(features)
        x = features[FEATURE_NAMES[0]]
        if isinstance(features.index, pd.MultiIndex):
            return np.concatenate(
                [self._one(part.to_numpy()) for _, part in x.groupby(level="symbol", sort=False)]
            )
        return self._one(x.to_numpy())

    @staticmethod
    def _one(x: np.ndarray) -> np.ndarray:
        earlier = np.concatenate([np.full(3, x[0]), x[:-3]])
        return 1 / (1 + np.exp(-(earlier / 40.0)))

    def edge(self, p: np.ndarray) -> np.ndarray:
        return p - 0.5


@pytest.fixture
def features() -> dict[str, pd.DataFrame]:
    frame = pd.DataFrame(
        {name: np.arange(len(TIMES), dtype=float) for name in FEATURE_NAMES}, index=TIMES
    )
    return {"BTC/USDT": frame, "ETH/USDT": frame * 2}


def test_predict_when_deciding_the_last_rows_then_the_model_sees_context_rows_before(
    features: dict[str, pd.DataFrame],
) -> None:
    model = LookBack()
    out = predict_at_times(model, features, TIMES[-2:])
    [frame] = model.frames
    assert len(frame) == 2 * (2 + 3)  # two symbols, two decided rows and three before each
    assert list(out["BTC/USDT"].index) == list(TIMES[-2:])
    # The row 3 earlier was really there: 37 and 38 for the decided rows 39 and 40 (0-based).
    expected = 1 / (1 + np.exp(-np.array([35.0, 36.0]) / 40.0))
    np.testing.assert_allclose(out["BTC/USDT"].to_numpy(), expected)


def test_predict_when_chunked_then_same_as_one_call(
    features: dict[str, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = predict_at_times(LookBack(), features, TIMES)
    monkeypatch.setattr(batch, "_PREDICT_CHUNK", 7)  # chunks overlap by the context
    chunked = predict_at_times(LookBack(), features, TIMES)
    for symbol in features:
        assert list(whole[symbol].index) == list(chunked[symbol].index)
        np.testing.assert_array_equal(whole[symbol].to_numpy(), chunked[symbol].to_numpy())


def test_predict_when_few_rows_with_context_exceed_a_chunk_then_one_call_keeps_the_context(
    features: dict[str, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Four rows wanted (one call), ten with their context: a chunk of six would have cut ETH's
    # context rows off its decided ones.
    whole = predict_at_times(LookBack(), features, TIMES[-2:])
    monkeypatch.setattr(batch, "_PREDICT_CHUNK", 6)
    model = LookBack()
    short = predict_at_times(model, features, TIMES[-2:])
    assert len(model.frames) == 1
    for symbol in features:
        np.testing.assert_array_equal(whole[symbol].to_numpy(), short[symbol].to_numpy())


def test_predict_when_columns_reordered_or_times_in_another_unit_then_same_probabilities(
    features: dict[str, pd.DataFrame],
) -> None:
    # The model gets FEATURE_NAMES in their order whatever the frame's, and the wanted times
    # match whatever the indexes' unit (a frame read from a file may hold milliseconds).
    expected = predict_at_times(LookBack(), features, TIMES[-2:])
    shuffled = {
        s: f.loc[:, list(reversed(FEATURE_NAMES))].assign(extra=1.0).set_axis(f.index.as_unit("ms"))
        for s, f in features.items()
    }
    model = LookBack()
    out = predict_at_times(model, shuffled, TIMES[-2:].as_unit("s"))
    assert list(model.frames[0].columns) == list(FEATURE_NAMES)
    for symbol in features:
        assert list(out[symbol].index) == list(TIMES[-2:])
        np.testing.assert_array_equal(out[symbol].to_numpy(), expected[symbol].to_numpy())


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_nanoseconds_when_times_in_any_unit_or_a_plain_index_then_epoch_nanoseconds(
    unit: str,
) -> None:
    # A nanosecond DatetimeIndex is read as it is; any other unit, or an Index of Timestamps,
    # is converted.
    times = TIMES[-3:].as_unit(unit)
    for given in (times, pd.Index(list(times), dtype=object)):
        assert batch._nanoseconds(given).tolist() == TIMES[-3:].asi8.tolist()
