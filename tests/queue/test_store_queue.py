"""The queue part of the store contract: leases, per-recipient attempts, hold, retry, delete."""

from __future__ import annotations

import time

from postbote.store import OutboundMessage, OutboundRecipient, RecipientResult
from postbote.store.sqlite import SqliteStore

RAW = b"Return-Path: <a@here.test>\r\nFrom: a@here.test\r\nSubject: q\r\n\r\nbody\r\n"


async def queued_store(tmp_path, *rcpts: str) -> SqliteStore:
    store = SqliteStore(tmp_path / "data")
    await store.open()
    out = OutboundMessage("Q1", "a@here.test", tuple(OutboundRecipient(r, notify="FAILURE") for r in rcpts),
                          envid="E1", ret="HDRS")
    await store.deliver(RAW, [], outbound=out)
    return store


async def test_an_entry_is_leased_once_until_the_lease_runs_out(tmp_path):
    store = await queued_store(tmp_path, "x@there.test")
    try:
        now = int(time.time())
        [entry] = await store.due_outbound(now)
        assert entry.envid == "E1" and entry.ret == "HDRS" and entry.pending[0].notify == "FAILURE"
        assert await store.lease_outbound([entry.id], until=now + 60, now=now) == [entry.id]
        assert await store.lease_outbound([entry.id], until=now + 90, now=now + 30) == []  # another worker
        assert await store.due_outbound(now + 30) == []
        assert [e.id for e in await store.due_outbound(now + 60)] == [entry.id]  # the lease ran out
        assert await store.due_outbound(now + 60, exclude=[entry.id]) == []
        assert await store.lease_outbound([entry.id], until=now + 120, now=now + 60) == [entry.id]
    finally:
        await store.close()


async def test_partial_success_keeps_only_the_pending_recipients(tmp_path):
    store = await queued_store(tmp_path, "x@there.test", "y@there.test", "z@there.test")
    try:
        [entry] = await store.due_outbound(10**11)
        gone = await store.record_outbound_attempt(entry.id, [
            RecipientResult("x@there.test", "sent", "250 ok"),
            RecipientResult("y@there.test", "failed", "550 no"),
            RecipientResult("z@there.test", "pending", "451 later")], next_attempt=5_000, last_reply="451 later")
        assert not gone
        [entry] = await store.get_outbound("Q1")
        assert [(r.address, r.status) for r in entry.recipients] == [
            ("x@there.test", "sent"), ("y@there.test", "failed"), ("z@there.test", "pending")]
        assert entry.attempts == 1 and entry.next_attempt == 5_000 and entry.lease_until == 0
        assert await store.due_outbound(4_999) == []
        [listed] = await store.list_outbound()
        assert listed.recipients == ("z@there.test",)
        gone = await store.record_outbound_attempt(entry.id, [RecipientResult("z@there.test", "sent", "250")],
                                                   0, "250")
        assert gone and await store.get_outbound("Q1") == []
        assert await store.collect_garbage() == 1  # the queue held the only reference to the bytes
    finally:
        await store.close()


async def test_held_entries_are_not_due_until_released(tmp_path):
    store = await queued_store(tmp_path, "x@there.test", "w@else.test")
    try:
        assert await store.set_outbound_held("Q1", True) == 2
        assert await store.due_outbound(10**11) == []
        assert await store.lease_outbound([e.id for e in await store.get_outbound("Q1")], 10, 0) == []
        assert await store.set_outbound_held(None, False) == 2
        assert len(await store.due_outbound(10**11)) == 2
    finally:
        await store.close()


async def test_retry_makes_entries_due_and_delete_removes_them(tmp_path):
    store = await queued_store(tmp_path, "x@there.test")
    try:
        [entry] = await store.get_outbound("Q1")
        await store.record_outbound_attempt(entry.id, [RecipientResult("x@there.test", "pending", "451")],
                                            10**11, "451")
        assert await store.due_outbound(10**10) == []
        assert await store.retry_outbound("Q1", 0) == 1
        assert len(await store.due_outbound(10**10)) == 1
        assert await store.delete_outbound("Q1") == 1
        assert await store.list_outbound() == [] and await store.delete_outbound("Q1") == 0
    finally:
        await store.close()
