"""The change feed: how an IMAP IDLE or a POP3 session learns that its mailbox moved.

The store publishes a ``Change`` after each commit; subscribers are woken and
re-read what they need from the store (the feed carries no message data, so a
slow subscriber can never make the writer wait or hold memory for long).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable

from .types import Change

# The kinds of change that touch mail in mailboxes ("overflow": anything may have).
# Other kinds ("sieve", "domains") concern caches, not IMAP or POP3 sessions.
MAIL_KINDS = frozenset({"new", "flags", "expunge", "mailbox", "overflow"})


def about_mail(change: Change) -> bool:
    return not change.kinds or bool(change.kinds & MAIL_KINDS)


# A subscriber that falls this far behind gets its backlog folded into one
# "everything may have changed" marker instead of an ever-growing list.
MAX_PENDING = 256


class Subscription:
    """One subscriber's mailbox of pending changes for one account."""

    def __init__(self, feed: "ChangeFeed", account_id: int) -> None:
        self._feed = feed
        self.account_id = account_id
        self._pending: list[Change] = []
        self._event = asyncio.Event()

    def _push(self, change: Change) -> None:
        if len(self._pending) >= MAX_PENDING:
            self._pending = [Change(self.account_id, 0, 0, frozenset({"overflow"}))]
        else:
            self._pending.append(change)
        self._event.set()

    def take(self) -> list[Change]:
        """The changes since the last take, without waiting."""
        pending, self._pending = self._pending, []
        self._event.clear()
        return pending

    async def wait(self, timeout: float | None = None) -> list[Change]:
        """Wait until something changes (or the timeout passes), then take it."""
        if not self._pending:
            try:
                await asyncio.wait_for(self._event.wait(), timeout)
            except asyncio.TimeoutError:
                return []
        return self.take()

    def close(self) -> None:
        self._feed._remove(self)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ChangeFeed:
    """In-process publish/subscribe of store changes, keyed by account."""

    def __init__(self) -> None:
        self._subs: dict[int, set[Subscription]] = defaultdict(set)
        self._watchers: list[Callable[[Change], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        # Set by a FeedBus when several processes share the store: local
        # changes are also sent to the other processes.
        self.forward: Callable[[Change], None] | None = None

    def subscribe(self, account_id: int) -> Subscription:
        self._loop = asyncio.get_running_loop()
        sub = Subscription(self, account_id)
        self._subs[account_id].add(sub)
        return sub

    def watch(self, callback: Callable[[Change], None]) -> None:
        """Call ``callback`` on the event loop for every change of every account, here
        and from the other processes: for caches of store data (e.g. Sieve scripts)."""
        self._loop = asyncio.get_running_loop()
        self._watchers.append(callback)

    def _remove(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.account_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.account_id]

    def publish(self, change: Change) -> None:
        """Wake every subscriber of the change's account, here and (through the
        bus, if any) in the other processes. Safe from any thread."""
        if self.forward is not None:
            self.forward(change)
        self.publish_local(change)

    def publish_local(self, change: Change) -> None:
        """Wake this process's subscribers only (changes that came over the bus)."""
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._deliver(change)
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._deliver, change)

    def _deliver(self, change: Change) -> None:
        for watcher in self._watchers:
            watcher(change)
        for sub in list(self._subs.get(change.account_id, ())):
            sub._push(change)
