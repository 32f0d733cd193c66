"""The listings' answer cache: given again only for the same request at the same newest event
id and while young; the least recently asked for goes first when full."""

from __future__ import annotations

from serving.page_cache import PageCache


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_get_when_same_key_and_version_and_young_then_the_kept_answer() -> None:
    ticks = Ticks()
    cache = PageCache(max_age_s=1.0, clock=ticks)
    cache.put(("orders", 1), 7, b"page")
    ticks.now += 0.9
    assert cache.get(("orders", 1), 7) == b"page"


def test_get_when_the_outbox_has_news_then_nothing_kept() -> None:
    cache = PageCache(clock=Ticks())
    cache.put("k", 7, b"page")
    assert cache.get("k", 8) is None
    assert cache.get("k", 7) is None  # the stale answer was dropped, not kept for later


def test_get_when_old_then_nothing_kept_even_without_news() -> None:
    ticks = Ticks()
    cache = PageCache(max_age_s=1.0, clock=ticks)
    cache.put("k", 7, b"page")
    ticks.now += 1.0
    assert cache.get("k", 7) is None


def test_put_when_full_then_the_least_recently_asked_for_goes() -> None:
    cache = PageCache(size=2, clock=Ticks())
    cache.put("a", 1, b"A")
    cache.put("b", 1, b"B")
    assert cache.get("a", 1) == b"A"  # "b" is now the least recently asked for
    cache.put("c", 1, b"C")
    assert (cache.get("a", 1), cache.get("b", 1), cache.get("c", 1)) == (b"A", None, b"C")
