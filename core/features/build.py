"""Compute the feature frame from a candle frame. Every value at row t uses rows <= t only.

Standard indicators come from TA-Lib; the rest is vectorised numpy over trailing windows
(core/features/rolling.py). Rows before a feature's declared lookback are NaN (warm-up),
never filled.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pandas as pd
import talib

from core.errors import FatalError
from core.features.registry import FEATURE_NAMES, FEATURES, MAX_LOOKBACK
from core.features.rolling import (
    Trailing,
    correlation,
    diff,
    diffs,
    ema,
    filled,
    rolling_cov,
    rolling_max,
    rolling_mean,
    rolling_min,
    rolling_rank_pct,
    rolling_var,
    shift,
)

# Enough history for every EMA/Wilder-smoothed feature to forget its seed (slowest: ATR(28),
# residual weight (27/28)^800 ~ 3e-13): the newest row equals the full-history value.
INCREMENTAL_WINDOW = 800

Array = np.ndarray

# TA-Lib's compiled functions, without the wrapper talib puts on each to accept pandas or
# polars Series: the inputs here are numpy arrays already, and the wrapper's checks cost about
# 1 µs on each of a build's 37 calls.
_TALIB_USED = "AD ADOSC ADX AROON AROONOSC ATR BBANDS CCI EMA LINEARREG_SLOPE MACD MFI MINUS_DI OBV"
_TALIB_USED += " PLUS_DI ROC RSI SMA STOCH ULTOSC WILLR"
ta = SimpleNamespace(**{name: inspect.unwrap(getattr(talib, name)) for name in _TALIB_USED.split()})

# Which rows of each feature are warm-up (row < lookback - 1, NaN by declaration): one mask
# for all of them, where a slice per feature would be 91 numpy calls of a live decision's budget.
_WARM_UP = np.arange(MAX_LOOKBACK - 1)[:, None] < np.array([f.lookback - 1 for f in FEATURES])
# Parsed once: each frame gets a copy (its own Index object, sharing the immutable labels).
_COLUMNS = pd.Index(list(FEATURE_NAMES))


class MissingReference(FatalError, ValueError):
    pass


@dataclass(frozen=True, slots=True)
class _Shared:
    """Series that more than one feature group reads, computed once a build (the same
    operations each group would do, so the same bits)."""

    c_prev: Array  # the previous close
    dc: Array  # close - previous close
    gap: Array  # open / previous close
    rng: Array  # high - low
    hl2: Array  # log(high / low) ** 2


def _shared(o: Array, h: Array, lo: Array, c: Array) -> _Shared:
    c_prev = shift(c, 1)
    return _Shared(c_prev, c - c_prev, o / c_prev, h - lo, np.log(h / lo) ** 2)


def build_features(candles: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Feature frame indexed by open_time.

    `reference` is the cross-asset reference's candle frame (BTC); pass the same frame when
    `candles` is the reference itself.
    """
    if reference is None or reference.empty:
        raise MissingReference("cross-asset features need the reference (BTC) candles")
    index = pd.DatetimeIndex(candles["open_time"], name="open_time")
    o, h, lo, c, v = (
        candles[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close", "volume")
    )
    log_c = np.log(c)
    r1 = diff(log_c)
    sh = _shared(o, h, lo, c)
    out: dict[str, Array] = {}
    _trend(out, h, lo, c)
    _momentum(out, h, lo, c, v, log_c, sh)
    r1s = Trailing(r1)  # its windows serve both the volatility and the cross-asset features
    _volatility(out, o, h, lo, c, r1s, sh)
    _volume(out, h, lo, c, v, sh)
    _microstructure(out, o, h, lo, c, v, r1, sh)
    _time(out, index)
    _regime(out, c, log_c, sh)
    _cross_asset(out, index, r1s, reference)

    # Column-major, filled a feature at a time while the computed arrays are let go: a long
    # backtest's symbol never holds its features twice (pandas keeps the block as is).
    values = np.empty((len(index), len(FEATURES)), dtype=np.float64, order="F")
    for j, name in enumerate(FEATURE_NAMES):
        values[:, j] = out.pop(name)
    warm_up = _WARM_UP[: len(index)]
    np.copyto(values[: len(warm_up)], np.nan, where=warm_up)
    # Infinities (a division by nothing) are NaN too: one pass over the whole block, not a
    # mask per feature (a live decision builds 91 of them on 800 rows).
    np.copyto(values, np.nan, where=~np.isfinite(values))
    return pd.DataFrame(values, index=index, columns=_COLUMNS.copy(), copy=False)


def _div(a: Array, b: Array, fill: float = 0.0) -> Array:
    """a / b, with `fill` where b == 0 and NaN wherever an input is NaN. Both are float64 arrays
    of one shape (every caller's): nothing to convert or broadcast."""
    out = filled(a.shape, fill)
    np.divide(a, b, out=out, where=b != 0)  # NaN where b is, or where a is and b != 0
    np.copyto(out, np.nan, where=np.isnan(a))
    return out


def _slope(x: Array, window: int) -> Array:
    return ta.LINEARREG_SLOPE(x, timeperiod=window)


def _trend(out: dict[str, Array], h: Array, lo: Array, c: Array) -> None:
    for n in (10, 20, 50, 100, 200):
        out[f"sma_ratio_{n}"] = c / ta.SMA(c, timeperiod=n) - 1
    for n in (12, 26, 50):
        out[f"ema_ratio_{n}"] = c / ta.EMA(c, timeperiod=n) - 1
    macd, signal, hist = ta.MACD(c, fastperiod=12, slowperiod=26, signalperiod=9)
    out["macd"], out["macd_signal"], out["macd_hist"] = macd / c, signal / c, hist / c
    out["adx_14"] = ta.ADX(h, lo, c, timeperiod=14) / 100
    out["plus_di_14"] = ta.PLUS_DI(h, lo, c, timeperiod=14) / 100
    out["minus_di_14"] = ta.MINUS_DI(h, lo, c, timeperiod=14) / 100
    down, up = ta.AROON(h, lo, timeperiod=25)
    out["aroon_up_25"], out["aroon_down_25"] = up / 100, down / 100
    out["aroon_osc_25"] = ta.AROONOSC(h, lo, timeperiod=25) / 100
    tenkan = (rolling_max(h, 9) + rolling_min(lo, 9)) / 2
    kijun = (rolling_max(h, 26) + rolling_min(lo, 26)) / 2
    span_a = shift((tenkan + kijun) / 2, 26)  # what the chart shows at t was computed at t-26
    span_b = shift((rolling_max(h, 52) + rolling_min(lo, 52)) / 2, 26)
    out["ichimoku_tenkan_dist"] = c / tenkan - 1
    out["ichimoku_kijun_dist"] = c / kijun - 1
    out["ichimoku_span_a_dist"] = c / span_a - 1
    out["ichimoku_span_b_dist"] = c / span_b - 1
    out["linreg_slope_20"] = _slope(c, 20) / c


def _momentum(
    out: dict[str, Array], h: Array, lo: Array, c: Array, v: Array, log_c: Array, sh: _Shared
) -> None:
    for n in (1, 3, 6, 12, 24):
        out[f"ret_{n}"] = diff(log_c, n)
    for n in (7, 14, 28):
        out[f"rsi_{n}"] = ta.RSI(c, timeperiod=n) / 100
    k, d = ta.STOCH(
        h, lo, c, fastk_period=14, slowk_period=3, slowk_matype=0, slowd_period=3, slowd_matype=0
    )
    out["stoch_k_14"], out["stoch_d_14"] = k / 100, d / 100
    out["willr_14"] = ta.WILLR(h, lo, c, timeperiod=14) / 100
    out["cci_20"] = ta.CCI(h, lo, c, timeperiod=20) / 100
    out["roc_10"] = ta.ROC(c, timeperiod=10) / 100
    out["mfi_14"] = ta.MFI(h, lo, c, v, timeperiod=14) / 100
    dc = sh.dc
    out["tsi_25_13"] = _div(ema(ema(dc, 25), 13), ema(ema(np.abs(dc), 25), 13))
    out["ultosc"] = ta.ULTOSC(h, lo, c, timeperiod1=7, timeperiod2=14, timeperiod3=28) / 100


def _volatility(
    out: dict[str, Array], o: Array, h: Array, lo: Array, c: Array, r1s: Trailing, sh: _Shared
) -> None:
    out["atr_pct_14"] = ta.ATR(h, lo, c, timeperiod=14) / c
    out["atr_pct_28"] = ta.ATR(h, lo, c, timeperiod=28) / c
    upper, middle, lower = ta.BBANDS(c, timeperiod=20, nbdevup=2.0, nbdevdn=2.0)
    out["bb_pos_20"] = _div(c - lower, upper - lower, fill=0.5)
    out["bb_width_20"] = (upper - lower) / middle
    mid = ta.EMA(c, timeperiod=20)
    band = 2 * ta.ATR(h, lo, c, timeperiod=10)
    out["kc_pos_20"] = _div(c - (mid - band), 2 * band, fill=0.5)
    out["kc_width_20"] = 2 * band / mid
    co = np.log(c / o)
    out["parkinson_24"] = np.sqrt(rolling_mean(sh.hl2, 24) / (4 * np.log(2)))
    gk = 0.5 * sh.hl2 - (2 * np.log(2) - 1) * co**2
    out["garman_klass_24"] = np.sqrt(np.maximum(rolling_mean(gk, 24), 0))
    n = 24
    overnight = np.log(sh.gap)
    rs = np.log(h / c) * np.log(h / o) + np.log(lo / c) * np.log(lo / o)
    k = 0.34 / (1.34 + (n + 1) / (n - 1))
    yz = rolling_var(overnight, n) + k * rolling_var(co, n) + (1 - k) * rolling_mean(rs, n)
    out["yang_zhang_24"] = np.sqrt(np.maximum(yz, 0))
    for w in (12, 24, 72, 168):
        out[f"rv_{w}"] = r1s.std(w)
    rv24 = Trailing(out["rv_24"])
    out["vol_of_vol_72"] = _div(rv24.std(72), rv24.mean(72))


def _volume(out: dict[str, Array], h: Array, lo: Array, c: Array, v: Array, sh: _Shared) -> None:
    v_sma14 = ta.SMA(v, timeperiod=14)
    out["obv_slope_14"] = _div(_slope(ta.OBV(c, v), 14), v_sma14)
    tp = (h + lo + c) / 3
    vs = Trailing(v)
    vwap = _div(Trailing(tp * v).sum(24), vs.sum(24), np.nan)
    out["vwap_dist_24"] = _div(c, vwap) - 1
    v_mean24 = vs.mean(24)
    out["vol_z_24"] = _div(v - v_mean24, vs.std(24))
    out["vol_z_72"] = _div(v - vs.mean(72), vs.std(72))
    out["volume_ratio_24"] = _div(v, v_mean24, fill=1.0)
    mfv = _div((c - lo) - (h - c), sh.rng) * v
    out["cmf_20"] = _div(Trailing(mfv).sum(20), vs.sum(20))
    out["ad_slope_14"] = _div(_slope(ta.AD(h, lo, c, v), 14), v_sma14)
    out["adosc_3_10"] = _div(
        ta.ADOSC(h, lo, c, v, fastperiod=3, slowperiod=10), ta.SMA(v, timeperiod=10)
    )
    step = v * sh.dc / sh.c_prev
    vpt = np.cumsum(np.where(np.isnan(step), 0.0, step))
    vpt[0] = np.nan
    out["vpt_slope_14"] = _div(_slope(vpt, 14), v_sma14)
    out["log_volume_change"] = diff(np.log1p(v))


def _microstructure(
    out: dict[str, Array], o: Array, h: Array, lo: Array, c: Array, v: Array, r1: Array, sh: _Shared
) -> None:
    rng = sh.rng
    out["hl_range"] = rng / c
    out["body_ratio"] = _div(c - o, rng)
    out["upper_wick_ratio"] = _div(h - np.maximum(o, c), rng)
    out["lower_wick_ratio"] = _div(np.minimum(o, c) - lo, rng)
    out["close_location"] = _div(c - lo, rng, fill=0.5)
    out["open_gap"] = sh.gap - 1
    h1, l1 = shift(h, 1), shift(lo, 1)
    beta = sh.hl2 + shift(sh.hl2, 1)  # log(h1 / l1) ** 2 is hl2 a row late
    gamma = np.log(np.maximum(h, h1) / np.minimum(lo, l1)) ** 2
    den = 3 - 2 * np.sqrt(2)
    alpha = (np.sqrt(2 * beta) - np.sqrt(beta)) / den - np.sqrt(gamma / den)
    spread = np.maximum(2 * (np.exp(alpha) - 1) / (1 + np.exp(alpha)), 0)
    spread[np.isnan(alpha)] = np.nan
    out["corwin_schultz_24"] = rolling_mean(spread, 24)
    dc = sh.dc
    cov = rolling_cov(dc, shift(dc, 1), 24)
    out["roll_spread_24"] = (
        2 * np.sqrt(np.maximum(-cov, 0)) / c * np.where(np.isnan(cov), np.nan, 1)
    )
    dollar = c * v
    illiq = np.abs(r1) / np.where(dollar > 0, dollar, np.nan)
    out["amihud_24"] = rolling_mean(illiq, 24, min_periods=20) * 1e6
    x = np.sign(r1) * np.sqrt(dollar)
    out["kyle_lambda_24"] = _div(rolling_cov(r1, x, 24), rolling_var(x, 24)) * 1e3
    hlr = Trailing(out["hl_range"])  # rng / c, computed once
    out["range_z_24"] = _div(hlr.x - hlr.mean(24), hlr.std(24))


def _time(out: dict[str, Array], index: pd.DatetimeIndex) -> None:  # type: ignore[type-arg]
    ns = index.asi8
    hour = (ns // 3_600_000_000_000) % 24
    dow = (ns // 86_400_000_000_000 + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
    month = index.values.astype("datetime64[M]").astype(np.int64) % 12  # 0 = January
    for name, unit, period in (("hour", hour, 24), ("dow", dow, 7), ("month", month, 12)):
        angle = 2 * np.pi * unit / period  # one angle for its sine and its cosine
        out[f"{name}_sin"], out[f"{name}_cos"] = np.sin(angle), np.cos(angle)
    out["session_asia"] = ((hour >= 0) & (hour < 8)).astype(float)
    out["session_europe"] = ((hour >= 7) & (hour < 16)).astype(float)
    out["session_us"] = ((hour >= 13) & (hour < 21)).astype(float)


def _regime(out: dict[str, Array], c: Array, log_c: Array, sh: _Shared) -> None:
    adx = out["adx_14"]
    above = out["ema_ratio_50"] > 0
    trending = adx > 0.25
    regime = np.where(trending & above, 1.0, np.where(trending & ~above, -1.0, 0.0))
    regime[np.isnan(adx)] = np.nan
    out["trend_regime"] = regime
    out["vol_regime_pct"] = rolling_rank_pct(out["rv_24"], 168)
    lags = np.array([2, 4, 8, 16, 32], dtype=np.float64)
    x = np.log(lags) - np.log(lags).mean()
    # One 2-D pass for the five lags: each row is the 1-D rolling_std's bits.
    ys = list(np.log(Trailing(diffs(log_c, [int(t) for t in lags])).std(128)))
    y_mean = sum(ys) / len(ys)
    out["hurst_128"] = sum(xi * (yi - y_mean) for xi, yi in zip(x, ys, strict=True)) / (x**2).sum()
    step = Trailing(np.abs(sh.dc))
    for n in (10, 30):
        out[f"efficiency_ratio_{n}"] = _div(np.abs(diff(c, n)), step.sum(n))


def _cross_asset(
    out: dict[str, Array],
    index: pd.DatetimeIndex,  # type: ignore[type-arg]
    r1s: Trailing,
    reference: pd.DataFrame,
) -> None:
    ref_times = reference["open_time"]
    same = ref_times.dtype == index.dtype and len(ref_times) == len(index)
    if same and np.array_equal(ref_times.array.asi8, index.asi8):
        ref_close = reference["close"].to_numpy(dtype=np.float64)  # the same candles: as is
    else:
        ref_close = (
            reference.set_index("open_time")["close"].astype(np.float64).reindex(index).to_numpy()
        )
    ref_log = np.log(ref_close)
    ref_r1 = diff(ref_log)
    out["ref_ret_1"] = ref_r1
    out["ref_ret_24"] = diff(ref_log, 24)
    cov = rolling_cov(r1s.x, ref_r1, 72)
    ref_var = rolling_var(ref_r1, 72)
    out["ref_corr_72"] = correlation(cov, r1s.var(72), ref_var)
    out["ref_beta_72"] = _div(cov, ref_var, np.nan)
