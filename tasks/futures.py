"""Waiting for a fan-out of task runs: one that fails stops none of the others."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from prefect.futures import PrefectFuture

T = TypeVar("T")


def wait_all(labelled: Sequence[tuple[str, PrefectFuture[T]]]) -> tuple[list[T], list[str]]:
    """Wait for every future; the results of those that completed, in order, and one line
    per one that did not: its label and the state's message."""
    results: list[T] = []
    failures: list[str] = []
    for label, future in labelled:
        future.wait()
        if future.state.is_completed():
            results.append(future.result())
        else:
            failures.append(f"{label}: {future.state.message}")
    return results, failures
