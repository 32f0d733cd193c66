"""The listings' answers (orders, trades, decisions), kept per process for a moment and given
again while nothing has changed: a busy dashboard or a load test asks for the same page over
and over, and building 50 orders' JSON costs many times what checking for news does.

"Nothing has changed" is read from the ledger's outbox (core.browse.BrowseQueries.news): every
store writes an event in the same transaction as a change to an order, a fill, a position or a
decision (infra/ledger/news.py), so the newest event id moves whenever a listing's rows may
have, whichever process wrote them. A kept answer is given again only for the same request at
the same newest event id, and never once it is `max_age_s` old. That age bounds the two ways a
change can come without a new newest id: on PostgreSQL a transaction that took a lower event id
may commit after one that took a higher; and a send being claimed (submit_attempts and
updated_at of an order still NEW) writes no event. Both show within `max_age_s`; everything
else shows at once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class _Kept:
    version: int
    at: float
    body: bytes


class PageCache:
    def __init__(
        self,
        max_age_s: float = 1.0,
        size: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_age_s, self.size, self._clock = max_age_s, size, clock
        self._kept: OrderedDict[Hashable, _Kept] = OrderedDict()
        self._lock = threading.Lock()  # PostgreSQL reads run on threads

    def get(self, key: Hashable, version: int) -> bytes | None:
        """The answer kept for `key`, if it was built at this newest event id and is young."""
        with self._lock:
            kept = self._kept.get(key)
            if kept is None:
                return None
            if kept.version != version or self._clock() - kept.at >= self.max_age_s:
                del self._kept[key]
                return None
            self._kept.move_to_end(key)
            return kept.body

    def put(self, key: Hashable, version: int, body: bytes) -> None:
        with self._lock:
            self._kept[key] = _Kept(version, self._clock(), body)
            self._kept.move_to_end(key)
            while len(self._kept) > self.size:  # the least recently asked for goes first
                self._kept.popitem(last=False)
