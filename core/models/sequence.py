"""Torch sequence members of the ensemble: an LSTM and a Transformer over each row's recent rows.

A row is classified from the window of the last `window` rows of its own segment (one symbol's
consecutive rows) ending at that row: never a later row, never another segment's row. Windows are
index matrices into one standardised feature tensor, gathered a batch at a time, so memory stays
at one copy of the features however many overlapping windows there are.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.errors import FatalError

KINDS = ("lstm", "transformer")
# Rows per forward pass at predict time: bounds memory at batch x window x features floats.
PREDICT_BATCH = 2048
# Standardised values beyond this are outliers (a volume spike, a listing day); clipping keeps
# one of them from saturating the network.
CLIP = 10.0
MAX_GRAD_NORM = 1.0


class SequenceInputError(FatalError, ValueError):
    """Arrays a sequence classifier cannot use: wrong shapes, lengths, labels or settings."""


class SequenceNotFitted(FatalError, RuntimeError):
    """predict_proba was called before fit."""


@dataclass(frozen=True, slots=True)
class SequenceConfig:
    window: int = 16  # candles per sequence, a setting
    hidden: int = 32
    layers: int = 1
    heads: int = 4  # transformer only
    dropout: float = 0.1
    epochs: int = 12  # upper bound; early stopping usually ends sooner
    patience: int = 3  # epochs without validation log-loss improvement
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    max_train_windows: int = 40_000  # newest windows kept when there are more (time budget)

    def __post_init__(self) -> None:
        counts = ("window", "hidden", "layers", "heads", "epochs", "patience", "batch_size")
        for name in (*counts, "max_train_windows"):
            if getattr(self, name) < 1:
                raise SequenceInputError(
                    f"SequenceConfig.{name} must be >= 1, got {getattr(self, name)}"
                )
        if not 0.0 <= self.dropout < 1.0:
            raise SequenceInputError(
                f"SequenceConfig.dropout must be in [0, 1), got {self.dropout}"
            )
        if self.learning_rate <= 0 or self.weight_decay < 0:
            raise SequenceInputError(
                f"SequenceConfig needs learning_rate > 0 and weight_decay >= 0, got "
                f"{self.learning_rate} and {self.weight_decay}"
            )


def window_indices(segments: np.ndarray, window: int) -> np.ndarray:
    """(n, window) row indices, oldest first: row i's window is the last `window` rows of its
    segment up to and including i, in the given order; a short history repeats the segment's
    first row on the left. Index arithmetic on a stable sort by segment, no loop per row."""
    segments = np.asarray(segments)
    n = len(segments)
    order = np.argsort(segments, kind="stable")  # stable: keeps each segment's time order
    grouped = segments[order]
    is_start = np.ones(n, dtype=bool)
    is_start[1:] = grouped[1:] != grouped[:-1]
    start = np.maximum.accumulate(np.where(is_start, np.arange(n), 0)) if n else np.zeros(0, int)
    positions = np.arange(n)[:, None] + np.arange(1 - window, 1)[None, :]
    positions = np.maximum(positions, start[:, None])
    out = np.empty((n, window), dtype=np.int64)
    out[order] = order[positions]
    return out


def feature_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std over the finite values; std 0 (or no finite value) -> 1."""
    finite = np.isfinite(x)
    count = np.maximum(finite.sum(axis=0), 1)
    values = np.where(finite, x, 0.0).astype(np.float64)
    mean = values.sum(axis=0) / count
    var = (np.where(finite, values - mean, 0.0) ** 2).sum(axis=0) / count
    std = np.sqrt(var)
    std = np.where(std > 0, std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(x - mean) / std clipped to [-CLIP, CLIP]; NaN and inf (missing values) become 0."""
    with np.errstate(invalid="ignore", over="ignore"):
        z = (x.astype(np.float32) - mean) / std
    z[~np.isfinite(z)] = 0.0
    return np.clip(z, -CLIP, CLIP, out=z)


class _LstmNet(nn.Module):
    def __init__(self, n_features: int, config: SequenceConfig) -> None:
        super().__init__()
        between_layers = config.dropout if config.layers > 1 else 0.0  # torch warns otherwise
        self.lstm = nn.LSTM(
            n_features, config.hidden, config.layers, batch_first=True, dropout=between_layers
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden, 1)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(windows)
        return self.head(self.dropout(hidden[-1])).squeeze(-1)


class _TransformerNet(nn.Module):
    def __init__(self, n_features: int, config: SequenceConfig) -> None:
        super().__init__()
        self.project = nn.Linear(n_features, config.hidden)
        self.position = nn.Parameter(torch.randn(config.window, config.hidden) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model=config.hidden,
            nhead=config.heads,
            dim_feedforward=2 * config.hidden,
            dropout=config.dropout,
            batch_first=True,
        )
        # Nested tensors only help padded batches; ours are dense, and it warns otherwise.
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.head = nn.Linear(config.hidden, 1)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        encoded = self.encoder(self.project(windows) + self.position)
        # The last token is the row being classified; attention lets it read the whole window.
        return self.head(encoded[:, -1]).squeeze(-1)


def _build_net(kind: str, n_features: int, config: SequenceConfig) -> nn.Module:
    return (_LstmNet if kind == "lstm" else _TransformerNet)(n_features, config)


@dataclass(frozen=True, slots=True)
class _Windows:
    features: torch.Tensor  # (rows, f) standardised
    index: torch.Tensor  # (windows, window) row indices into features
    labels: torch.Tensor | None  # (windows,) float 0/1

    def batch(self, rows: torch.Tensor) -> torch.Tensor:
        return self.features[self.index[rows]]


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    """Deterministic kernels for the fit, then the caller's setting back."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def _checked_rows(x: np.ndarray, segments: np.ndarray, n_features: int | None) -> np.ndarray:
    x = np.asarray(x)
    segments = np.asarray(segments)
    if x.ndim != 2:
        raise SequenceInputError(f"x must be 2-D (rows, features), got shape {x.shape}")
    if segments.ndim != 1 or len(segments) != len(x):
        raise SequenceInputError(
            f"segments must be 1-D with one entry per row of x: x has {len(x)} rows, "
            f"segments has shape {segments.shape}"
        )
    if n_features is not None and x.shape[1] != n_features:
        raise SequenceInputError(f"x has {x.shape[1]} features, the model was fit on {n_features}")
    return x.astype(np.float32, copy=False)


def _checked_labels(y: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,):
        raise SequenceInputError(f"y must have shape ({n},) like the rows of x, got {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise SequenceInputError(f"y must hold only 0 and 1, got values {np.unique(y)[:5]}")
    return y.astype(np.float32)


def _logits(net: nn.Module, data: _Windows) -> np.ndarray:
    net.eval()
    with torch.inference_mode():
        batches = torch.arange(len(data.index)).split(PREDICT_BATCH)
        parts = [net(data.batch(rows)) for rows in batches]
    return torch.cat(parts).double().numpy() if parts else np.zeros(0)


def _log_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary log-loss from logits (log1p-exp form: no clipping, no overflow)."""
    return float(
        np.mean(labels * np.logaddexp(0.0, -logits) + (1 - labels) * np.logaddexp(0.0, logits))
    )


def _run_epoch(
    net: nn.Module,
    data: _Windows,
    optimiser: torch.optim.Optimizer,
    config: SequenceConfig,
    generator: torch.Generator,
) -> None:
    net.train()
    loss_fn = nn.BCEWithLogitsLoss()
    assert data.labels is not None  # training windows always carry labels
    for rows in torch.randperm(len(data.index), generator=generator).split(config.batch_size):
        optimiser.zero_grad(set_to_none=True)
        loss = loss_fn(net(data.batch(rows)), data.labels[rows])
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), MAX_GRAD_NORM)
        optimiser.step()


class SequenceClassifier:
    """A torch LSTM or Transformer over each row's window; sklearn-like fit / predict_proba."""

    def __init__(self, kind: str, config: SequenceConfig, seed: int) -> None:
        if kind not in KINDS:
            raise SequenceInputError(f"kind must be one of {KINDS}, got {kind!r}")
        if kind == "transformer" and config.hidden % config.heads:
            raise SequenceInputError(
                f"transformer hidden={config.hidden} must be divisible by heads={config.heads}"
            )
        self.kind = kind
        self.config = config
        self.seed = seed
        self.best_epoch = 0
        self.validation_losses: tuple[float, ...] = ()  # one per epoch run, when validated
        self._mean: np.ndarray | None = None
        self._std: np.ndarray | None = None
        self._net: nn.Module | None = None

    @property
    def n_features(self) -> int | None:
        return None if self._mean is None else len(self._mean)

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        segments: np.ndarray,
        validation: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        epochs: int | None = None,
    ) -> SequenceClassifier:
        """Train; with `validation` = (x, y, segments), stop early on its log-loss and keep the
        best epoch's weights. `epochs` overrides config.epochs (exact count without validation,
        upper bound with it)."""
        x = _checked_rows(x, segments, None)
        if len(x) == 0:
            raise SequenceInputError("fit needs at least one row")
        if epochs is not None and epochs < 1:
            raise SequenceInputError(f"epochs must be >= 1, got {epochs}")
        self._mean, self._std = feature_moments(x)
        train = self._windows(x, segments, _checked_labels(y, len(x)))
        val = None
        if validation is not None:
            vx = _checked_rows(validation[0], validation[2], x.shape[1])
            val = self._windows(vx, validation[2], _checked_labels(validation[1], len(vx)))
        # fork_rng: seed init, dropout and shuffling without moving the caller's global RNG.
        with _deterministic(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self._net = _build_net(self.kind, x.shape[1], self.config)
            self._train(train, val, epochs or self.config.epochs)
        return self

    def predict_proba(self, x: np.ndarray, segments: np.ndarray) -> np.ndarray:
        """(n, 2) float64; column 1 = P(label = 1). Windows see only the rows passed here."""
        if self._net is None:
            raise SequenceNotFitted(f"{self.kind} SequenceClassifier.predict_proba before fit")
        x = _checked_rows(x, segments, self.n_features)
        p = 1.0 / (1.0 + np.exp(-_logits(self._net, self._windows(x, segments, None))))
        return np.column_stack([1.0 - p, p])

    def _windows(self, x: np.ndarray, segments: np.ndarray, labels: np.ndarray | None) -> _Windows:
        assert self._mean is not None
        assert self._std is not None
        index = window_indices(segments, self.config.window)
        if labels is not None and len(index) > self.config.max_train_windows:
            # The newest windows (last rows); older rows stay reachable as their context.
            index = index[-self.config.max_train_windows :]
            labels = labels[-self.config.max_train_windows :]
        return _Windows(
            torch.from_numpy(standardise(x, self._mean, self._std)),
            torch.from_numpy(index),
            None if labels is None else torch.from_numpy(labels),
        )

    def _train(self, train: _Windows, val: _Windows | None, epochs: int) -> None:
        assert self._net is not None
        net = self._net
        optimiser = torch.optim.AdamW(
            net.parameters(), lr=self.config.learning_rate, weight_decay=self.config.weight_decay
        )
        generator = torch.Generator().manual_seed(self.seed)
        best_loss, best_state, stale, losses = math.inf, None, 0, []
        for epoch in range(1, epochs + 1):
            _run_epoch(net, train, optimiser, self.config, generator)
            if val is None:
                continue
            assert val.labels is not None
            losses.append(_log_loss(_logits(net, val), val.labels.double().numpy()))
            if best_state is None or losses[-1] < best_loss:
                best_loss, stale, self.best_epoch = losses[-1], 0, epoch
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                stale += 1
                if stale >= self.config.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        else:
            self.best_epoch = epochs
        self.validation_losses = tuple(losses)
        net.eval()

    def __getstate__(self) -> dict[str, object]:
        # Weights as numpy arrays: the pickle holds no torch module internals, only numbers.
        state = {k: v for k, v in self.__dict__.items() if k != "_net"}
        state["_weights"] = (
            None
            if self._net is None
            else {k: v.detach().numpy().copy() for k, v in self._net.state_dict().items()}
        )
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        weights = state.pop("_weights")
        self.__dict__.update(state)
        self._net = None
        if weights is not None:
            with torch.random.fork_rng(devices=[]):  # init is overwritten; spare the caller's RNG
                self._net = _build_net(self.kind, len(self._mean), self.config)  # type: ignore[arg-type]
            self._net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})  # type: ignore[attr-defined]
            self._net.eval()
