"""The garbage collector's policy while decisions run: what the process built before them (the
modules, the model, the candles, the ledger) is frozen out of the collector's walks, and young
collections come every 50,000 allocations, not 700.

A decision process holds about 250,000 objects after its imports; a full collection walks them
all, about 200 ms here, and it came every few dozen candles on a live run of 8 symbols (its
three slowest decisions of 300, at 230-270 ms against a p50 of 43 ms). A replay allocates
millions of short-lived objects and makes few cycles: at the defaults the collector took about
a tenth of its time."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

RARE_COLLECTIONS = (50_000, 20, 100)  # as the backtest's decision writer process sets


@dataclass
class _Blocks:
    """The blocks running in this process (threads may overlap them): the first one in sets the
    policy up, the last one out puts back what it found."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    running: int = 0
    threshold: tuple[int, ...] = ()
    frozen_here: bool = False


_BLOCKS = _Blocks()


@contextmanager
def rare_collections(collect_first: bool = True) -> Iterator[None]:
    """Freeze what exists and collect rarely until the block ends; then thaw and restore.
    `collect_first` frees the garbage of loading before the freeze (a long replay would keep it
    to its end); a live decision skips that full walk, the very cost it avoids. A freeze made
    by someone else is left alone: they thaw it."""
    with _BLOCKS.lock:
        if not _BLOCKS.running:
            _BLOCKS.threshold = gc.get_threshold()
            _BLOCKS.frozen_here = not gc.get_freeze_count()
            if _BLOCKS.frozen_here:
                if collect_first:
                    gc.collect()
                gc.freeze()
            gc.set_threshold(*RARE_COLLECTIONS)
        _BLOCKS.running += 1
    try:
        yield
    finally:
        with _BLOCKS.lock:
            _BLOCKS.running -= 1
            if not _BLOCKS.running:
                gc.set_threshold(*_BLOCKS.threshold)
                if _BLOCKS.frozen_here:
                    gc.unfreeze()
