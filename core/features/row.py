"""One candle's features as a read-only view of a row of a features matrix."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np


class FeatureRow(Mapping[str, float]):
    """One candle's features (and order-book features, when a snapshot was seen) as a read-only
    view of the batch's row: most readers want a handful of the ~90 values, and a run keeps
    every decision, so nothing is copied."""

    __slots__ = ("_at", "_book", "_index", "_matrix")

    def __init__(
        self,
        index: Mapping[str, int],
        matrix: np.ndarray,
        at: int,
        book: Mapping[str, float] | None,
    ) -> None:
        self._index, self._matrix, self._at, self._book = index, matrix, at, book or {}

    def __getitem__(self, name: str) -> float:
        if name in self._book:
            return self._book[name]
        return float(self._matrix[self._at, self._index[name]])

    def __contains__(self, name: object) -> bool:  # without reading the value
        return name in self._index or name in self._book

    def get(self, name: str, default: float | None = None) -> float | None:  # type: ignore[override]
        if name not in self:
            return default
        return self[name]

    def __iter__(self) -> Iterator[str]:
        yield from self._index
        yield from (k for k in self._book if k not in self._index)

    def __len__(self) -> int:
        return len(self._index) + sum(k not in self._index for k in self._book)
