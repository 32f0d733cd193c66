"""EMA cross + RSI filter strategy for the freqtrade reference benchmark.

Shaped like freqtrade's sample strategy (TA-Lib indicators in populate_indicators, long only,
signal exits, fixed stoploss), reduced to the rules our own backtest bench implements, so both
engines evaluate the same signals on the same candles:
- enter long when EMA(12) crosses above EMA(26) and RSI(14) < 70;
- exit when EMA(12) crosses below EMA(26) or RSI(14) > 80;
- stoploss -10 %, no ROI table (its single 10000 % step never fires).

Loaded by freqtrade from this folder (`--strategy-path`); it runs in freqtrade's own venv.
"""

from __future__ import annotations

import talib.abstract as ta
from freqtrade.strategy import IStrategy
from pandas import DataFrame, Series

EMA_FAST = 12
EMA_SLOW = 26
RSI_PERIOD = 14
RSI_ENTRY_MAX = 70.0
RSI_EXIT_MIN = 80.0


def crossed_above(a: Series, b: Series) -> Series:
    """True on the candle where `a` moves from <= `b` to > `b` (qtpylib's definition)."""
    return (a > b) & (a.shift(1) <= b.shift(1))


class EmaRsiStrategy(IStrategy):
    INTERFACE_VERSION = 3
    timeframe = "5m"
    can_short = False
    minimal_roi = {"0": 100.0}  # noqa: RUF012 - freqtrade reads this class attribute
    stoploss = -0.10
    trailing_stop = False
    process_only_new_candles = True
    use_exit_signal = True
    exit_profit_only = False
    ignore_roi_if_entry_signal = False
    # EMA(26) and RSI(14) settle well within 100 candles (TA-Lib seeds EMA with an SMA).
    startup_candle_count = 100
    order_types = {  # noqa: RUF012 - freqtrade reads this class attribute
        "entry": "limit",
        "exit": "limit",
        "stoploss": "market",
        "stoploss_on_exchange": False,
    }

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["ema_fast"] = ta.EMA(dataframe, timeperiod=EMA_FAST)
        dataframe["ema_slow"] = ta.EMA(dataframe, timeperiod=EMA_SLOW)
        dataframe["rsi"] = ta.RSI(dataframe, timeperiod=RSI_PERIOD)
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        entry = (
            crossed_above(dataframe["ema_fast"], dataframe["ema_slow"])
            & (dataframe["rsi"] < RSI_ENTRY_MAX)
            & (dataframe["volume"] > 0)
        )
        dataframe.loc[entry, "enter_long"] = 1
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        exit_ = crossed_above(dataframe["ema_slow"], dataframe["ema_fast"]) | (
            dataframe["rsi"] > RSI_EXIT_MIN
        )
        dataframe.loc[exit_, "exit_long"] = 1
        return dataframe
