"""FeedCache: store answers kept in memory until the change feed (or their age) says otherwise."""

from __future__ import annotations

import asyncio

from postbote.store.cache import FeedCache
from postbote.store.changes import ChangeFeed
from postbote.store.types import Change


class Source:
    """Counts how often the cache really asks the store."""

    def __init__(self) -> None:
        self.loads = 0
        self.value = "v1"

    async def load(self) -> str:
        self.loads += 1
        await asyncio.sleep(0)
        return self.value


def _sieve_change(account_id: int) -> Change:
    return Change(account_id, 0, 0, frozenset({"sieve"}))


def test_values_are_kept_until_a_change_of_their_key_arrives():
    async def run() -> None:
        feed, source = ChangeFeed(), Source()
        cache: FeedCache[int, str] = FeedCache("sieve", lambda c: c.account_id)
        cache.watch(feed)
        assert await cache.get(1, source.load) == "v1"
        assert await cache.get(1, source.load) == "v1"
        assert source.loads == 1
        source.value = "v2"
        feed.publish(_sieve_change(2))  # another key: kept
        assert await cache.get(1, source.load) == "v1"
        feed.publish(Change(1, 5, 9, frozenset({"new"})))  # another kind: kept
        assert await cache.get(1, source.load) == "v1"
        feed.publish(_sieve_change(1))
        assert await cache.get(1, source.load) == "v2"
        assert source.loads == 2
    asyncio.run(run())


def test_a_change_without_a_key_drops_everything():
    async def run() -> None:
        feed, source = ChangeFeed(), Source()
        cache: FeedCache[str, str] = FeedCache("domains", lambda c: None)
        cache.watch(feed)
        await cache.get("a", source.load)
        await cache.get("b", source.load)
        feed.publish(Change(0, 0, 0, frozenset({"domains"})))
        await cache.get("a", source.load)
        await cache.get("b", source.load)
        assert source.loads == 4
    asyncio.run(run())


def test_a_load_that_overlaps_a_change_is_not_kept():
    async def run() -> None:
        feed, source = ChangeFeed(), Source()
        cache: FeedCache[int, str] = FeedCache("sieve", lambda c: c.account_id)
        cache.watch(feed)

        async def slow_load() -> str:
            value = await source.load()  # read the old value...
            feed.publish(_sieve_change(1))  # ...while the script changes
            return value
        assert await cache.get(1, slow_load) == "v1"
        assert await cache.get(1, source.load) == "v1"
        assert source.loads == 2  # the overlapped answer was not trusted
    asyncio.run(run())


def test_entries_expire_so_a_lost_notice_does_not_stick():
    async def run() -> None:
        now = [100.0]
        feed, source = ChangeFeed(), Source()
        cache: FeedCache[int, str] = FeedCache("sieve", lambda c: c.account_id, ttl=60, clock=lambda: now[0])
        cache.watch(feed)
        await cache.get(1, source.load)
        now[0] += 59
        await cache.get(1, source.load)
        now[0] += 2
        await cache.get(1, source.load)
        assert source.loads == 2
    asyncio.run(run())


def test_nothing_is_kept_without_the_feed():
    async def run() -> None:
        source = Source()
        cache: FeedCache[int, str] = FeedCache("sieve", lambda c: c.account_id)
        await cache.get(1, source.load)
        await cache.get(1, source.load)
        assert source.loads == 2
    asyncio.run(run())
