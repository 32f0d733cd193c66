"""Our features against two independent implementations, on real candles, after warm-up.

`ta` (bukosabino/ta) and `pandas-ta-classic` with TA-Lib switched off: both pure pandas.
`ta`'s Aroon counts 25 values where TA-Lib counts period + 1, so Aroon is checked against
pandas-ta-classic only.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from core.features.build import build_features

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import pandas_ta_classic as pta
    import ta

WARMUP = 400
TOLERANCE = 1e-9

Ref = Callable[[pd.Series, pd.Series, pd.Series, pd.Series], pd.Series]

REFERENCES: dict[str, tuple[str, Ref]] = {
    "ta:rsi_14": ("rsi_14", lambda h, lo, c, v: ta.momentum.RSIIndicator(c, 14).rsi() / 100),
    "ta:sma_ratio_50": (
        "sma_ratio_50",
        lambda h, lo, c, v: c / ta.trend.SMAIndicator(c, 50).sma_indicator() - 1,
    ),
    "ta:ema_ratio_26": (
        "ema_ratio_26",
        lambda h, lo, c, v: c / ta.trend.EMAIndicator(c, 26).ema_indicator() - 1,
    ),
    "ta:macd": ("macd", lambda h, lo, c, v: ta.trend.MACD(c, 26, 12, 9).macd() / c),
    "ta:macd_signal": (
        "macd_signal",
        lambda h, lo, c, v: ta.trend.MACD(c, 26, 12, 9).macd_signal() / c,
    ),
    "ta:adx_14": ("adx_14", lambda h, lo, c, v: ta.trend.ADXIndicator(h, lo, c, 14).adx() / 100),
    "ta:atr_pct_14": (
        "atr_pct_14",
        lambda h, lo, c, v: ta.volatility.AverageTrueRange(h, lo, c, 14).average_true_range() / c,
    ),
    "ta:bb_width_20": (
        "bb_width_20",
        lambda h, lo, c, v: ta.volatility.BollingerBands(c, 20, 2).bollinger_wband() / 100,
    ),
    "ta:bb_pos_20": (
        "bb_pos_20",
        lambda h, lo, c, v: ta.volatility.BollingerBands(c, 20, 2).bollinger_pband(),
    ),
    "ta:willr_14": (
        "willr_14",
        lambda h, lo, c, v: ta.momentum.WilliamsRIndicator(h, lo, c, 14).williams_r() / 100,
    ),
    "ta:cci_20": ("cci_20", lambda h, lo, c, v: ta.trend.CCIIndicator(h, lo, c, 20).cci() / 100),
    "ta:roc_10": ("roc_10", lambda h, lo, c, v: ta.momentum.ROCIndicator(c, 10).roc() / 100),
    "ta:mfi_14": (
        "mfi_14",
        lambda h, lo, c, v: ta.volume.MFIIndicator(h, lo, c, v, 14).money_flow_index() / 100,
    ),
    "ta:stoch_k_14": (
        "stoch_k_14",
        lambda h, lo, c, v: ta.momentum.StochasticOscillator(h, lo, c, 14, 3).stoch_signal() / 100,
    ),
    "ta:cmf_20": (
        "cmf_20",
        lambda h, lo, c, v: ta.volume.ChaikinMoneyFlowIndicator(
            h, lo, c, v, 20
        ).chaikin_money_flow(),
    ),
    "ta:tsi_25_13": (
        "tsi_25_13",
        lambda h, lo, c, v: ta.momentum.TSIIndicator(c, 25, 13).tsi() / 100,
    ),
    "ta:ultosc": (
        "ultosc",
        lambda h, lo, c, v: (
            ta.momentum.UltimateOscillator(h, lo, c, 7, 14, 28).ultimate_oscillator() / 100
        ),
    ),
    "ta:ichimoku_kijun_dist": (
        "ichimoku_kijun_dist",
        lambda h, lo, c, v: (
            c / ta.trend.IchimokuIndicator(h, lo, 9, 26, 52).ichimoku_base_line() - 1
        ),
    ),
    "pta:rsi_14": ("rsi_14", lambda h, lo, c, v: pta.rsi(c, 14, talib=False) / 100),
    "pta:adx_14": (
        "adx_14",
        lambda h, lo, c, v: pta.adx(h, lo, c, 14, talib=False)["ADX_14"] / 100,
    ),
    "pta:atr_pct_14": ("atr_pct_14", lambda h, lo, c, v: pta.atr(h, lo, c, 14, talib=False) / c),
    "pta:cci_20": ("cci_20", lambda h, lo, c, v: pta.cci(h, lo, c, 20, talib=False) / 100),
    "pta:mfi_14": ("mfi_14", lambda h, lo, c, v: pta.mfi(h, lo, c, v, 14, talib=False) / 100),
    "pta:willr_14": ("willr_14", lambda h, lo, c, v: pta.willr(h, lo, c, 14, talib=False) / 100),
    "pta:aroon_osc_25": (
        "aroon_osc_25",
        lambda h, lo, c, v: pta.aroon(h, lo, 25, talib=False)["AROONOSC_25"] / 100,
    ),
    "pta:macd_hist": (
        "macd_hist",
        lambda h, lo, c, v: pta.macd(c, 12, 26, 9, talib=False)["MACDh_12_26_9"] / c,
    ),
    "pta:tsi_25_13": ("tsi_25_13", lambda h, lo, c, v: pta.tsi(c, 25, 13)["TSI_25_13_13"] / 100),
    "pta:stoch_k_14": (
        "stoch_k_14",
        lambda h, lo, c, v: pta.stoch(h, lo, c, 14, 3, 3, talib=False)["STOCHk_14_3_3"] / 100,
    ),
    "pta:cmf_20": ("cmf_20", lambda h, lo, c, v: pta.cmf(h, lo, c, v, None, 20, talib=False)),
    "pta:ultosc": ("ultosc", lambda h, lo, c, v: pta.uo(h, lo, c, 7, 14, 28, talib=False) / 100),
}


@pytest.fixture(scope="module")
def candles(eth_1h: pd.DataFrame) -> pd.DataFrame:
    return eth_1h.head(3000).reset_index(drop=True)


@pytest.fixture(scope="module")
def ours(candles: pd.DataFrame, btc_1h: pd.DataFrame) -> pd.DataFrame:
    return build_features(candles, btc_1h.head(3000)).reset_index(drop=True)


@pytest.mark.parametrize("key", sorted(REFERENCES))
def test_feature_when_compared_with_second_implementation_then_agrees(
    candles: pd.DataFrame, ours: pd.DataFrame, key: str
) -> None:
    feature, reference = REFERENCES[key]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = np.asarray(
            reference(candles["high"], candles["low"], candles["close"], candles["volume"]),
            dtype=np.float64,
        )
    mine = ours[feature].to_numpy()
    np.testing.assert_allclose(
        mine[WARMUP:], theirs[WARMUP:], rtol=0, atol=TOLERANCE, err_msg=f"{feature} vs {key}"
    )
