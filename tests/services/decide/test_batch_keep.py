"""A batch that keeps only the features its panel reads (prepare_batch's `keep`) decides the
same candles with the same probabilities as one that keeps them all."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from core.agents.brief import REGIME_FEATURES
from core.agents.panel import RulePanel
from core.agents.rules import RULE_FEATURES, BearAgent, BullAgent
from infra.ledger.memory import MemoryLedger
from services.decide.batch import FEATURE_WINDOW, prepare_batch
from tests.services.backtest.test_identity import RsiModel
from tests.services.decide.fakes import BUYERS, SYMBOLS, config

CANDLES = 40


def test_prepare_batch_when_keeping_the_panels_features_then_same_rows_ready_and_same_p(
    btc_1h: pd.DataFrame, eth_1h: pd.DataFrame
) -> None:
    scratch = MemoryLedger()
    for symbol, frame in zip(SYMBOLS, (btc_1h, eth_1h), strict=True):
        # Fewer candles than the warm-up: the first decided rows are not all complete.
        scratch.candles.upsert("binance", symbol, "1h", frame.head(FEATURE_WINDOW // 2 + CANDLES))
    reads = RulePanel((BullAgent(), BearAgent())).features_read
    assert reads is not None
    keep = reads | set(REGIME_FEATURES)
    whole = prepare_batch(scratch, RsiModel(), config(), CANDLES + FEATURE_WINDOW)
    kept = prepare_batch(scratch, RsiModel(), config(), CANDLES + FEATURE_WINDOW, keep=keep)

    assert set(kept.features["BTC/USDT"].columns) == set(RULE_FEATURES) | set(REGIME_FEATURES)
    for symbol in SYMBOLS:
        ready = [whole.read_at(symbol, t) is not None for t in whole.times]
        assert [kept.read_at(symbol, t) is not None for t in kept.times] == ready
        assert not all(ready)
        assert any(ready)
        pd.testing.assert_series_equal(kept.probabilities[symbol], whole.probabilities[symbol])
        for t in whole.times:
            read, cut = whole.read_at(symbol, t), kept.read_at(symbol, t)
            assert (read is None) == (cut is None)
            if read is not None and cut is not None:
                assert all(cut[0][n] == read[0][n] for n in kept.features[symbol].columns)
                assert np.isclose(cut[2], read[2], equal_nan=True)


def test_features_read_when_an_agent_does_not_say_then_none() -> None:
    assert BUYERS.features_read is None
    both = RulePanel((BullAgent(), BearAgent())).features_read
    assert both is not None
    assert set(RULE_FEATURES) <= both


class _FailingModel(RsiModel):
    def predict(self, features: pd.DataFrame) -> np.ndarray:
        raise RuntimeError("the model failed")


def test_prepare_batch_when_the_model_fails_then_raised_and_no_features_thread_left(
    btc_1h: pd.DataFrame, eth_1h: pd.DataFrame
) -> None:
    # The next symbol's features are built in a thread: a failure must not leave it running.
    scratch = MemoryLedger()
    for symbol, frame in zip(SYMBOLS, (btc_1h, eth_1h), strict=True):
        scratch.candles.upsert("binance", symbol, "1h", frame.head(FEATURE_WINDOW + CANDLES))
    keep = set(RULE_FEATURES) | set(REGIME_FEATURES)
    with pytest.raises(RuntimeError, match="the model failed"):
        prepare_batch(scratch, _FailingModel(), config(), CANDLES + FEATURE_WINDOW, keep=keep)
    assert not [t for t in threading.enumerate() if t.name.startswith("features")]
