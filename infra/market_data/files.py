"""Candle files in freqtrade's layout: <BASE>_<QUOTE>-<timeframe>.<json|json.gz|feather|csv>."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pandas as pd

from core.candles.clean import CandleConflictError, order_candles
from core.candles.schema import CANDLE_COLUMNS, CandleValidationError, validate_candles
from core.errors import FatalError

EXTENSIONS = (".feather", ".json", ".json.gz", ".csv")
_TIME_COLUMNS = ("open_time", "date", "timestamp", "time")


class CandleFileError(FatalError, ValueError):
    pass


def candle_file_for(data_dir: Path, symbol: str, timeframe: str) -> Path:
    stem = f"{symbol.replace('/', '_').replace(':', '_')}-{timeframe}"
    candidates = [data_dir / f"{stem}{ext}" for ext in EXTENSIONS]
    for path in candidates:
        if path.exists():
            return path
    names = ", ".join(p.name for p in candidates)
    raise CandleFileError(
        f"no candle file for {symbol} {timeframe} in {data_dir} (looked for {names})"
    )


def read_candle_file(path: Path) -> pd.DataFrame:
    """Read and validate one file; raise CandleFileError / CandleValidationError naming it."""
    source = str(path)
    try:
        raw = _read(path)
    except (CandleValidationError, CandleFileError, CandleConflictError):
        raise
    except (OSError, ValueError, TypeError, KeyError, json.JSONDecodeError) as exc:
        raise CandleFileError(
            f"{source}: cannot read candles: {type(exc).__name__}: {exc}"
        ) from exc
    except Exception as exc:  # pyarrow raises its own hierarchy for broken feather files
        raise CandleFileError(
            f"{source}: cannot read candles: {type(exc).__name__}: {exc}"
        ) from exc
    ordered, _ = order_candles(raw, source)
    return validate_candles(ordered, source)


def _read(path: Path) -> pd.DataFrame:
    name = path.name
    if path.stat().st_size == 0:
        raise CandleValidationError(str(path), "no candles (empty file)", None, 0)
    if name.endswith(".feather"):
        return _normalise(pd.read_feather(path), path)
    if name.endswith(".json.gz"):
        with gzip.open(path, "rt") as fh:
            return _from_rows(json.load(fh), path)
    if name.endswith(".json"):
        with path.open() as fh:
            return _from_rows(json.load(fh), path)
    if name.endswith(".csv"):
        return _read_csv(path)
    raise CandleFileError(f"{path}: unsupported candle file type (use one of {EXTENSIONS})")


def _from_rows(rows: object, path: Path) -> pd.DataFrame:
    if isinstance(rows, dict) and "date" in rows:
        # pandas orient="columns" JSON ({"date": {"0": ms, ...}, "open": {...}}), as freqtrade's
        # orderflow fixtures store candles; naive times are UTC.
        return _normalise(pd.DataFrame(rows), path)
    if not isinstance(rows, list):
        raise CandleFileError(
            f"{path}: expected a JSON array of [ts_ms, o, h, l, c, v] rows or column JSON"
        )
    if not rows:
        raise CandleValidationError(str(path), "no candles (empty array)", None, 0)
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, list) or len(r) < 6), None)
    if bad is not None:
        raise CandleFileError(f"{path}: row {bad} is not [ts_ms, o, h, l, c, v]: {rows[bad]!r}")
    frame = pd.DataFrame([r[:6] for r in rows], columns=list(CANDLE_COLUMNS))
    frame["open_time"] = pd.to_datetime(frame["open_time"], unit="ms", utc=True)
    return _floats(frame)


# Binance's public kline CSV (data.binance.vision): no header, 12 fields.
BINANCE_KLINE_FIELDS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_base",
    "taker_buy_quote",
    "ignore",
)


def _read_csv(path: Path) -> pd.DataFrame:
    with path.open() as fh:
        first = fh.readline().split(",")
    if first and first[0].strip().isdigit():  # no header: numeric rows
        if len(first) == len(BINANCE_KLINE_FIELDS):
            names: tuple[str, ...] = BINANCE_KLINE_FIELDS
        elif len(first) == len(CANDLE_COLUMNS):
            names = CANDLE_COLUMNS
        else:
            raise CandleFileError(
                f"{path}: headerless CSV with {len(first)} fields; expected 6 "
                f"(ts_ms,o,h,l,c,v) or 12 (Binance kline)"
            )
        frame = pd.read_csv(path, header=None, names=list(names))
        return _normalise(frame[list(CANDLE_COLUMNS)], path)
    return _normalise(pd.read_csv(path), path)


def _normalise(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    frame = frame.rename(columns=str.lower)
    time_col = next((c for c in _TIME_COLUMNS if c in frame.columns), None)
    if time_col is None:
        raise CandleFileError(f"{path}: no time column (one of {_TIME_COLUMNS})")
    frame = frame.rename(columns={time_col: "open_time"})
    missing = [c for c in CANDLE_COLUMNS if c not in frame.columns]
    if missing:
        raise CandleFileError(f"{path}: missing columns {missing}")
    times = frame["open_time"]
    if pd.api.types.is_numeric_dtype(times):
        frame["open_time"] = pd.to_datetime(times, unit="ms", utc=True)
    else:
        parsed = pd.to_datetime(times, utc=True)  # naive stamps are taken as UTC
        frame["open_time"] = parsed
    frame["open_time"] = frame["open_time"].astype("datetime64[ns, UTC]")
    return _floats(frame[list(CANDLE_COLUMNS)].reset_index(drop=True))


def _floats(frame: pd.DataFrame) -> pd.DataFrame:
    for col in CANDLE_COLUMNS[1:]:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    frame["open_time"] = frame["open_time"].astype("datetime64[ns, UTC]")
    return frame


class FileCandleSource:
    """Candles from a directory of freqtrade-layout files. A file holds its whole history, so
    `since` is ignored: storing is idempotent and a re-read adds only what is new."""

    def __init__(self, data_dir: Path, exchange: str) -> None:
        self.data_dir = data_dir
        self.exchange = exchange

    def describe(self, symbol: str, timeframe: str) -> str:
        return str(candle_file_for(self.data_dir, symbol, timeframe))

    def fetch(self, symbol: str, timeframe: str, since: datetime) -> Iterator[pd.DataFrame]:
        yield read_candle_file(candle_file_for(self.data_dir, symbol, timeframe))
