"""Store data kept in memory until the change feed says it changed.

Some lookups happen on every message but their answers rarely change: is a
domain ours, which Sieve script is active for an account. Asking the store
each time costs a thread hop per message. A ``FeedCache`` keeps the answers
and drops them when a ``Change`` of its kind arrives: from this process, from
the other workers and from the admin commands (over the feed bus). A notice
between processes can be lost when a worker's queue is full, so entries also
expire after ``ttl`` seconds: a lost notice delays a change, it never sticks.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from .changes import ChangeFeed
from .types import Change

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class FeedCache(Generic[K, V]):
    """``get(key, load)``: the cached value, or ``load()``'s, remembered.

    ``key_of`` names the key a change of ``kind`` is about, or None for "all of them".
    Values are kept only after ``watch()``: without the feed nothing would drop them.
    """

    def __init__(self, kind: str, key_of: Callable[[Change], K | None], size: int = 100_000,
                 ttl: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.kind = kind
        self.key_of = key_of
        self.size = size
        self.ttl = ttl
        self.clock = clock
        self._values: OrderedDict[K, tuple[V, float]] = OrderedDict()
        self._watching = False
        self._generation = 0  # bumped by every change: a load that overlapped one is not kept

    def watch(self, feed: ChangeFeed) -> None:
        """Start keeping values; call on the event loop that publishes the feed."""
        feed.watch(self._changed)
        self._watching = True

    def _changed(self, change: Change) -> None:
        if self.kind not in change.kinds:
            return
        self._generation += 1
        key = self.key_of(change)
        if key is None:
            self._values.clear()
        else:
            self._values.pop(key, None)

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        hit = self._values.get(key)
        now = self.clock()
        if hit is not None and hit[1] > now:
            self._values.move_to_end(key)
            return hit[0]
        generation = self._generation
        value = await load()
        if self._watching and generation == self._generation:
            self._values[key] = (value, now + self.ttl)
            self._values.move_to_end(key)
            if len(self._values) > self.size:
                self._values.popitem(last=False)
        return value
