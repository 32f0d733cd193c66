"""The collector's settings while latency-bound work runs: the start-up frozen, collections
rare, and all of it as before once the last block ends; a freeze made by someone else is theirs
to thaw."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from services.collector import RARE_COLLECTIONS, frozen_start_up, rare_collections


@pytest.fixture
def full_collections() -> Iterator[list[int]]:
    """The generation of each collection that starts while the test runs. Automatic ones are
    off meanwhile, so that any seen was asked for."""
    seen: list[int] = []

    def record(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    was_enabled = gc.isenabled()
    gc.disable()
    gc.callbacks.append(record)
    yield seen
    gc.callbacks.remove(record)
    if was_enabled:
        gc.enable()


def test_rare_collections_when_done_then_thresholds_and_frozen_objects_as_before() -> None:
    before = gc.get_threshold()
    with rare_collections():
        assert gc.get_threshold() == RARE_COLLECTIONS
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_rare_collections_when_already_frozen_then_that_freeze_is_left_alone() -> None:
    gc.freeze()
    try:
        with rare_collections():
            pass
        # Still frozen (the count itself drops as frozen objects are freed meanwhile).
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_rare_collections_when_collecting_first_then_a_full_collection_before_the_freeze(
    full_collections: list[int],
) -> None:
    with rare_collections():
        assert full_collections == [2]


def test_rare_collections_when_not_collecting_first_then_no_collection_on_entry(
    full_collections: list[int],
) -> None:
    with rare_collections(collect_first=False):
        assert full_collections == []
        assert gc.get_freeze_count() > 0


def test_rare_collections_when_blocks_overlap_then_the_last_one_out_restores() -> None:
    before = gc.get_threshold()
    first, second = rare_collections(), rare_collections()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # threads end in any order: the other still runs
    assert (gc.get_freeze_count() > 0, gc.get_threshold()) == (True, RARE_COLLECTIONS)
    second.__exit__(None, None, None)
    assert (gc.get_freeze_count(), gc.get_threshold()) == (0, before)


def test_frozen_start_up_when_a_decision_ends_inside_an_apps_block_then_still_frozen() -> None:
    before = gc.get_threshold()
    decision, app = rare_collections(collect_first=False), frozen_start_up()
    decision.__enter__()
    app.__enter__()  # an API app starts while a decision runs
    decision.__exit__(None, None, None)
    assert (gc.get_freeze_count() > 0, gc.get_threshold()) == (True, before)
    app.__exit__(None, None, None)
    assert gc.get_freeze_count() == 0
