"""Purged walk-forward folds (López de Prado, *Advances in Financial ML*, ch. 7). No I/O here.

An expanding window: the first `min_train_fraction` of the distinct times is only ever trained
on; the rest is cut into `n_folds` consecutive test blocks. Fold k trains on every time before
its test block, less the embargo: a time t whose label window reaches into the test block
(t + embargo >= the block's first time) is purged. Nothing after a test block is trained on,
so no fold ever learns from its own future.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.errors import FatalError


class FoldError(FatalError, ValueError):
    """The times cannot be cut into the folds asked for (too few, or nothing left to train on)."""


@dataclass(frozen=True, slots=True, eq=False)  # pandas fields do not compare to one bool
class Fold:
    number: int  # 0 for the oldest test block
    train: pd.DatetimeIndex  # distinct times whose rows may be trained on
    test: pd.DatetimeIndex  # distinct times scored


def walk_forward_folds(
    times: pd.DatetimeIndex,
    n_folds: int,
    embargo: pd.Timedelta,
    min_train_fraction: float = 0.3,
) -> list[Fold]:
    """Folds over the distinct `times` (sorted and de-duplicated here, so a pooled multi-symbol
    index can be passed as it is). `embargo` is the label's reach: horizon x candle length."""
    _check_arguments(n_folds, embargo, min_train_fraction)
    distinct = pd.DatetimeIndex(times).unique().sort_values()
    first_test = int(len(distinct) * min_train_fraction)
    evaluated = distinct[first_test:]
    if len(evaluated) < n_folds:
        raise FoldError(
            f"{len(distinct)} distinct times leave {len(evaluated)} to test after the first "
            f"{min_train_fraction:.0%}: too few for {n_folds} folds"
        )
    folds = []
    for number, positions in enumerate(np.array_split(np.arange(len(evaluated)), n_folds)):
        test = evaluated[positions]
        # Purge: a label at t looks as far as t + embargo; it must end before the test starts.
        train = distinct[distinct + embargo < test[0]]
        if len(train) == 0:
            raise FoldError(
                f"fold {number}: no training time is at least {embargo} before its test block "
                f"starting {test[0]}"
            )
        folds.append(Fold(number, train, test))
    return folds


def _check_arguments(n_folds: int, embargo: pd.Timedelta, min_train_fraction: float) -> None:
    if n_folds < 1:
        raise FoldError(f"n_folds must be >= 1, got {n_folds}")
    if pd.Timedelta(embargo) < pd.Timedelta(0):
        raise FoldError(f"embargo must not be negative, got {embargo}")
    if not 0.0 < min_train_fraction < 1.0:
        raise FoldError(f"min_train_fraction must be in (0, 1), got {min_train_fraction}")


def rows_in(frame: pd.DataFrame, times: pd.DatetimeIndex) -> pd.DataFrame:
    """The rows of `frame` whose index is one of `times` (every symbol's row at such a time)."""
    return frame[frame.index.isin(times)]
