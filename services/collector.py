"""The garbage collector's settings while latency-bound work runs: what the process built
before it (the modules, the model, the candles, the ledger's mappers) is frozen out of the
collector's walks, and, for decisions, young collections come every 50,000 allocations, not 700.

A decision process holds about 250,000 objects after its imports; a full collection walks them
all, about 200 ms here, and it came every few dozen candles on a live run of 8 symbols (its
three slowest decisions of 300, at 230-270 ms against a p50 of 43 ms). A replay allocates
millions of short-lived objects and makes few cycles: at the defaults the collector took about
a tenth of its time.

Both are the process's settings, and blocks may overlap (threads, an API app and a decision, many
apps in a test run): the first block in sets each up, the last one out puts back what it found.
A freeze made outside this module is left alone: whoever made it thaws it."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

RARE_COLLECTIONS = (50_000, 20, 100)  # as the backtest's decision writer process sets


@dataclass
class _Settings:
    """How many blocks hold each setting, and what the first one found."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    frozen: int = 0
    froze_it: bool = False  # the first frozen block froze (else someone else had)
    rare: int = 0
    threshold: tuple[int, ...] = ()


_SETTINGS = _Settings()


@contextmanager
def frozen_start_up(collect_first: bool = False) -> Iterator[None]:
    """What exists now is frozen out of the collector's walks until the last block ends.
    `collect_first` frees the garbage of loading before the freeze (a long replay would keep it
    to its end); a decision or an app skips that full walk, the very cost it avoids."""
    s = _SETTINGS
    with s.lock:
        if not s.frozen:
            s.froze_it = not gc.get_freeze_count()
            if s.froze_it:
                if collect_first:
                    gc.collect()
                gc.freeze()
        s.frozen += 1
    try:
        yield
    finally:
        with s.lock:
            s.frozen -= 1
            if not s.frozen and s.froze_it:
                gc.unfreeze()


@contextmanager
def rare_collections(collect_first: bool = True) -> Iterator[None]:
    """The start-up frozen (frozen_start_up) and young collections rare (RARE_COLLECTIONS)
    until the last block ends; then the thresholds it found."""
    s = _SETTINGS
    with frozen_start_up(collect_first):
        with s.lock:
            if not s.rare:
                s.threshold = gc.get_threshold()
                gc.set_threshold(*RARE_COLLECTIONS)
            s.rare += 1
        try:
            yield
        finally:
            with s.lock:
                s.rare -= 1
                if not s.rare:
                    gc.set_threshold(*s.threshold)
