"""Time comes in as an argument: a clock, never datetime.now() inside the domain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(tz=UTC)


class FixedClock:
    """Reads one set time: a replayed candle's close, or a test's moment."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now


class FakeClock(FixedClock):
    """A FixedClock that tests move forward."""

    def advance(self, **delta: float) -> None:
        self._now += timedelta(**delta)
