"""Torch sequence members: windows per segment, no lookahead, learning, early stop, pickling."""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from core.features.build import build_features
from core.features.registry import FEATURE_NAMES, MAX_LOOKBACK
from core.models import sequence
from core.models.sequence import (
    CLIP,
    SequenceClassifier,
    SequenceConfig,
    SequenceInputError,
    SequenceNotFitted,
    feature_moments,
    standardise,
    window_indices,
)

ROOT = Path(__file__).resolve().parents[3]
KINDS = ("lstm", "transformer")
LAG = 3  # the synthetic label is the sign of feature 0 this many rows earlier
# Small and quick to fit on one thread; a larger step than the default so ~15 epochs suffice.
SMALL = SequenceConfig(window=8, hidden=16, epochs=15, batch_size=64, learning_rate=1e-2)

Rows = tuple[np.ndarray, np.ndarray, np.ndarray]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def lagged_rows(n: int, seed: int, features: int = 5) -> Rows:
    """Two interleaved segments; label = feature 0 of the same segment LAG rows earlier > 0,
    so only a model that sees the past rows of the right segment can predict it."""
    rng = np.random.default_rng(seed)
    segments = np.tile([0, 1], n // 2)
    x = rng.normal(size=(len(segments), features)).astype(np.float32)
    y = np.zeros(len(segments), dtype=np.int64)
    for s in (0, 1):
        rows = np.flatnonzero(segments == s)
        y[rows[LAG:]] = x[rows[:-LAG], 0] > 0
    return x, y, segments


@pytest.fixture(scope="module")
def lagged() -> dict[str, Rows]:
    return {
        "train": lagged_rows(3000, 1),
        "validation": lagged_rows(600, 2),
        "test": lagged_rows(1000, 3),
    }


@pytest.fixture(scope="module")
def trained(one_thread: None, lagged: dict[str, Rows]) -> dict[str, SequenceClassifier]:
    return {
        kind: SequenceClassifier(kind, SMALL, 7).fit(*lagged["train"], lagged["validation"])
        for kind in KINDS
    }


@pytest.fixture(scope="module")
def quick_fit() -> Callable[..., SequenceClassifier]:
    """A 2-epoch fit on a few hundred lagged rows: for properties that need any trained model."""
    x, y, segments = lagged_rows(400, 11)

    def fit(kind: str, seed: int = 7, **overrides: float) -> SequenceClassifier:
        config = replace(SMALL, **{"epochs": 2, **overrides})
        return SequenceClassifier(kind, config, seed).fit(x, y, segments)

    return fit


# -- windows and standardisation ---------------------------------------------------------------


def test_window_indices_when_segments_interleaved_then_own_rows_up_to_row_left_padded() -> None:
    windows = window_indices(np.array([0, 1, 0, 1, 0, 0, 2]), 3)
    expected = [[0, 0, 0], [1, 1, 1], [0, 0, 2], [1, 1, 3], [0, 2, 4], [2, 4, 5], [6, 6, 6]]
    assert windows.tolist() == expected


def test_window_indices_when_no_rows_then_empty_matrix_of_window_columns() -> None:
    assert window_indices(np.array([], dtype=np.int64), 4).shape == (0, 4)


def test_window_indices_when_many_rows_then_no_index_beyond_its_row_or_segment() -> None:
    segments = np.random.default_rng(0).integers(0, 5, size=20_000)
    windows = window_indices(segments, 16)
    assert (windows <= np.arange(len(segments))[:, None]).all()
    assert (segments[windows] == segments[:, None]).all()
    assert (np.diff(windows, axis=1) >= 0).all()


def test_standardise_when_outliers_nan_inf_and_constant_column_then_clipped_finite() -> None:
    x = np.array([[1.0, 5.0, np.nan], [3.0, 5.0, np.inf], [1e9, 5.0, 2.0]] * 10, np.float32)
    mean, std = feature_moments(x)
    z = standardise(x, mean, std)
    assert std[1] == 1.0  # constant column: std 0 -> 1, so it standardises to 0
    assert mean[2] == 2.0  # non-finite values do not enter the moments
    assert np.isfinite(z).all()
    assert np.abs(z).max() <= CLIP
    assert (z[:, 1] == 0).all()
    assert z[0, 2] == 0.0
    assert z[1, 2] == 0.0


# -- determinism -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_fit_when_same_seed_then_identical_probabilities(
    kind: str, quick_fit: Callable[..., SequenceClassifier], lagged: dict[str, Rows]
) -> None:
    x, _, segments = lagged["test"]
    a = quick_fit(kind, seed=3).predict_proba(x, segments)
    b = quick_fit(kind, seed=3).predict_proba(x, segments)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("kind", KINDS)
def test_fit_when_different_seed_then_different_probabilities(
    kind: str, quick_fit: Callable[..., SequenceClassifier], lagged: dict[str, Rows]
) -> None:
    x, _, segments = lagged["test"]
    a = quick_fit(kind, seed=3).predict_proba(x, segments)
    b = quick_fit(kind, seed=4).predict_proba(x, segments)
    assert np.abs(a - b).max() > 1e-3


def test_fit_when_done_then_caller_rng_and_deterministic_setting_untouched(
    quick_fit: Callable[..., SequenceClassifier],
) -> None:
    torch.use_deterministic_algorithms(False)
    rng_before = torch.get_rng_state()
    quick_fit("lstm")
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert not torch.are_deterministic_algorithms_enabled()


# -- no lookahead, no leak between segments ----------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_predict_when_rows_after_t_changed_then_predictions_up_to_t_unchanged(
    kind: str, trained: dict[str, SequenceClassifier], lagged: dict[str, Rows]
) -> None:
    x, _, segments = lagged["test"]
    t = 500
    changed = x.copy()
    changed[t + 1 :] = np.random.default_rng(5).normal(3.0, 4.0, size=changed[t + 1 :].shape)
    changed[t + 1 :: 7, 0] = np.nan
    before = trained[kind].predict_proba(x, segments)
    after = trained[kind].predict_proba(changed, segments)
    assert np.array_equal(before[: t + 1], after[: t + 1])
    assert not np.allclose(before[t + 1 :], after[t + 1 :])  # the change was visible after t


@pytest.mark.parametrize("kind", KINDS)
def test_predict_when_other_segment_rows_changed_then_segment_predictions_unchanged(
    kind: str, trained: dict[str, SequenceClassifier], lagged: dict[str, Rows]
) -> None:
    x, _, segments = lagged["test"]
    other = segments == 1
    changed = x.copy()
    changed[other] = -changed[other] * 5.0
    before = trained[kind].predict_proba(x, segments)
    after = trained[kind].predict_proba(changed, segments)
    alone = trained[kind].predict_proba(x[~other], segments[~other])
    assert np.array_equal(before[~other], after[~other])
    np.testing.assert_allclose(alone, before[~other], rtol=0, atol=1e-6)
    assert not np.allclose(before[other], after[other])


# -- learning and early stopping ---------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_fit_when_label_is_sign_of_a_past_row_then_auc_well_above_chance(
    kind: str, trained: dict[str, SequenceClassifier], lagged: dict[str, Rows]
) -> None:
    x, y, segments = lagged["test"]
    probabilities = trained[kind].predict_proba(x, segments)
    assert probabilities.shape == (len(x), 2)
    assert probabilities.dtype == np.float64
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert roc_auc_score(y, probabilities[:, 1]) > 0.8


def _log_loss(labels: np.ndarray, p: np.ndarray) -> float:
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


@pytest.mark.parametrize("kind", KINDS)
def test_fit_when_validation_loss_rises_then_stops_early_and_restores_best_weights(
    kind: str,
) -> None:
    # Labels that are pure noise: a high learning rate overfits, validation loss rises.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 6)).astype(np.float32)
    y = rng.integers(0, 2, size=600)
    segments = np.zeros(600, dtype=np.int64)
    config = SequenceConfig(
        window=4, hidden=32, epochs=30, patience=2, batch_size=32, learning_rate=3e-2, dropout=0.0
    )
    model = SequenceClassifier(kind, config, 1)
    model.fit(x[:400], y[:400], segments[:400], (x[400:], y[400:], segments[400:]))
    losses = model.validation_losses
    assert 1 <= model.best_epoch <= config.epochs
    assert len(losses) == model.best_epoch + config.patience < config.epochs
    assert model.best_epoch == int(np.argmin(losses)) + 1
    p = model.predict_proba(x[400:], segments[400:])[:, 1]
    assert _log_loss(y[400:], p) == pytest.approx(min(losses), rel=1e-6)
    assert _log_loss(y[400:], p) < losses[-1]


def test_fit_when_no_validation_then_runs_exactly_the_given_epochs(
    monkeypatch: pytest.MonkeyPatch, quick_fit: Callable[..., SequenceClassifier]
) -> None:
    calls: list[int] = []
    real = sequence._run_epoch
    monkeypatch.setattr(sequence, "_run_epoch", lambda *a: calls.append(1) or real(*a))
    model = quick_fit("lstm", epochs=5)
    assert len(calls) == 5
    assert model.best_epoch == 5
    assert model.validation_losses == ()
    x, y, segments = lagged_rows(100, 12)
    SequenceClassifier("lstm", SMALL, 1).fit(x, y, segments, epochs=3)
    assert len(calls) == 8


def test_fit_when_more_rows_than_max_train_windows_then_only_newest_labels_used(
    quick_fit: Callable[..., SequenceClassifier], lagged: dict[str, Rows]
) -> None:
    x, y, segments = lagged_rows(400, 11)
    config = replace(SMALL, epochs=2, max_train_windows=150)
    flipped = y.copy()
    flipped[:250] = 1 - flipped[:250]  # older than the newest 150 windows
    tx, _, ts = lagged["test"]
    a = SequenceClassifier("lstm", config, 7).fit(x, y, segments).predict_proba(tx, ts)
    b = SequenceClassifier("lstm", config, 7).fit(x, flipped, segments).predict_proba(tx, ts)
    c = quick_fit("lstm").predict_proba(tx, ts)  # same data, no cap
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


# -- pickling and prediction on new rows -------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
def test_pickle_when_round_tripped_then_same_probabilities(
    kind: str,
    dumps: Callable[[object], bytes],
    trained: dict[str, SequenceClassifier],
    lagged: dict[str, Rows],
) -> None:
    x, _, segments = lagged["test"]
    restored = pickle.loads(dumps(trained[kind]))
    assert restored.best_epoch == trained[kind].best_epoch
    assert np.array_equal(
        restored.predict_proba(x, segments), trained[kind].predict_proba(x, segments)
    )


def test_pickle_when_loaded_in_fresh_process_then_same_probabilities(
    tmp_path: Path, trained: dict[str, SequenceClassifier], lagged: dict[str, Rows]
) -> None:
    x, _, segments = lagged["test"]
    (tmp_path / "model.pkl").write_bytes(cloudpickle.dumps(trained["transformer"]))
    np.savez(tmp_path / "rows.npz", x=x, segments=segments)
    script = (
        "import pickle, sys, numpy as np, torch; torch.set_num_threads(1); d = sys.argv[1];"
        "m = pickle.load(open(d + '/model.pkl', 'rb')); r = np.load(d + '/rows.npz');"
        "np.save(d + '/p.npy', m.predict_proba(r['x'], r['segments']))"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, check=True, timeout=120)
    expected = trained["transformer"].predict_proba(x, segments)
    assert np.array_equal(np.load(tmp_path / "p.npy"), expected)


def test_predict_when_segment_unseen_in_fit_then_probabilities_for_every_row(
    trained: dict[str, SequenceClassifier],
) -> None:
    x, _, _ = lagged_rows(40, 21)
    p = trained["lstm"].predict_proba(x, np.full(len(x), 99))
    assert p.shape == (40, 2)
    assert np.isfinite(p).all()
    assert ((p > 0) & (p < 1)).all()


# -- refusals ----------------------------------------------------------------------------------


def test_predict_when_lengths_or_feature_count_wrong_then_value_error(
    trained: dict[str, SequenceClassifier],
) -> None:
    x, _, segments = lagged_rows(40, 21)
    with pytest.raises(ValueError, match="one entry per row of x: x has 40 rows"):
        trained["lstm"].predict_proba(x, segments[:-1])
    with pytest.raises(ValueError, match="x has 4 features, the model was fit on 5"):
        trained["lstm"].predict_proba(x[:, :4], segments)


def test_fit_when_inputs_inconsistent_then_value_error() -> None:
    x, y, segments = lagged_rows(40, 21)
    model = SequenceClassifier("lstm", SMALL, 1)
    with pytest.raises(ValueError, match="one entry per row of x"):
        model.fit(x, y, segments[:-2])
    with pytest.raises(ValueError, match=r"y must have shape \(40,\)"):
        model.fit(x, y[:-1], segments)
    with pytest.raises(ValueError, match="only 0 and 1"):
        model.fit(x, y * 2, segments)
    with pytest.raises(ValueError, match="x has 3 features, the model was fit on 5"):
        model.fit(x, y, segments, (x[:, :3], y, segments))


def test_construct_when_kind_or_settings_invalid_then_sequence_input_error() -> None:
    with pytest.raises(SequenceInputError, match="kind must be one of"):
        SequenceClassifier("gru", SMALL, 1)
    with pytest.raises(SequenceInputError, match="divisible by heads=3"):
        SequenceClassifier("transformer", SequenceConfig(hidden=16, heads=3), 1)
    with pytest.raises(SequenceInputError, match="window must be >= 1"):
        SequenceConfig(window=0)
    with pytest.raises(SequenceInputError, match="dropout"):
        SequenceConfig(dropout=1.0)


def test_predict_when_not_fitted_then_not_fitted_error() -> None:
    x, _, segments = lagged_rows(10, 21)
    with pytest.raises(SequenceNotFitted):
        SequenceClassifier("transformer", SMALL, 1).predict_proba(x, segments)


# -- real candles ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_fit_when_real_btc_features_then_finite_probabilities_inside_zero_one(
    kind: str, btc_1h: pd.DataFrame
) -> None:
    candles = btc_1h.head(MAX_LOOKBACK + 700)
    features = build_features(candles, candles)
    close = candles.set_index("open_time")["close"]
    ahead = close.shift(-4)  # a 4-hour forward-return label; this test makes no claim of skill
    frame = features.assign(label=(ahead > close * 1.002).where(ahead.notna())).dropna()
    x = frame.loc[:, list(FEATURE_NAMES)].to_numpy(np.float32)
    y = frame["label"].to_numpy().astype(np.int64)
    segments = np.zeros(len(x), dtype=np.int64)
    cut = int(len(x) * 0.75)
    model = SequenceClassifier(kind, SequenceConfig(epochs=4), 7)
    model.fit(x[:cut], y[:cut], segments[:cut], (x[cut:], y[cut:], segments[cut:]))
    p = model.predict_proba(x, segments)
    assert len(x) > 350
    assert p.shape == (len(x), 2)
    assert np.isfinite(p).all()
    assert ((p > 0) & (p < 1)).all()
