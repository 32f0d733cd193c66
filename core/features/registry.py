"""The feature set, declared once: name, group, parameters, lookback, definition, reference.

The feature-set version hashes these declarations plus FEATURE_CODE_VERSION; it is stored with
every model and decision, so a model is only ever fed the features it was trained on.
`lookback` is the number of past candles (the current one included) a value needs; rows before
it are NaN (warm-up), never filled.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field

# Bump when a definition's code changes without its declaration changing.
FEATURE_CODE_VERSION = "2"

TALIB = "TA-Lib"


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    name: str
    group: str
    lookback: int
    definition: str
    reference: str
    params: dict[str, float] = field(default_factory=dict)


def _f(
    name: str, group: str, lookback: int, definition: str, reference: str, **params: float
) -> FeatureSpec:
    return FeatureSpec(name, group, lookback, definition, reference, dict(params))


FEATURES: tuple[FeatureSpec, ...] = (
    # -- trend ------------------------------------------------------------------------------
    *(
        _f(f"sma_ratio_{n}", "trend", n, f"close / SMA({n}) - 1", TALIB, window=n)
        for n in (10, 20, 50, 100, 200)
    ),
    *(
        _f(f"ema_ratio_{n}", "trend", n * 4, f"close / EMA({n}) - 1", TALIB, window=n)
        for n in (12, 26, 50)
    ),
    _f("macd", "trend", 140, "MACD(12,26,9) line / close", TALIB, fast=12, slow=26, signal=9),
    _f("macd_signal", "trend", 140, "MACD(12,26,9) signal / close", TALIB),
    _f("macd_hist", "trend", 140, "MACD(12,26,9) histogram / close", TALIB),
    _f("adx_14", "trend", 150, "ADX(14) / 100", TALIB, window=14),
    _f("plus_di_14", "trend", 150, "+DI(14) / 100", TALIB, window=14),
    _f("minus_di_14", "trend", 150, "-DI(14) / 100", TALIB, window=14),
    _f("aroon_up_25", "trend", 26, "Aroon up(25) / 100", TALIB, window=25),
    _f("aroon_down_25", "trend", 26, "Aroon down(25) / 100", TALIB, window=25),
    _f("aroon_osc_25", "trend", 26, "Aroon oscillator(25) / 100", TALIB, window=25),
    _f(
        "ichimoku_tenkan_dist",
        "trend",
        9,
        "close / tenkan(9) - 1; tenkan = (HH9 + LL9) / 2",
        "Hosoda, Ichimoku Kinko Hyo",
        window=9,
    ),
    _f(
        "ichimoku_kijun_dist",
        "trend",
        26,
        "close / kijun(26) - 1; kijun = (HH26 + LL26) / 2",
        "Hosoda, Ichimoku Kinko Hyo",
        window=26,
    ),
    _f(
        "ichimoku_span_a_dist",
        "trend",
        52,
        "close / senkou A - 1; A = (tenkan + kijun) / 2 computed 26 candles earlier",
        "Hosoda, Ichimoku Kinko Hyo",
        displacement=26,
    ),
    _f(
        "ichimoku_span_b_dist",
        "trend",
        78,
        "close / senkou B - 1; B = (HH52 + LL52) / 2 computed 26 candles earlier",
        "Hosoda, Ichimoku Kinko Hyo",
        window=52,
        displacement=26,
    ),
    _f("linreg_slope_20", "trend", 20, "LINEARREG_SLOPE(close, 20) / close", TALIB, window=20),
    # -- momentum ---------------------------------------------------------------------------
    *(
        _f(f"ret_{n}", "momentum", n + 1, f"log(close / close[t-{n}])", "definition", lag=n)
        for n in (1, 3, 6, 12, 24)
    ),
    *(_f(f"rsi_{n}", "momentum", n * 10, f"RSI({n}) / 100", TALIB, window=n) for n in (7, 14, 28)),
    _f("stoch_k_14", "momentum", 20, "slow %K STOCH(14,3,3) / 100", TALIB, k=14, d=3),
    _f("stoch_d_14", "momentum", 20, "slow %D STOCH(14,3,3) / 100", TALIB, k=14, d=3),
    _f("willr_14", "momentum", 14, "Williams %R(14) / 100", TALIB, window=14),
    _f("cci_20", "momentum", 20, "CCI(20) / 100", TALIB, window=20),
    _f("roc_10", "momentum", 11, "ROC(10) / 100", TALIB, window=10),
    _f("mfi_14", "momentum", 15, "MFI(14) / 100", TALIB, window=14),
    _f(
        "tsi_25_13",
        "momentum",
        200,
        "TSI = EMA13(EMA25(Δclose)) / EMA13(EMA25(|Δclose|))",
        "Blau (1991), True Strength Index",
        slow=25,
        fast=13,
    ),
    _f("ultosc", "momentum", 29, "Ultimate Oscillator(7,14,28) / 100", TALIB),
    # -- volatility -------------------------------------------------------------------------
    _f("atr_pct_14", "volatility", 140, "ATR(14) / close", TALIB, window=14),
    _f("atr_pct_28", "volatility", 200, "ATR(28) / close", TALIB, window=28),
    _f("bb_pos_20", "volatility", 20, "(close - lower) / (upper - lower), BBANDS(20, 2)", TALIB),
    _f("bb_width_20", "volatility", 20, "(upper - lower) / middle, BBANDS(20, 2)", TALIB),
    _f(
        "kc_pos_20",
        "volatility",
        140,
        "(close - lower) / (upper - lower), EMA20 ± 2·ATR10",
        "Keltner channel (Raschke variant)",
        window=20,
        atr=10,
        mult=2,
    ),
    _f(
        "kc_width_20",
        "volatility",
        140,
        "(upper - lower) / EMA20, EMA20 ± 2·ATR10",
        "Keltner channel (Raschke variant)",
        window=20,
        atr=10,
        mult=2,
    ),
    _f(
        "parkinson_24",
        "volatility",
        24,
        "sqrt(mean(ln(H/L)²) / (4 ln 2)) over 24",
        "Parkinson (1980)",
        window=24,
    ),
    _f(
        "garman_klass_24",
        "volatility",
        24,
        "sqrt(mean(0.5 ln(H/L)² - (2 ln2 - 1) ln(C/O)²)) over 24",
        "Garman & Klass (1980)",
        window=24,
    ),
    _f(
        "yang_zhang_24",
        "volatility",
        25,
        "sqrt(σ²_overnight + k σ²_open-close + (1-k) σ²_RS)",
        "Yang & Zhang (2000)",
        window=24,
    ),
    *(
        _f(
            f"rv_{n}",
            "volatility",
            n + 1,
            f"std of 1-candle log returns over {n}",
            "definition",
            window=n,
        )
        for n in (12, 24, 72, 168)
    ),
    _f(
        "vol_of_vol_72",
        "volatility",
        97,
        "std of rv_24 over 72 / mean of rv_24 over 72",
        "definition",
        window=72,
    ),
    # -- volume -----------------------------------------------------------------------------
    _f("obv_slope_14", "volume", 15, "LINEARREG_SLOPE(OBV, 14) / SMA(volume, 14)", TALIB),
    _f(
        "vwap_dist_24",
        "volume",
        24,
        "close / (Σ typical·volume / Σ volume over 24) - 1",
        "rolling VWAP",
        window=24,
    ),
    _f("vol_z_24", "volume", 24, "(volume - mean24) / std24; 0 when flat", "definition"),
    _f("vol_z_72", "volume", 72, "(volume - mean72) / std72; 0 when flat", "definition"),
    _f("volume_ratio_24", "volume", 24, "volume / SMA(volume, 24)", "definition"),
    _f(
        "cmf_20",
        "volume",
        20,
        "Σ MFV / Σ volume over 20, MFV = ((C-L)-(H-C))/(H-L)·V",
        "Chaikin money flow",
        window=20,
    ),
    _f("ad_slope_14", "volume", 15, "LINEARREG_SLOPE(AD, 14) / SMA(volume, 14)", TALIB),
    _f("adosc_3_10", "volume", 100, "ADOSC(3, 10) / SMA(volume, 10)", TALIB),
    _f(
        "vpt_slope_14",
        "volume",
        16,
        "LINEARREG_SLOPE(VPT, 14) / SMA(volume, 14)",
        "volume price trend",
    ),
    _f("log_volume_change", "volume", 2, "log((volume + 1) / (volume[t-1] + 1))", "definition"),
    # -- microstructure (from candles) ------------------------------------------------------
    _f("hl_range", "microstructure", 1, "(high - low) / close", "definition"),
    _f("body_ratio", "microstructure", 1, "(close - open) / (high - low); 0 if flat", "definition"),
    _f(
        "upper_wick_ratio",
        "microstructure",
        1,
        "(high - max(open, close)) / (high - low)",
        "definition",
    ),
    _f(
        "lower_wick_ratio",
        "microstructure",
        1,
        "(min(open, close) - low) / (high - low)",
        "definition",
    ),
    _f(
        "close_location",
        "microstructure",
        1,
        "(close - low) / (high - low); 0.5 if flat",
        "definition",
    ),
    _f("open_gap", "microstructure", 2, "open / close[t-1] - 1", "definition"),
    _f(
        "corwin_schultz_24",
        "microstructure",
        26,
        "mean over 24 of the 2-candle high-low spread",
        "Corwin & Schultz (2012)",
        window=24,
    ),
    _f(
        "roll_spread_24",
        "microstructure",
        26,
        "2·sqrt(max(0, -cov(Δc_t, Δc_t-1))) / close",
        "Roll (1984)",
        window=24,
    ),
    _f(
        "amihud_24",
        "microstructure",
        25,
        "mean(|ret| / (close·volume)) over 24, × 1e6",
        "Amihud (2002)",
        window=24,
    ),
    _f(
        "kyle_lambda_24",
        "microstructure",
        25,
        "cov(ret, sign(ret)·sqrt(close·volume)) / var(...) over 24, × 1e3",
        "Kyle (1985), Hasbrouck proxy",
        window=24,
    ),
    _f("range_z_24", "microstructure", 24, "(hl_range - mean24) / std24", "definition"),
    # -- time -------------------------------------------------------------------------------
    _f("hour_sin", "time", 1, "sin(2π hour / 24) of the open time", "definition"),
    _f("hour_cos", "time", 1, "cos(2π hour / 24)", "definition"),
    _f("dow_sin", "time", 1, "sin(2π weekday / 7)", "definition"),
    _f("dow_cos", "time", 1, "cos(2π weekday / 7)", "definition"),
    _f("month_sin", "time", 1, "sin(2π (month - 1) / 12)", "definition"),
    _f("month_cos", "time", 1, "cos(2π (month - 1) / 12)", "definition"),
    _f("session_asia", "time", 1, "1 if 00:00 <= hour UTC < 08:00", "definition"),
    _f("session_europe", "time", 1, "1 if 07:00 <= hour UTC < 16:00", "definition"),
    _f("session_us", "time", 1, "1 if 13:00 <= hour UTC < 21:00", "definition"),
    # -- regime -----------------------------------------------------------------------------
    _f(
        "trend_regime",
        "regime",
        150,
        "+1 ADX>25 and close>EMA50, -1 ADX>25 and below, else 0",
        "definition",
    ),
    _f(
        "vol_regime_pct",
        "regime",
        192,
        "percentile of rv_24 among the last 168 values",
        "definition",
        window=168,
    ),
    _f(
        "hurst_128",
        "regime",
        160,
        "slope of log std(log p_t - log p_t-τ) on log τ, τ ∈ {2,4,8,16,32}, over 128",
        "Hurst exponent, variance-scaling estimator",
        window=128,
    ),
    _f(
        "efficiency_ratio_10",
        "regime",
        11,
        "|close - close[t-10]| / Σ|Δclose| over 10",
        "Kaufman (1995)",
        window=10,
    ),
    _f(
        "efficiency_ratio_30",
        "regime",
        31,
        "|close - close[t-30]| / Σ|Δclose| over 30",
        "Kaufman (1995)",
        window=30,
    ),
    # -- cross-asset (reference: BTC) -------------------------------------------------------
    _f(
        "ref_ret_1",
        "cross_asset",
        2,
        "log return of the reference (BTC) over 1 candle",
        "definition",
    ),
    _f(
        "ref_ret_24", "cross_asset", 25, "log return of the reference over 24 candles", "definition"
    ),
    _f(
        "ref_corr_72",
        "cross_asset",
        73,
        "rolling corr of 1-candle log returns with the reference",
        "definition",
        window=72,
    ),
    _f(
        "ref_beta_72",
        "cross_asset",
        73,
        "cov(r, r_ref) / var(r_ref) over 72",
        "definition",
        window=72,
    ),
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
GROUPS: dict[str, int] = dict(Counter(f.group for f in FEATURES))
# Rows before this many candles carry warm-up NaNs and are dropped, never filled.
MAX_LOOKBACK: int = max(f.lookback for f in FEATURES)


def feature_set_version() -> str:
    payload = json.dumps(
        {"code": FEATURE_CODE_VERSION, "features": [asdict(f) for f in FEATURES]}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
