"""Candles and the gaps found in them; each method is one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Integer, Select, String, bindparam, cast, func, select

from core.candles.gaps import Gap
from core.errors import FatalError
from core.records import CandleGapRecord
from core.types import datetime_to_ms, ms_to_datetime, to_decimal
from infra.ledger.dialect import insert_for
from infra.ledger.models import CandleGapRow, CandleRow
from infra.ledger.sessions import Sessions

_CANDLE_VALUES = ("open", "high", "low", "close", "volume")
_BATCH = 2000


# The reads a live decision makes, built once (infra.ledger.orders says why).
def _of_series(q: Select[Any], until: bool) -> Select[Any]:
    """`q` on one exchange, symbol and timeframe, up to `until` (open time in ms), newest
    first."""
    q = q.where(
        CandleRow.exchange == bindparam("exchange"),
        CandleRow.symbol == bindparam("symbol"),
        CandleRow.timeframe == bindparam("timeframe"),
    )
    if until:
        q = q.where(CandleRow.open_time_ms <= bindparam("until"))
    return q.order_by(CandleRow.open_time_ms.desc())


def _series_params(
    exchange: str, symbol: str, timeframe: str, until: datetime | None
) -> dict[str, Any]:
    """The values `_of_series`' statements are run with."""
    until_ms = None if until is None else datetime_to_ms(until)
    return {"exchange": exchange, "symbol": symbol, "timeframe": timeframe, "until": until_ms}


@cache
def _newest_candles(until: bool, limit: bool) -> Select[Any]:
    # The stored decimal text, parsed to floats by pandas in one go: exact (the shortest
    # repr round-trips) and without a Decimal per value, which cost most of a live run.
    values = (cast(getattr(CandleRow, c), String).label(c) for c in _CANDLE_VALUES)
    q = _of_series(select(CandleRow.open_time_ms, *values, CandleRow.is_filled), until)
    return q.limit(bindparam("limit", type_=Integer)) if limit else q


@cache
def _last_close(until: bool) -> Select[Any]:
    return _of_series(select(CandleRow.close), until).limit(1)


class StoredCandleConflict(FatalError):
    """An incoming candle differs from the real candle already stored at that time."""

    def __init__(
        self,
        source: str,
        symbol: str,
        timeframe: str,
        stored: CandleRow,
        incoming: dict[str, object],
    ) -> None:
        at = ms_to_datetime(stored.open_time_ms).isoformat()
        old = {c: str(getattr(stored, c)) for c in _CANDLE_VALUES}
        new = {c: str(incoming[c]) for c in _CANDLE_VALUES}
        super().__init__(
            f"{source}: {symbol} {timeframe} candle at {at} conflicts with the stored one: "
            f"stored {old}, incoming {new}; nothing of this batch was stored"
        )


def _rows(exchange: str, symbol: str, timeframe: str, frame: pd.DataFrame) -> list[dict]:
    filled = frame["is_filled"] if "is_filled" in frame else [False] * len(frame)
    ms = frame["open_time"].astype("int64") // 1_000_000
    columns = (frame[c] for c in _CANDLE_VALUES)
    return [
        {
            "exchange": exchange,
            "symbol": symbol,
            "timeframe": timeframe,
            "open_time_ms": int(t),
            **{c: to_decimal(float(v)) for c, v in zip(_CANDLE_VALUES, values, strict=True)},
            "is_filled": bool(f),
        }
        for t, *values, f in zip(ms, *columns, filled, strict=True)
    ]


class Candles:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def upsert(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        frame: pd.DataFrame,
        gaps: Sequence[Gap] = (),
        gap_policy: str = "keep",
        source: str = "",
        now: datetime | None = None,
    ) -> int:
        """Store new candles and the gaps found, in one transaction; return how many were new.

        Idempotent: a candle already stored with the same values is skipped. A real candle
        replaces a synthetic (ffill) one at its time. One that differs from a stored real candle
        raises StoredCandleConflict and nothing of the batch is written.
        """
        rows = _rows(exchange, symbol, timeframe, frame)
        with self._sessions.write() as s:
            fresh = self._fresh(s, rows, source or exchange)
            inserted = 0
            insert = insert_for(s)
            for first in range(0, len(fresh), _BATCH):
                stmt = insert(CandleRow).values(fresh[first : first + _BATCH])
                stmt = stmt.on_conflict_do_nothing(
                    index_elements=["exchange", "symbol", "timeframe", "open_time_ms"]
                ).returning(CandleRow.id)
                # rowcount is -1 for this statement on psycopg; RETURNING counts exactly.
                inserted += len(s.execute(stmt).all())
            for gap in gaps:
                self._add_gap(s, exchange, symbol, timeframe, gap, gap_policy, source, now)
        return inserted

    @staticmethod
    def _fresh(s, rows: list[dict], source: str) -> list[dict]:  # type: ignore[no-untyped-def]
        """The rows not stored yet; a stored synthetic candle takes the real values."""
        if not rows:
            return []
        first = rows[0]
        stored = {
            r.open_time_ms: r
            for r in s.scalars(
                select(CandleRow).where(
                    CandleRow.exchange == first["exchange"],
                    CandleRow.symbol == first["symbol"],
                    CandleRow.timeframe == first["timeframe"],
                    CandleRow.open_time_ms >= first["open_time_ms"],
                    CandleRow.open_time_ms <= rows[-1]["open_time_ms"],
                )
            )
        }
        fresh = []
        for row in rows:
            old = stored.get(row["open_time_ms"])
            if old is None:
                fresh.append(row)
            elif old.is_filled and not row["is_filled"]:
                for col in _CANDLE_VALUES:  # the real candle arrived after all
                    setattr(old, col, row[col])
                old.is_filled = False
            elif not old.is_filled and any(getattr(old, c) != row[c] for c in _CANDLE_VALUES):
                raise StoredCandleConflict(source, row["symbol"], row["timeframe"], old, row)
        return fresh

    @staticmethod
    def _add_gap(  # type: ignore[no-untyped-def]
        s, exchange, symbol, timeframe, gap: Gap, policy: str, source: str, now: datetime | None
    ) -> None:
        first_ms = datetime_to_ms(gap.first_missing)
        known = s.scalar(
            select(CandleGapRow.id).where(
                CandleGapRow.exchange == exchange,
                CandleGapRow.symbol == symbol,
                CandleGapRow.timeframe == timeframe,
                CandleGapRow.first_missing_ms == first_ms,
            )
        )
        if known is None:
            s.add(
                CandleGapRow(
                    exchange=exchange,
                    symbol=symbol,
                    timeframe=timeframe,
                    first_missing_ms=first_ms,
                    last_missing_ms=datetime_to_ms(gap.last_missing),
                    missing=gap.missing,
                    policy=policy,
                    source=source,
                    detected_at=now or datetime.now(tz=UTC),
                )
            )

    def gaps(self, exchange: str, symbol: str, timeframe: str) -> list[CandleGapRecord]:
        q = (
            select(CandleGapRow)
            .where(
                CandleGapRow.exchange == exchange,
                CandleGapRow.symbol == symbol,
                CandleGapRow.timeframe == timeframe,
            )
            .order_by(CandleGapRow.first_missing_ms)
        )
        with self._sessions.read() as s:
            return [
                CandleGapRecord(
                    ms_to_datetime(r.first_missing_ms),
                    ms_to_datetime(r.last_missing_ms),
                    r.missing,
                    r.policy,
                    r.source,
                )
                for r in s.scalars(q)
            ]

    def last_time(self, exchange: str, symbol: str, timeframe: str) -> datetime | None:
        ms = self._sessions.scalar(
            select(func.max(CandleRow.open_time_ms)).where(
                CandleRow.exchange == exchange,
                CandleRow.symbol == symbol,
                CandleRow.timeframe == timeframe,
            )
        )
        return None if ms is None else ms_to_datetime(ms)

    def count(self, exchange: str, symbol: str, timeframe: str) -> int:
        q = (
            select(func.count())
            .select_from(CandleRow)
            .where(
                CandleRow.exchange == exchange,
                CandleRow.symbol == symbol,
                CandleRow.timeframe == timeframe,
            )
        )
        with self._sessions.read() as s:
            return s.scalar(q) or 0

    def load(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        *,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """The newest `limit` candles up to `until` (inclusive), oldest first, as floats."""
        # The stored decimal text, parsed to floats by pandas in one go: exact (the shortest
        # repr round-trips) and without a Decimal per value, which cost most of a live run.
        q = _newest_candles(until is not None, limit is not None)
        params = {**_series_params(exchange, symbol, timeframe, until), "limit": limit}
        with self._sessions.connect() as c:
            # The driver's own tuples: a Row object per candle cost half of a live run's load.
            rows = c.execute(q, params).cursor.fetchall()
        rows.reverse()
        columns = list(zip(*rows, strict=True)) or [()] * (len(_CANDLE_VALUES) + 2)
        opens = np.array(columns[0], dtype="int64")
        data: dict[str, Any] = {"open_time": pd.to_datetime(opens, unit="ms", utc=True)}
        for i, col in enumerate(_CANDLE_VALUES, start=1):
            data[col] = np.array(columns[i], dtype="float64")  # the text, parsed
        data["is_filled"] = np.array(columns[-1], dtype=bool)
        return pd.DataFrame(data, copy=False)  # one frame, not a column added at a time

    def last_close(
        self, exchange: str, symbol: str, timeframe: str, until: datetime | None = None
    ) -> Decimal | None:
        """The close of the newest candle that opened at or before `until` (exact)."""
        params = _series_params(exchange, symbol, timeframe, until)
        return self._sessions.scalar(_last_close(until is not None), params)  # type: ignore[no-any-return]
