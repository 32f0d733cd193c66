"""The feature set, declared once: name, group, lookback, definition.

The feature-set version is a hash of these declarations plus FEATURE_CODE_VERSION; it is stored
with every model and every decision, so a model is only ever fed the features it was trained on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

# Bump when a definition's code changes without its declaration changing.
FEATURE_CODE_VERSION = "1"


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    name: str
    group: str
    lookback: int
    definition: str


FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("ret_1", "momentum", 1, "log return over 1 candle"),
    FeatureSpec("ret_3", "momentum", 3, "log return over 3 candles"),
    FeatureSpec("ret_6", "momentum", 6, "log return over 6 candles"),
    FeatureSpec("ret_12", "momentum", 12, "log return over 12 candles"),
    FeatureSpec("ret_24", "momentum", 24, "log return over 24 candles"),
    FeatureSpec("rsi_14", "momentum", 15, "TA-Lib RSI(14) / 100"),
    FeatureSpec("mfi_14", "volume", 15, "TA-Lib MFI(14) / 100"),
    FeatureSpec("ema_12_ratio", "trend", 12, "close / TA-Lib EMA(12) - 1"),
    FeatureSpec("ema_26_ratio", "trend", 26, "close / TA-Lib EMA(26) - 1"),
    FeatureSpec("sma_50_ratio", "trend", 50, "close / TA-Lib SMA(50) - 1"),
    FeatureSpec("sma_100_ratio", "trend", 100, "close / TA-Lib SMA(100) - 1"),
    FeatureSpec("macd", "trend", 34, "TA-Lib MACD(12,26,9) line / close"),
    FeatureSpec("macd_signal", "trend", 34, "TA-Lib MACD(12,26,9) signal / close"),
    FeatureSpec("macd_hist", "trend", 34, "TA-Lib MACD(12,26,9) histogram / close"),
    FeatureSpec("adx_14", "trend", 28, "TA-Lib ADX(14) / 100"),
    FeatureSpec("atr_14_pct", "volatility", 15, "TA-Lib ATR(14) / close"),
    FeatureSpec("bb_pos_20", "volatility", 20, "(close - lower) / (upper - lower), BBANDS(20, 2)"),
    FeatureSpec("bb_width_20", "volatility", 20, "(upper - lower) / middle, BBANDS(20, 2)"),
    FeatureSpec("rv_24", "volatility", 25, "std of 1-candle log returns over 24 candles"),
    FeatureSpec("rv_72", "volatility", 73, "std of 1-candle log returns over 72 candles"),
    FeatureSpec("vol_z_24", "volume", 24, "(volume - mean24) / std24 of volume"),
    FeatureSpec("hl_range", "microstructure", 1, "(high - low) / close of the candle"),
    FeatureSpec("body_ratio", "microstructure", 1, "(close - open) / (high - low), 0 if flat"),
    FeatureSpec("hour_sin", "time", 0, "sin(2π hour/24) of the candle's open time"),
    FeatureSpec("hour_cos", "time", 0, "cos(2π hour/24) of the candle's open time"),
    FeatureSpec("dow_sin", "time", 0, "sin(2π weekday/7) of the candle's open time"),
    FeatureSpec("dow_cos", "time", 0, "cos(2π weekday/7) of the candle's open time"),
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
# Rows before this many candles carry warm-up NaNs and are dropped, never filled.
MAX_LOOKBACK: int = max(f.lookback for f in FEATURES)


def feature_set_version() -> str:
    payload = json.dumps(
        {"code": FEATURE_CODE_VERSION, "features": [asdict(f) for f in FEATURES]}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
