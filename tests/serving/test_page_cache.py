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


def test_built_when_asked_again_while_building_then_one_build_for_both() -> None:
    import asyncio

    calls: list[int] = []

    async def main() -> list[bytes]:
        cache = PageCache(clock=Ticks())
        gate = asyncio.Event()

        async def build() -> bytes:
            calls.append(1)
            await gate.wait()
            return b"page"

        first = asyncio.create_task(cache.built("k", 7, build))
        second = asyncio.create_task(cache.built("k", 7, build))
        await asyncio.sleep(0.01)
        gate.set()
        answers = list(await asyncio.gather(first, second))
        assert cache.get("k", 7) == b"page"  # kept for the requests after
        return answers

    assert asyncio.run(main()) == [b"page", b"page"]
    assert calls == [1]


def test_built_when_the_build_fails_then_its_waiters_fail_alike_and_the_next_builds_again() -> None:
    import asyncio

    import pytest

    from core.errors import LedgerUnavailable

    async def main() -> None:
        cache = PageCache(clock=Ticks())
        gate = asyncio.Event()

        async def failing() -> bytes:
            await gate.wait()
            raise LedgerUnavailable("down")

        async def working() -> bytes:
            return b"page"

        first = asyncio.create_task(cache.built("k", 7, failing))
        second = asyncio.create_task(cache.built("k", 7, working))  # waits for the first
        await asyncio.sleep(0.01)
        gate.set()
        for task in (first, second):
            with pytest.raises(LedgerUnavailable):
                await task
        assert await cache.built("k", 7, working) == b"page"

    asyncio.run(main())


def test_built_when_the_builder_is_cancelled_then_its_waiter_builds_its_own() -> None:
    import asyncio

    async def main() -> bytes:
        cache = PageCache(clock=Ticks())

        async def slow() -> bytes:
            await asyncio.sleep(10)
            return b"never"

        async def working() -> bytes:
            return b"page"

        builder = asyncio.create_task(cache.built("k", 7, slow))
        await asyncio.sleep(0.01)
        waiter = asyncio.create_task(cache.built("k", 7, working))
        await asyncio.sleep(0.01)
        builder.cancel()  # its client went away
        return await asyncio.wait_for(waiter, 1.0)

    assert asyncio.run(main()) == b"page"
