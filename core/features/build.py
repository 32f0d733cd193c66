"""Compute the feature frame from a candle frame. Every value at row t uses rows <= t only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import talib

from core.features.registry import FEATURE_NAMES


def build_features(candles: pd.DataFrame) -> pd.DataFrame:
    """Feature frame indexed by open_time; warm-up rows hold NaN (drop them with dropna)."""
    o = candles["open"].to_numpy(dtype=np.float64)
    h = candles["high"].to_numpy(dtype=np.float64)
    lo = candles["low"].to_numpy(dtype=np.float64)
    c = candles["close"].to_numpy(dtype=np.float64)
    v = candles["volume"].to_numpy(dtype=np.float64)
    index = pd.DatetimeIndex(candles["open_time"], name="open_time")
    close = pd.Series(c, index=index)
    volume = pd.Series(v, index=index)
    log_close = np.log(close)

    out: dict[str, np.ndarray | pd.Series] = {}
    for n in (1, 3, 6, 12, 24):
        out[f"ret_{n}"] = log_close.diff(n)
    out["rsi_14"] = talib.RSI(c, timeperiod=14) / 100.0
    out["mfi_14"] = talib.MFI(h, lo, c, v, timeperiod=14) / 100.0
    out["ema_12_ratio"] = c / talib.EMA(c, timeperiod=12) - 1.0
    out["ema_26_ratio"] = c / talib.EMA(c, timeperiod=26) - 1.0
    out["sma_50_ratio"] = c / talib.SMA(c, timeperiod=50) - 1.0
    out["sma_100_ratio"] = c / talib.SMA(c, timeperiod=100) - 1.0
    macd, signal, hist = talib.MACD(c, fastperiod=12, slowperiod=26, signalperiod=9)
    out["macd"], out["macd_signal"], out["macd_hist"] = macd / c, signal / c, hist / c
    out["adx_14"] = talib.ADX(h, lo, c, timeperiod=14) / 100.0
    out["atr_14_pct"] = talib.ATR(h, lo, c, timeperiod=14) / c
    upper, middle, lower = talib.BBANDS(c, timeperiod=20, nbdevup=2.0, nbdevdn=2.0)
    band = upper - lower
    with np.errstate(divide="ignore", invalid="ignore"):
        out["bb_pos_20"] = np.where(band > 0, (c - lower) / band, 0.5)
    out["bb_pos_20"] = np.where(np.isnan(band), np.nan, out["bb_pos_20"])
    out["bb_width_20"] = band / middle
    ret_1 = log_close.diff()
    out["rv_24"] = ret_1.rolling(24).std()
    out["rv_72"] = ret_1.rolling(72).std()
    vol_mean = volume.rolling(24).mean()
    vol_std = volume.rolling(24).std()
    # A flat-volume window has no spread: its z-score is 0, not inf; warm-up stays NaN.
    vol_z = (volume - vol_mean) / vol_std.where(vol_std > 0)
    out["vol_z_24"] = vol_z.where(vol_std > 0, 0.0).where(vol_std.notna())
    rng = h - lo
    out["hl_range"] = rng / c
    with np.errstate(divide="ignore", invalid="ignore"):
        out["body_ratio"] = np.where(rng > 0, (c - o) / rng, 0.0)
    hour = index.hour.to_numpy()
    dow = index.dayofweek.to_numpy()
    out["hour_sin"] = np.sin(2 * np.pi * hour / 24)
    out["hour_cos"] = np.cos(2 * np.pi * hour / 24)
    out["dow_sin"] = np.sin(2 * np.pi * dow / 7)
    out["dow_cos"] = np.cos(2 * np.pi * dow / 7)

    frame = pd.DataFrame(
        {name: np.asarray(out[name], dtype=np.float64) for name in FEATURE_NAMES}, index=index
    )
    return frame.replace([np.inf, -np.inf], np.nan)
