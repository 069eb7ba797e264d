"""Changes the store announces on its feed for others than IMAP's mailbox views."""

from __future__ import annotations

import asyncio

from postbote.store.sqlite import SqliteStore


def test_subscriptions_and_domains_are_announced(tmp_path):
    async def run() -> list:
        store = SqliteStore(tmp_path)
        await store.open()
        try:
            seen: list = []
            store.changes.watch(seen.append)
            await store.add_domain("example.org")
            ann = await store.add_account("ann@example.org", "x")
            work = await store.create_mailbox(ann.id, "Work")
            await store.subscribe(ann.id, "Work")
            await store.unsubscribe(ann.id, "Work")
            await asyncio.sleep(0.05)  # notices from the store's thread arrive through the loop
            return [(c.account_id, c.mailbox_id, c.kinds) for c in seen
                    if c.kinds & {"subscription", "domains"}], work.id
        finally:
            await store.close()
    changes, work_id = asyncio.run(run())
    # RFC 5465 §5.5: NOTIFY's SubscriptionChange, whoever made the change
    assert changes[0] == (0, 0, frozenset({"domains"}))
    assert changes[1:] == [(changes[1][0], work_id, frozenset({"subscription"}))] * 2
