"""pandera schemas for the training rows: features are finite floats, labels are 0 or 1."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa

from core.errors import FatalError
from core.features.registry import FEATURE_NAMES


class DatasetValidationError(FatalError, ValueError):
    """A training batch failed a check; the report names the check, column, count and rows."""

    def __init__(self, check: str, column: str | None, count: int, first_rows: list[object]):
        self.check, self.column, self.count, self.first_rows = check, column, count, first_rows
        where = f" in column {column}" if column else ""
        super().__init__(
            f"training rows failed check '{check}'{where} for {count} row(s); first: {first_rows}"
        )


def _finite(s: pd.Series) -> pd.Series:
    return pd.Series(np.isfinite(s.to_numpy(dtype=np.float64)), index=s.index)


TRAINING_ROWS_SCHEMA = pa.DataFrameSchema(
    {
        **{
            name: pa.Column(float, pa.Check(_finite, name="finite"), nullable=False)
            for name in FEATURE_NAMES
        },
        "label": pa.Column(float, pa.Check.isin([0.0, 1.0]), nullable=False),
        # The log return over the label horizon: what a trade on the row would have earned
        # before costs (the decision policy's payoff is measured from it).
        "forward_return": pa.Column(float, pa.Check(_finite, name="finite"), nullable=False),
        "symbol": pa.Column(str, nullable=False),
    },
    index=pa.Index(pd.DatetimeTZDtype("ns", "UTC"), name="open_time"),
    strict=True,
)


def validate_training_rows(rows: pd.DataFrame) -> pd.DataFrame:
    try:
        return TRAINING_ROWS_SCHEMA.validate(rows, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        first = cases.iloc[0]
        same = cases[(cases["check"] == first["check"]) & (cases["column"] == first["column"])]
        column = first["column"] if isinstance(first["column"], str) else None
        raise DatasetValidationError(
            str(first["check"]), column, len(same), same["index"].head(3).astype(str).tolist()
        ) from None
