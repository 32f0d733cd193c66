"""Timeframe strings (ccxt/freqtrade style: 1m, 5m, 1h, 4h, 1d) as durations."""

from __future__ import annotations

from datetime import timedelta

from core.errors import FatalError

_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}


class InvalidTimeframe(FatalError, ValueError):
    pass


def timeframe_seconds(timeframe: str) -> int:
    unit = timeframe[-1:]
    amount = timeframe[:-1]
    if unit not in _UNITS or not amount.isdigit() or int(amount) <= 0:
        raise InvalidTimeframe(f"unknown timeframe {timeframe!r}: expected e.g. 5m, 1h, 4h, 1d")
    return int(amount) * _UNITS[unit]


def timeframe_delta(timeframe: str) -> timedelta:
    return timedelta(seconds=timeframe_seconds(timeframe))
