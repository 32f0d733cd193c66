"""Trailing-window statistics on numpy arrays, NaN-aware, with no pandas overhead.

Sums, means, variances and covariances come from cumulative sums, so a value at t is fixed by
rows <= t (prefix-stable) and costs O(n) whatever the window. Max, min and rank use sliding
windows. A window holding a NaN gives NaN, as pandas' rolling does (unless `min_periods`).

A live decision builds its features on 800 rows, where the cost is the number of numpy calls,
not the rows: `Trailing` computes an array's cumulative sums once and serves every window asked
of it. Its statistics are the same float operations whether served alone, beside other windows
or as one row of a 2-D input (a cumulative sum is sequential along the last axis, row by row),
so sharing never changes a bit; tests/core/features/test_rolling.py holds it to the one-window
definitions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cached_property

import numpy as np
from scipy.signal import lfilter

Array = np.ndarray


def filled(shape: int | tuple[int, ...], value: float = np.nan) -> Array:
    """np.full(shape, value) as float64, for ~60% of its cost: on a live decision's 800 rows its
    Python wrapper's copyto costs more than the fill itself, and a build makes ~70 of them."""
    out = np.empty(shape)
    out.fill(value)
    return out


def shift(x: Array, n: int) -> Array:
    out = np.empty(x.shape)  # float64 whatever x is
    out[:n] = np.nan
    if n < len(x):
        out[n:] = x[: len(x) - n]
    return out


def diff(x: Array, n: int = 1) -> Array:
    return x - shift(x, n)


def diffs(x: Array, lags: Sequence[int]) -> Array:
    """`diff(x, lag)` for each lag, as the rows of one array (the same subtractions)."""
    out = filled((len(lags), len(x)))
    for row, lag in zip(out, lags, strict=True):
        np.subtract(x[lag:], x[: max(len(x) - lag, 0)], out=row[lag:])
    return out


def _prefix(rows: Array, dtype: type = np.float64) -> Array:
    """Cumulative sums along the last axis behind a leading 0: a window (start, end] sums to
    cs[..., end] - cs[..., start]. The 0 is put in front, never added: 0.0 + -0.0 is +0.0."""
    cs = np.empty((*rows.shape[:-1], rows.shape[-1] + 1), dtype=dtype)
    cs[..., 0] = 0
    np.add.accumulate(rows, axis=-1, dtype=dtype, out=cs[..., 1:])  # np.cumsum, sans wrapper
    return cs


def _windows(cs: Array, w: int) -> Array:
    """Sum over each full window ending at t >= w-1, from `_prefix` sums."""
    return cs[..., w:] - cs[..., :-w]


class _Validity:
    """Which full windows hold enough non-NaN values, for one NaN mask and any window."""

    def __init__(self, nan: Array) -> None:
        self.nan = nan
        self.lead: int | None = None  # NaNs only lead (warm-up): every value from here is valid
        self._first: int | None = None  # 1-D: where the first valid value is (None: nowhere)
        if nan.ndim > 1:  # rows: counted, unless there is no NaN at all
            self.lead = None if nan.any() else 0
            return
        i = int(nan.argmin()) if len(nan) else 0  # the first valid value; 0 if none
        if i < len(nan) and not nan[i]:
            self._first = i
        if self._first is None:
            self.lead = len(nan)
        elif not nan[i:].any():
            self.lead = i

    def first(self, x: Array) -> float | Array:
        """x's value at the first valid place along the last axis (0.0 if none); a column for
        2-D rows."""
        if x.ndim == 1:
            return 0.0 if self._first is None else float(x[self._first])
        rows, i = np.arange(len(x)), self.nan.argmin(axis=1)
        return np.where(self.nan[rows, i], 0.0, x[rows, i])[:, None]

    @cached_property
    def _counts(self) -> Array:
        return _prefix(~self.nan, dtype=np.int64)

    def counts(self, w: int) -> Array:
        """Non-NaN values in each full window."""
        return _windows(self._counts, w)

    def enough(self, w: int, need: int) -> Array | None:
        """Whether each full window holds `need` non-NaN values; None when every one does."""
        if self.lead == 0:
            return None
        if self.lead is None:
            return self.counts(w) >= need
        start = self.lead + need - w  # one boundary, no counting
        if start <= 0:
            return None
        mask = np.zeros(self.nan.shape[-1] - w + 1, dtype=bool)
        mask[start:] = True
        return mask


def _finite(first: float | Array) -> bool:
    # math.isfinite: np.isfinite costs a few µs on a Python float
    return math.isfinite(first) if isinstance(first, float) else bool(np.isfinite(first).all())


def _fill(out: Array, w: int, values: Array, ok: Array | None) -> Array:
    """`out` (all NaN) with `values` at each full window's end where `ok` (None: everywhere)."""
    if ok is None:
        out[..., w - 1 :] = values
    else:
        np.copyto(out[..., w - 1 :], values, where=ok)
    return out


class Trailing:
    """Rolling sum, mean, variance and deviation of one array, along its last axis, over any
    number of windows: the cumulative sums are computed once, on first use, for all of them."""

    def __init__(self, x: Array) -> None:
        self.x = x
        self.valid = _Validity(np.isnan(x))

    @cached_property
    def _sums(self) -> Array:
        return _prefix(np.where(self.valid.nan, 0.0, self.x))

    @cached_property
    def _moments(self) -> tuple[Array, _Validity]:
        """Cumulative sums of x - first and of its square, and which of x - first are NaN.

        Centred on the first valid value (known from the past alone, so values stay
        prefix-stable): sums of small deviations keep their precision.
        """
        first = self.valid.first(self.x)
        rows = np.empty((2, *self.x.shape))
        xc = np.subtract(self.x, first, out=rows[0])
        # x - first is NaN where x is, unless first is infinite (inf - inf)
        valid = self.valid if _finite(first) else _Validity(np.isnan(xc))
        np.copyto(xc, 0.0, where=valid.nan)  # NaNs count as 0
        np.multiply(xc, xc, out=rows[1])
        return _prefix(rows), valid

    def _out(self) -> Array:
        return filled(self.x.shape)

    def sum(self, w: int, min_periods: int | None = None) -> Array:
        out = self._out()
        if self.x.shape[-1] < w:
            return out
        return _fill(out, w, _windows(self._sums, w), self.valid.enough(w, min_periods or w))

    def mean(self, w: int, min_periods: int | None = None) -> Array:
        out = self._out()
        if self.x.shape[-1] < w:
            return out
        ok = self.valid.enough(w, min_periods or w)
        total = _windows(self._sums, w)
        if min_periods is None or min_periods == w:
            return _fill(out, w, total / w, ok)
        with np.errstate(invalid="ignore", divide="ignore"):
            return _fill(out, w, total / self.valid.counts(w), ok)

    def var(self, w: int) -> Array:
        """Sample variance (ddof=1) over full windows."""
        out = self._out()
        if self.x.shape[-1] < w:
            return out
        sums, valid = self._moments
        s1, s2 = _windows(sums, w)
        var = np.maximum((s2 - s1 * s1 / w) / (w - 1), 0.0)
        return _fill(out, w, var, valid.enough(w, w))

    def std(self, w: int) -> Array:
        return np.sqrt(self.var(w))


def rolling_mean(x: Array, w: int, min_periods: int | None = None) -> Array:
    return Trailing(x).mean(w, min_periods)


def rolling_var(x: Array, w: int) -> Array:
    """Sample variance (ddof=1) over full windows, from two cumulative sums."""
    return Trailing(x).var(w)


def rolling_std(x: Array, w: int) -> Array:
    return Trailing(x).std(w)


def rolling_cov(x: Array, y: Array, w: int) -> Array:
    """Sample covariance (ddof=1) over full windows; NaN if either side has a NaN."""
    out = filled(len(x))
    if len(x) < w:
        return out
    bad = _Validity(np.isnan(x) | np.isnan(y))
    # Both centred as in Trailing._moments, on the first place where both are valid.
    parts = np.empty((3, len(x)))
    first = bad.first(x)
    xc = np.subtract(x, first, out=parts[0])
    yc = np.subtract(y, bad.first(y), out=parts[1])
    np.copyto(parts[:2], np.nan, where=bad.nan)
    np.multiply(xc, yc, out=parts[2])
    nan = np.isnan(parts)
    np.copyto(parts, 0.0, where=nan)  # NaNs count as 0
    sx, sy, sxy = _windows(_prefix(parts), w)
    cov = (sxy - sx * sy / w) / (w - 1)
    valid = bad if _finite(first) else _Validity(nan[0])  # as in Trailing._moments
    return _fill(out, w, cov, valid.enough(w, w))


def correlation(cov: Array, var_x: Array, var_y: Array) -> Array:
    """Correlation from a rolling covariance and the two variances; NaN where either is 0."""
    den = np.sqrt(var_x * var_y)
    out = filled(len(cov))
    np.divide(cov, den, out=out, where=den > 0)
    return out


def _lagged(x: Array, w: int) -> Array:
    """Read-only (w, n-w+1) view of a 1-D array's full windows, one window per column: row k
    holds each window's k-th value. Reducing over rows runs w vectorised passes, where one
    reduction per window (sliding_window_view's layout) runs n short ones."""
    x = np.ascontiguousarray(x)  # a buffer to lend (no copy if it is one already)
    step = x.strides[0]
    # as_strided's view, built directly: a fifth of its cost (a build makes seven)
    view = np.ndarray((w, len(x) - w + 1), x.dtype, x, strides=(step, step))
    view.flags.writeable = False
    return view


def rolling_max(x: Array, w: int) -> Array:
    out = filled(len(x))
    if len(x) >= w:
        # exact, and NaN if the window has one; the ufunc itself, not .max()'s Python wrapper
        out[w - 1 :] = np.maximum.reduce(_lagged(x, w), axis=0)
    return out


def rolling_min(x: Array, w: int) -> Array:
    out = filled(len(x))
    if len(x) >= w:
        out[w - 1 :] = np.minimum.reduce(_lagged(x, w), axis=0)
    return out


def _count_true(mask: Array) -> Array:
    """How many of each column's values are True. The counts are exact, so any integer type gives
    the same rank: a narrow one sums faster, and under 256 rows the bools' bytes are summed as
    they are (a bool is stored as 0 or 1), with no cast at all."""
    if len(mask) < 2**8:
        return np.add.reduce(mask.view(np.uint8), axis=0, dtype=np.uint8)
    return np.add.reduce(mask, axis=0, dtype=np.uint16 if len(mask) < 2**16 else np.int64)


def rolling_rank_pct(x: Array, w: int) -> Array:
    """Percentile rank of each value among its trailing window (ties averaged, as pandas)."""
    out = filled(len(x))
    if len(x) < w:
        return out
    windows = _lagged(x, w)
    last = windows[-1]
    less, equal = _count_true(windows < last), _count_true(windows == last)
    rank = (less + (equal + 1.0) / 2) / w
    return _fill(out, w, rank, _Validity(np.isnan(x)).enough(w, w))


def ema(x: Array, span: float) -> Array:
    """EMA with alpha = 2 / (span + 1), seeded with the first non-NaN value (pandas
    ewm(adjust=False)); the input must have no NaN after its first value."""
    out = filled(len(x))
    valid = np.flatnonzero(~np.isnan(x))
    if not len(valid):
        return out
    start = valid[0]
    alpha = 2.0 / (span + 1.0)
    out[start] = x[start]
    if start + 1 < len(x):
        out[start + 1 :], _ = lfilter(
            [alpha], [1.0, alpha - 1.0], x[start + 1 :], zi=[(1.0 - alpha) * x[start]]
        )
    return out
