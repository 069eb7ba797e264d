"""The store helpers IMAP uses (SELECT snapshot, messages by UID, changes with HIGHESTMODSEQ,
cached parses in bulk), against every backend and against the contract's portable defaults."""

from __future__ import annotations

import pytest

from postbote.store import Flag, FlagMode, QuotaExceeded
from postbote.store.base import Store
from tests.store.test_store_contract import account, deliver, inbox, message


async def test_select_snapshot_has_uids_counters_first_unseen_and_keywords(make_store):
    async with make_store() as store:
        acct = await account(store)
        box = await inbox(store, acct)
        for n in range(3):
            await deliver(store, acct, message(f"m{n}"))
        await store.store_flags(box.id, [1], FlagMode.ADD, Flag.SEEN, frozenset({"$Work"}))
        await store.expunge(box.id, [])
        snap = await store.select_snapshot(box.id)
        assert snap.uids == [1, 2, 3] and snap.first_unseen_uid == 2
        assert snap.keywords == frozenset({"$Work"}) and snap.uidnext == 4
        assert snap == await Store.select_snapshot(store, box.id)  # the portable default agrees


async def test_messages_by_uid_skips_missing_uids(make_store):
    async with make_store() as store:
        acct = await account(store)
        box = await inbox(store, acct)
        for n in range(4):
            await deliver(store, acct, message(f"m{n}"))
        await store.store_flags(box.id, [2], FlagMode.ADD, Flag.DELETED)
        await store.expunge(box.id)
        found = await store.messages_by_uid(box.id, [1, 2, 4, 9])
        assert [m.uid for m in found] == [1, 4]
        assert found == await Store.messages_by_uid(store, box.id, [1, 2, 4, 9])


async def test_mailbox_changes_reports_highestmodseq_changes_and_vanished(make_store):
    async with make_store() as store:
        acct = await account(store)
        box = await inbox(store, acct)
        for n in range(3):
            await deliver(store, acct, message(f"m{n}"))
        before = (await store.mailbox_status(box.id)).highestmodseq
        await store.store_flags(box.id, [1], FlagMode.ADD, Flag.FLAGGED | Flag.DELETED)
        await store.expunge(box.id)
        await store.store_flags(box.id, [2], FlagMode.ADD, Flag.SEEN)
        modseq, changed, vanished = await store.mailbox_changes(box.id, before)
        assert [m.uid for m in changed] == [2] and vanished == [1]
        assert modseq == (await store.mailbox_status(box.id)).highestmodseq > before


async def test_parsed_many_returns_each_blobs_cached_parse(make_store):
    async with make_store() as store:
        acct = await account(store)
        box = await inbox(store, acct)
        await deliver(store, acct, message("one"))
        await deliver(store, acct, message("two"))
        messages = await store.list_messages(box.id)
        parsed = await store.parsed_many([m.blob_id for m in messages])
        assert {p["su"] for p in parsed.values()} == {"one", "two"}
        assert parsed[messages[0].blob_id] == await store.parsed(messages[0].blob_id)


async def test_uids_with_subject_is_a_superset_of_case_insensitive_matches(make_store):
    async with make_store() as store:
        acct = await account(store)
        box = await inbox(store, acct)
        for subject in ("Lunch plans", "report", "LUNCH!", "100% done", "Grüße"):
            await deliver(store, acct, message(subject))
        assert await store.uids_with_subject(box.id, "lunch") == [1, 3, 5]  # 5: non-ASCII stays
        assert await store.uids_with_subject(box.id, "0% d") == [4, 5]
        assert await store.uids_with_subject(box.id, "grüße") is None


async def test_messages_with_parsed_pairs_rows_with_their_parse(make_store):
    async with make_store() as store:
        acct = await account(store)
        box = await inbox(store, acct)
        for n in range(3):
            await deliver(store, acct, message(f"m{n}"))
        pairs = await store.messages_with_parsed(box.id, [3, 1, 7])
        assert [(m.uid, p["su"]) for m, p in pairs] == [(1, "m0"), (3, "m2")]
        assert pairs == await Store.messages_with_parsed(store, box.id, [3, 1, 7])


async def test_metadata_entries_by_prefix_and_depth_with_a_limit(make_store):
    async with make_store() as store:
        acct = await account(store)
        box = await inbox(store, acct)
        await store.set_metadata(acct.id, box.id, [("/private/a", b"1"), ("/private/a/b", b"2"),
                                                   ("/private/a/b/c", b"3")], 10)
        assert await store.get_metadata(acct.id, box.id, ["/private/a"], 0) == [("/private/a", b"1")]
        assert len(await store.get_metadata(acct.id, box.id, ["/private/a"], 1)) == 2
        assert len(await store.get_metadata(acct.id, box.id, ["/private"], None)) == 3
        assert await store.get_metadata(acct.id, 0, ["/private"], None) == []
        await store.set_metadata(acct.id, box.id, [("/private/a", None)], 10)
        assert [e for e, _ in await store.get_metadata(acct.id, box.id, ["/private"], None)] == ["/private/a/b", "/private/a/b/c"]
        with pytest.raises(QuotaExceeded):
            await store.set_metadata(acct.id, 0, [("/private/x", b"1"), ("/private/y", b"2")], 3)
        assert await store.get_metadata(acct.id, 0, ["/private"], None) == []  # all or nothing
