"""The store's Sieve scripts: several per account, at most one active (RFC 5804 semantics)."""

from __future__ import annotations

import asyncio

import pytest

from postbote.store import AlreadyExists, NotFound, SieveScript, StoreError
from postbote.store.sqlite import SqliteStore


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(tmp_path)
    asyncio.run(s.open())
    yield s
    asyncio.run(s.close())


def _account(store) -> int:
    async def make() -> int:
        await store.add_domain("example.org")
        return (await store.add_account("ann@example.org", "x")).id
    return asyncio.run(make())


def test_scripts_are_kept_listed_and_only_one_is_active(store):
    ann = _account(store)

    async def run() -> None:
        await store.sieve_put(ann, "work", 'fileinto "Work";')
        await store.sieve_put(ann, "home", "keep;")
        assert await store.sieve_active(ann) is None
        await store.sieve_activate(ann, "work")
        await store.sieve_activate(ann, "home")
        assert await store.sieve_active(ann) == ("home", "keep;")
        assert await store.sieve_list(ann) == [SieveScript("home", 5, True), SieveScript("work", 16, False)]
        await store.sieve_put(ann, "home", "discard;")  # replacing keeps it active
        assert await store.sieve_active(ann) == ("home", "discard;")
        await store.sieve_activate(ann, None)
        assert await store.sieve_active(ann) is None
    asyncio.run(run())


def test_the_active_script_cannot_be_deleted_and_renaming_keeps_it_active(store):
    ann = _account(store)

    async def run() -> None:
        await store.sieve_put(ann, "a", "keep;")
        await store.sieve_put(ann, "b", "keep;")
        await store.sieve_activate(ann, "a")
        with pytest.raises(StoreError):
            await store.sieve_delete(ann, "a")
        with pytest.raises(AlreadyExists):
            await store.sieve_rename(ann, "a", "b")
        await store.sieve_rename(ann, "a", "c")
        assert await store.sieve_active(ann) == ("c", "keep;")
        await store.sieve_delete(ann, "b")
        with pytest.raises(NotFound):
            await store.sieve_delete(ann, "b")
        assert await store.sieve_get(ann, "b") is None
    asyncio.run(run())


def test_a_vacation_reply_goes_once_per_period(store):
    ann = _account(store)

    async def run() -> None:
        assert await store.sieve_vacation_check(ann, "bob@example.net", now=1000, until=1000 + 7 * 86400)
        assert not await store.sieve_vacation_check(ann, "bob@example.net", now=2000, until=2000 + 7 * 86400)
        assert await store.sieve_vacation_check(ann, "bob@example.net", now=1000 + 7 * 86400, until=10**9)
    asyncio.run(run())


def test_script_changes_are_announced_on_the_change_feed(store):
    ann = _account(store)

    async def run() -> list:
        seen: list = []
        store.changes.watch(seen.append)
        await store.sieve_put(ann, "a", "keep;")
        await store.sieve_activate(ann, "a")
        await asyncio.sleep(0.05)  # notices from the store's thread arrive through the loop
        return seen
    seen = asyncio.run(run())
    assert [c.kinds for c in seen if c.account_id == ann] == [frozenset({"sieve"})] * 2
