"""The one candle frame every source returns, and the checks it must pass.

A candle frame has columns open_time (datetime64[ns, UTC], the candle's open), open, high, low,
close, volume (float64). Validation either returns the frame unchanged or raises
CandleValidationError naming the source, the failed check and the first bad row.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

from core.errors import FatalError

CANDLE_COLUMNS = ("open_time", "open", "high", "low", "close", "volume")


class CandleValidationError(FatalError, ValueError):
    def __init__(
        self, source: str, check: str, first_bad_row: dict[str, object] | None, count: int
    ):
        self.source = source
        self.check = check
        self.first_bad_row = first_bad_row
        self.count = count
        if count == 0:
            super().__init__(f"{source}: {check}")
            return
        row = f"; first bad row: {first_bad_row}" if first_bad_row is not None else ""
        super().__init__(f"{source}: candle check '{check}' failed for {count} row(s){row}")


def _price(name: str) -> pa.Column:
    return pa.Column(float, checks=pa.Check.gt(0), nullable=False, name=name)


CANDLE_SCHEMA = pa.DataFrameSchema(
    {
        "open_time": pa.Column(
            pd.DatetimeTZDtype("ns", "UTC"),
            checks=[
                pa.Check(
                    lambda s: s.diff().dt.total_seconds().fillna(1.0) > 0,
                    name="strictly increasing and unique",
                ),
            ],
            nullable=False,
        ),
        "open": _price("open"),
        "high": _price("high"),
        "low": _price("low"),
        "close": _price("close"),
        "volume": pa.Column(float, checks=pa.Check.ge(0), nullable=False),
        # Set by the gap policy: a synthetic candle that carries the previous close forward.
        "is_filled": pa.Column(bool, nullable=False, required=False),
    },
    checks=[
        pa.Check(
            lambda df: df["high"] >= df[["open", "close"]].max(axis=1),
            name="high >= max(open, close)",
        ),
        pa.Check(
            lambda df: df["low"] <= df[["open", "close"]].min(axis=1),
            name="low <= min(open, close)",
        ),
    ],
    strict=True,
    ordered=True,
    coerce=False,
)


def validate_candles(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Validate a candle frame; raise CandleValidationError on the first failing check."""
    if frame.empty:
        raise CandleValidationError(source, "no candles", None, 0)
    missing = [c for c in CANDLE_COLUMNS if c not in frame.columns]
    if missing:
        raise CandleValidationError(source, f"missing columns {missing}", None, len(frame))
    try:
        return CANDLE_SCHEMA.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        first = cases.iloc[0]
        check = str(first["check"])
        index = first["index"]
        bad_row: dict[str, object] | None = None
        if index is not None and not pd.isna(index) and index in frame.index:
            bad_row = {"row": int(index)} | {
                k: _plain(v) for k, v in frame.loc[index].to_dict().items()
            }
        column = first.get("column")
        same = cases[cases["check"] == first["check"]]
        is_frame_check = first.get("schema_context") == "DataFrameSchema"
        label = check if is_frame_check or not isinstance(column, str) else f"{column}: {check}"
        count = int(same["index"].nunique()) if same["index"].notna().any() else len(same)
        raise CandleValidationError(source, label, bad_row, count) from None


def _plain(value: object) -> object:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value
