"""Compute the feature frame from a candle frame. Every value at row t uses rows <= t only.

Standard indicators come from TA-Lib; the rest is vectorised numpy/pandas over trailing
windows. Rows before a feature's declared lookback are NaN (warm-up), never filled.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import talib

from core.features.registry import FEATURE_NAMES, FEATURES

# Enough history for every EMA/Wilder-smoothed feature to forget its seed: the newest row
# computed from this many candles equals the full-history value to ~1e-12.
INCREMENTAL_WINDOW = 1200


class MissingReference(ValueError):
    pass


def build_features(candles: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Feature frame indexed by open_time.

    `reference` is the cross-asset reference's candle frame (BTC); pass the same frame when
    `candles` is the reference itself.
    """
    index = pd.DatetimeIndex(candles["open_time"], name="open_time")
    o = candles["open"].to_numpy(dtype=np.float64)
    h = candles["high"].to_numpy(dtype=np.float64)
    lo = candles["low"].to_numpy(dtype=np.float64)
    c = candles["close"].to_numpy(dtype=np.float64)
    v = candles["volume"].to_numpy(dtype=np.float64)
    close = pd.Series(c, index=index)
    volume = pd.Series(v, index=index)
    log_c = np.log(close)
    r1 = log_c.diff()
    out: dict[str, object] = {}

    _trend(out, o, h, lo, c, index)
    _momentum(out, h, lo, c, v, log_c, close)
    _volatility(out, o, h, lo, c, index, r1)
    _volume(out, h, lo, c, v, close, volume)
    _microstructure(out, o, h, lo, c, v, close, r1, index)
    _time(out, index)
    _regime(out, c, close, out)
    _cross_asset(out, index, r1, reference)

    values = np.column_stack([np.asarray(out[name], dtype=np.float64) for name in FEATURE_NAMES])
    values[~np.isfinite(values)] = np.nan
    for j, spec in enumerate(FEATURES):  # warm-up rows are NaN, by declaration
        values[: spec.lookback - 1, j] = np.nan
    return pd.DataFrame(values, index=index, columns=list(FEATURE_NAMES))


def _div(a: object, b: object, fill: float = 0.0) -> np.ndarray:
    """a / b, with `fill` where b == 0 and NaN wherever an input is NaN."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(b == 0, fill, a / np.where(b == 0, 1.0, b))
    out[np.isnan(a) | np.isnan(b)] = np.nan
    return out


def _slope(x: np.ndarray, window: int) -> np.ndarray:
    return talib.LINEARREG_SLOPE(x, timeperiod=window)


def _trend(out: dict, o, h, lo, c, index) -> None:  # type: ignore[no-untyped-def]
    for n in (10, 20, 50, 100, 200):
        out[f"sma_ratio_{n}"] = c / talib.SMA(c, timeperiod=n) - 1
    for n in (12, 26, 50):
        out[f"ema_ratio_{n}"] = c / talib.EMA(c, timeperiod=n) - 1
    macd, signal, hist = talib.MACD(c, fastperiod=12, slowperiod=26, signalperiod=9)
    out["macd"], out["macd_signal"], out["macd_hist"] = macd / c, signal / c, hist / c
    out["adx_14"] = talib.ADX(h, lo, c, timeperiod=14) / 100
    out["plus_di_14"] = talib.PLUS_DI(h, lo, c, timeperiod=14) / 100
    out["minus_di_14"] = talib.MINUS_DI(h, lo, c, timeperiod=14) / 100
    down, up = talib.AROON(h, lo, timeperiod=25)
    out["aroon_up_25"], out["aroon_down_25"] = up / 100, down / 100
    out["aroon_osc_25"] = talib.AROONOSC(h, lo, timeperiod=25) / 100
    hs, ls = pd.Series(h, index=index), pd.Series(lo, index=index)
    tenkan = (hs.rolling(9).max() + ls.rolling(9).min()) / 2
    kijun = (hs.rolling(26).max() + ls.rolling(26).min()) / 2
    span_a = ((tenkan + kijun) / 2).shift(26)  # what the chart shows at t was computed at t-26
    span_b = ((hs.rolling(52).max() + ls.rolling(52).min()) / 2).shift(26)
    out["ichimoku_tenkan_dist"] = c / tenkan.to_numpy() - 1
    out["ichimoku_kijun_dist"] = c / kijun.to_numpy() - 1
    out["ichimoku_span_a_dist"] = c / span_a.to_numpy() - 1
    out["ichimoku_span_b_dist"] = c / span_b.to_numpy() - 1
    out["linreg_slope_20"] = _slope(c, 20) / c


def _momentum(out: dict, h, lo, c, v, log_c: pd.Series, close: pd.Series) -> None:  # type: ignore[no-untyped-def]
    for n in (1, 3, 6, 12, 24):
        out[f"ret_{n}"] = log_c.diff(n)
    for n in (7, 14, 28):
        out[f"rsi_{n}"] = talib.RSI(c, timeperiod=n) / 100
    k, d = talib.STOCH(
        h, lo, c, fastk_period=14, slowk_period=3, slowk_matype=0, slowd_period=3, slowd_matype=0
    )
    out["stoch_k_14"], out["stoch_d_14"] = k / 100, d / 100
    out["willr_14"] = talib.WILLR(h, lo, c, timeperiod=14) / 100
    out["cci_20"] = talib.CCI(h, lo, c, timeperiod=20) / 100
    out["roc_10"] = talib.ROC(c, timeperiod=10) / 100
    out["mfi_14"] = talib.MFI(h, lo, c, v, timeperiod=14) / 100
    diff = close.diff()
    num = diff.ewm(span=25, adjust=False).mean().ewm(span=13, adjust=False).mean()
    den = diff.abs().ewm(span=25, adjust=False).mean().ewm(span=13, adjust=False).mean()
    out["tsi_25_13"] = _div(num, den)
    out["ultosc"] = talib.ULTOSC(h, lo, c, timeperiod1=7, timeperiod2=14, timeperiod3=28) / 100


def _volatility(out: dict, o, h, lo, c, index, r1: pd.Series) -> None:  # type: ignore[no-untyped-def]
    out["atr_pct_14"] = talib.ATR(h, lo, c, timeperiod=14) / c
    out["atr_pct_28"] = talib.ATR(h, lo, c, timeperiod=28) / c
    upper, middle, lower = talib.BBANDS(c, timeperiod=20, nbdevup=2.0, nbdevdn=2.0)
    out["bb_pos_20"] = _div(c - lower, upper - lower, fill=0.5)
    out["bb_width_20"] = (upper - lower) / middle
    mid = talib.EMA(c, timeperiod=20)
    band = 2 * talib.ATR(h, lo, c, timeperiod=10)
    out["kc_pos_20"] = _div(c - (mid - band), 2 * band, fill=0.5)
    out["kc_width_20"] = 2 * band / mid
    hl = pd.Series(np.log(h / lo), index=index)
    co = pd.Series(np.log(c / o), index=index)
    out["parkinson_24"] = np.sqrt((hl**2).rolling(24).mean() / (4 * np.log(2)))
    gk = 0.5 * hl**2 - (2 * np.log(2) - 1) * co**2
    out["garman_klass_24"] = np.sqrt(gk.rolling(24).mean().clip(lower=0))
    n = 24
    overnight = pd.Series(np.log(o / np.roll(c, 1)), index=index)
    overnight.iloc[0] = np.nan
    rs = pd.Series(np.log(h / c) * np.log(h / o) + np.log(lo / c) * np.log(lo / o), index=index)
    k = 0.34 / (1.34 + (n + 1) / (n - 1))
    yz = overnight.rolling(n).var() + k * co.rolling(n).var() + (1 - k) * rs.rolling(n).mean()
    out["yang_zhang_24"] = np.sqrt(yz.clip(lower=0))
    for w in (12, 24, 72, 168):
        out[f"rv_{w}"] = r1.rolling(w).std()
    rv24 = out["rv_24"]
    out["vol_of_vol_72"] = _div(rv24.rolling(72).std(), rv24.rolling(72).mean())


def _volume(out: dict, h, lo, c, v, close: pd.Series, volume: pd.Series) -> None:  # type: ignore[no-untyped-def]
    v_sma14 = talib.SMA(v, timeperiod=14)
    out["obv_slope_14"] = _div(_slope(talib.OBV(c, v), 14), v_sma14)
    tp = (h + lo + c) / 3
    pv = pd.Series(tp * v, index=close.index)
    out["vwap_dist_24"] = _div(c, _div(pv.rolling(24).sum(), volume.rolling(24).sum(), np.nan)) - 1
    for w in (24, 72):
        mean, std = volume.rolling(w).mean(), volume.rolling(w).std()
        out[f"vol_z_{w}"] = _div(volume - mean, std)
    out["volume_ratio_24"] = _div(v, volume.rolling(24).mean().to_numpy(), fill=1.0)
    mfm = _div((c - lo) - (h - c), h - lo)
    mfv = pd.Series(mfm * v, index=close.index)
    out["cmf_20"] = _div(mfv.rolling(20).sum(), volume.rolling(20).sum())
    ad = talib.AD(h, lo, c, v)
    out["ad_slope_14"] = _div(_slope(ad, 14), v_sma14)
    out["adosc_3_10"] = _div(
        talib.ADOSC(h, lo, c, v, fastperiod=3, slowperiod=10), talib.SMA(v, timeperiod=10)
    )
    vpt = (volume * close.pct_change()).fillna(0.0).cumsum().to_numpy()
    vpt[0] = np.nan
    out["vpt_slope_14"] = _div(_slope(vpt, 14), v_sma14)
    out["log_volume_change"] = np.log1p(volume).diff()


def _microstructure(out: dict, o, h, lo, c, v, close: pd.Series, r1: pd.Series, index) -> None:  # type: ignore[no-untyped-def]
    rng = h - lo
    out["hl_range"] = rng / c
    out["body_ratio"] = _div(c - o, rng)
    out["upper_wick_ratio"] = _div(h - np.maximum(o, c), rng)
    out["lower_wick_ratio"] = _div(np.minimum(o, c) - lo, rng)
    out["close_location"] = _div(c - lo, rng, fill=0.5)
    out["open_gap"] = o / close.shift(1).to_numpy() - 1
    hs, ls = pd.Series(h, index=index), pd.Series(lo, index=index)
    beta = np.log(hs / ls) ** 2 + np.log(hs.shift(1) / ls.shift(1)) ** 2
    gamma = np.log(np.maximum(hs, hs.shift(1)) / np.minimum(ls, ls.shift(1))) ** 2
    den = 3 - 2 * np.sqrt(2)
    alpha = (np.sqrt(2 * beta) - np.sqrt(beta)) / den - np.sqrt(gamma / den)
    spread = (2 * (np.exp(alpha) - 1) / (1 + np.exp(alpha))).clip(lower=0)
    out["corwin_schultz_24"] = spread.rolling(24).mean()
    dc = close.diff()
    cov = dc.rolling(24).cov(dc.shift(1))
    out["roll_spread_24"] = 2 * np.sqrt((-cov).clip(lower=0)) / close
    dollar = pd.Series(c * v, index=index)
    illiq = r1.abs() / dollar.where(dollar > 0)
    out["amihud_24"] = illiq.rolling(24, min_periods=20).mean() * 1e6
    x = np.sign(r1) * np.sqrt(dollar)
    out["kyle_lambda_24"] = _div(r1.rolling(24).cov(x), x.rolling(24).var()) * 1e3
    hlr = pd.Series(rng / c, index=index)
    out["range_z_24"] = _div(hlr - hlr.rolling(24).mean(), hlr.rolling(24).std())


def _time(out: dict, index: pd.DatetimeIndex) -> None:  # type: ignore[type-arg]
    hour = index.hour.to_numpy()
    dow = index.dayofweek.to_numpy()
    month = index.month.to_numpy() - 1
    out["hour_sin"], out["hour_cos"] = np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24)
    out["dow_sin"], out["dow_cos"] = np.sin(2 * np.pi * dow / 7), np.cos(2 * np.pi * dow / 7)
    out["month_sin"] = np.sin(2 * np.pi * month / 12)
    out["month_cos"] = np.cos(2 * np.pi * month / 12)
    out["session_asia"] = ((hour >= 0) & (hour < 8)).astype(float)
    out["session_europe"] = ((hour >= 7) & (hour < 16)).astype(float)
    out["session_us"] = ((hour >= 13) & (hour < 21)).astype(float)


def _regime(out: dict, c, close: pd.Series, computed: dict) -> None:  # type: ignore[no-untyped-def]
    adx = np.asarray(computed["adx_14"])
    above = np.asarray(computed["ema_ratio_50"]) > 0
    trending = adx > 0.25
    regime = np.where(trending & above, 1.0, np.where(trending & ~above, -1.0, 0.0))
    regime[np.isnan(adx)] = np.nan
    out["trend_regime"] = regime
    out["vol_regime_pct"] = computed["rv_24"].rolling(168).rank(pct=True)
    log_c = np.log(close)
    lags = np.array([2, 4, 8, 16, 32], dtype=np.float64)
    x = np.log(lags) - np.log(lags).mean()
    ys = [np.log(log_c.diff(int(t)).rolling(128).std()) for t in lags]
    y_mean = sum(ys) / len(ys)
    out["hurst_128"] = sum(xi * (yi - y_mean) for xi, yi in zip(x, ys, strict=True)) / (x**2).sum()
    step = close.diff().abs()
    for n in (10, 30):
        out[f"efficiency_ratio_{n}"] = _div(close.diff(n).abs(), step.rolling(n).sum())


def _cross_asset(
    out: dict,
    index: pd.DatetimeIndex,
    r1: pd.Series,  # type: ignore[type-arg]
    reference: pd.DataFrame,
) -> None:
    if reference is None or reference.empty:
        raise MissingReference("cross-asset features need the reference (BTC) candles")
    ref_close = reference.set_index("open_time")["close"].astype(np.float64).reindex(index)
    ref_log = np.log(ref_close)
    ref_r1 = ref_log.diff()
    out["ref_ret_1"] = ref_r1
    out["ref_ret_24"] = ref_log.diff(24)
    out["ref_corr_72"] = r1.rolling(72).corr(ref_r1)
    out["ref_beta_72"] = _div(r1.rolling(72).cov(ref_r1), ref_r1.rolling(72).var(), np.nan)
