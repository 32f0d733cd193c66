"""Feature computation speed on real candles, with pandas-ta-classic as the reference.

Run: .venv/bin/python -m bench.features [--repeats N]  (from the repo root)

- full: every feature on 100,000 real Binance 5m candles (BTC/USDT then ETH/USDT, the ETH
  times shifted to continue BTC's grid: the prices are real, the join is only for length);
- incremental: the newest 100 candles computed from a bounded window (INCREMENTAL_WINDOW of
  history before them), as the live decision flow does;
- reference: pandas-ta-classic (TA-Lib switched off) computing the standard indicators the two
  share, on the same 100,000 candles, in the same run.
Targets (issue 4): full < 1 s, >= 3x faster than the reference, incremental < 5 ms.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from core.features.build import INCREMENTAL_WINDOW, build_features
from core.features.registry import FEATURE_NAMES, GROUPS
from infra.shared_data import locate_shared_data

ROOT = Path(__file__).resolve().parents[1]
SHARED = locate_shared_data()
DATA = SHARED / "ohlcv" / "genetrader-binance-spot-2024"
ROWS = 100_000


def real_5m_candles(rows: int = ROWS) -> pd.DataFrame:
    btc = pd.read_feather(DATA / "BTC_USDT-5m.feather").rename(columns={"date": "open_time"})
    eth = pd.read_feather(DATA / "ETH_USDT-5m.feather").rename(columns={"date": "open_time"})
    eth = eth.head(rows - len(btc)).copy()
    step = pd.Timedelta(minutes=5)
    eth["open_time"] = btc["open_time"].iloc[-1] + step * (pd.RangeIndex(len(eth)) + 1)
    return pd.concat([btc, eth], ignore_index=True)


def timed(fn: Callable[[], object], repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def reference_indicators(c: pd.DataFrame) -> None:
    import pandas_ta_classic as pta

    h, lo, cl, v = c["high"], c["low"], c["close"], c["volume"]
    for n in (10, 20, 50, 100, 200):
        pta.sma(cl, n, talib=False)
    for n in (12, 26, 50):
        pta.ema(cl, n, talib=False)
    for n in (7, 14, 28):
        pta.rsi(cl, n, talib=False)
    pta.macd(cl, 12, 26, 9, talib=False)
    pta.adx(h, lo, cl, 14, talib=False)
    pta.aroon(h, lo, 25, talib=False)
    pta.stoch(h, lo, cl, 14, 3, 3, talib=False)
    pta.willr(h, lo, cl, 14, talib=False)
    pta.cci(h, lo, cl, 20, talib=False)
    pta.roc(cl, 10, talib=False)
    pta.mfi(h, lo, cl, v, 14, talib=False)
    pta.tsi(cl, 25, 13)
    pta.uo(h, lo, cl, 7, 14, 28, talib=False)
    pta.atr(h, lo, cl, 14, talib=False)
    pta.atr(h, lo, cl, 28, talib=False)
    pta.bbands(cl, 20, 2, talib=False)
    pta.kc(h, lo, cl, 20, 2)
    pta.obv(cl, v, talib=False)
    pta.ad(h, lo, cl, v, talib=False)
    pta.adosc(h, lo, cl, v, fast=3, slow=10, talib=False)
    pta.cmf(h, lo, cl, v, None, 20, talib=False)


def our_standard_indicators(c: pd.DataFrame) -> None:
    """The same 29 indicators through the TA-Lib calls core/features/build.py makes."""
    import talib

    h, lo, cl, v = (c[k].to_numpy(dtype="float64") for k in ("high", "low", "close", "volume"))
    for n in (10, 20, 50, 100, 200):
        talib.SMA(cl, timeperiod=n)
    for n in (12, 26, 50):
        talib.EMA(cl, timeperiod=n)
    for n in (7, 14, 28):
        talib.RSI(cl, timeperiod=n)
    talib.MACD(cl, fastperiod=12, slowperiod=26, signalperiod=9)
    talib.ADX(h, lo, cl, timeperiod=14)
    talib.PLUS_DI(h, lo, cl, timeperiod=14)
    talib.MINUS_DI(h, lo, cl, timeperiod=14)
    talib.AROON(h, lo, timeperiod=25)
    talib.STOCH(h, lo, cl, fastk_period=14, slowk_period=3, slowd_period=3)
    talib.WILLR(h, lo, cl, timeperiod=14)
    talib.CCI(h, lo, cl, timeperiod=20)
    talib.ROC(cl, timeperiod=10)
    talib.MFI(h, lo, cl, v, timeperiod=14)
    diff = pd.Series(cl).diff()  # TSI, as build.py computes it
    diff.ewm(span=25, adjust=False).mean().ewm(span=13, adjust=False).mean()
    diff.abs().ewm(span=25, adjust=False).mean().ewm(span=13, adjust=False).mean()
    talib.ULTOSC(h, lo, cl, timeperiod1=7, timeperiod2=14, timeperiod3=28)
    talib.ATR(h, lo, cl, timeperiod=14)
    talib.ATR(h, lo, cl, timeperiod=28)
    talib.BBANDS(cl, timeperiod=20, nbdevup=2.0, nbdevdn=2.0)
    talib.EMA(cl, timeperiod=20)
    talib.ATR(h, lo, cl, timeperiod=10)
    talib.OBV(cl, v)
    talib.AD(h, lo, cl, v)
    talib.ADOSC(h, lo, cl, v, fastperiod=3, slowperiod=10)
    mfm = ((cl - lo) - (h - cl)) / (h - lo)  # CMF, as build.py computes it
    pd.Series(mfm * v).rolling(20).sum() / pd.Series(v).rolling(20).sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    candles = real_5m_candles()
    assert len(candles) == ROWS
    newest = candles.tail(INCREMENTAL_WINDOW + 100)

    full_s = timed(lambda: build_features(candles, candles), args.repeats)
    inc_s = timed(lambda: build_features(newest, newest).tail(100), args.repeats * 10)
    ref_s = timed(lambda: reference_indicators(candles), max(1, args.repeats // 2))
    subset_s = timed(lambda: our_standard_indicators(candles), args.repeats)

    print(f"features: {len(FEATURE_NAMES)} in {len(GROUPS)} groups {GROUPS}")
    print(f"candles: {ROWS:,} real 5m (BTC/USDT + ETH/USDT, Binance 2024)")
    print(f"full set:           {full_s:.3f} s  ({ROWS / full_s:,.0f} candles/s)   target < 1 s")
    print(
        f"incremental (100):  {inc_s * 1e3:.2f} ms from a {INCREMENTAL_WINDOW}-candle window"
        f"   target < 5 ms"
    )
    print(f"pandas-ta-classic:  {ref_s:.3f} s for the 29 shared standard indicators (TA-Lib off)")
    print(f"ours, same 29:      {subset_s:.3f} s")
    print(f"ratio reference / ours, common subset: {ref_s / subset_s:.1f}x   target >= 3x")
    print(f"ratio reference / ours, all {len(FEATURE_NAMES)} features: {ref_s / full_s:.1f}x")


if __name__ == "__main__":
    main()
