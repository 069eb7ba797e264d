"""The store contract, run against every backend (see conftest.BACKENDS)."""

from __future__ import annotations

import asyncio

import pytest

from postbote.store import (
    AlreadyExists,
    Delivered,
    DeliveryRefused,
    DeliveryTarget,
    Flag,
    FlagMode,
    NotFound,
    QuotaExceeded,
    StoreError,
)


def message(subject: str = "hello", body: str = "hi there", pad: int = 0) -> bytes:
    text = (f"From: Bob <bob@example.org>\r\nTo: alice@example.com\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@example.org>\r\n"
            f"Date: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\n{body}\r\n")
    return text.encode() + b"x" * pad


async def account(store, address: str = "alice@example.com", quota: int = 0):
    domain = address.rpartition("@")[2]
    if await store.get_domain(domain) is None:
        await store.add_domain(domain)
    return await store.add_account(address, "hash", quota)


async def inbox(store, acct):
    return await store.get_mailbox(acct.id, "INBOX")


async def deliver(store, acct, raw: bytes, mailbox: str = "INBOX") -> Delivered:
    [outcome] = await store.deliver(raw, [DeliveryTarget(acct.id, mailbox)])
    assert isinstance(outcome, Delivered), outcome
    return outcome


async def test_domain_add_list_and_duplicate_refused(make_store):
    async with make_store() as store:
        await store.add_domain("example.com")
        await store.add_domain("example.org")
        assert [d.name for d in await store.list_domains()] == ["example.com", "example.org"]
        with pytest.raises(AlreadyExists):
            await store.add_domain("example.com")


async def test_domain_with_accounts_cannot_be_deleted(make_store):
    async with make_store() as store:
        await account(store)
        with pytest.raises(StoreError, match="accounts"):
            await store.delete_domain("example.com")
        await store.delete_account("alice@example.com")
        await store.delete_domain("example.com")
        assert await store.list_domains() == []


async def test_new_account_gets_default_mailboxes_with_special_use(make_store):
    async with make_store() as store:
        acct = await account(store)
        boxes = {m.name: m.special_use for m in await store.list_mailboxes(acct.id)}
        assert boxes == {"INBOX": None, "Drafts": "\\Drafts", "Sent": "\\Sent", "Junk": "\\Junk",
                         "Trash": "\\Trash", "Archive": "\\Archive"}
        assert set(await store.list_subscriptions(acct.id)) == set(boxes)


async def test_account_needs_existing_domain(make_store):
    async with make_store() as store:
        with pytest.raises(NotFound, match="domain add"):
            await store.add_account("x@nowhere.example", "hash")


async def test_uids_strictly_ascending_and_never_reused_after_expunge(make_store):
    async with make_store() as store:
        acct = await account(store)
        uids = [(await deliver(store, acct, message(f"m{i}"))).uid for i in range(5)]
        assert uids == [1, 2, 3, 4, 5]
        box = await inbox(store, acct)
        await store.store_flags(box.id, [4, 5], FlagMode.ADD, Flag.DELETED)
        assert await store.expunge(box.id) == [4, 5]
        assert (await deliver(store, acct, message("again"))).uid == 6
        assert [m.uid for m in await store.list_messages(box.id)] == [1, 2, 3, 6]


async def test_recreated_mailbox_gets_new_uidvalidity(make_store):
    async with make_store() as store:
        acct = await account(store)
        first = await store.create_mailbox(acct.id, "Projects")
        await store.delete_mailbox(acct.id, "Projects")
        second = await store.create_mailbox(acct.id, "Projects")
        assert second.uidvalidity > first.uidvalidity
        assert second.uidnext == 1


async def test_expunge_journal_reports_vanished_uids_after_modseq(make_store):
    async with make_store() as store:
        acct = await account(store)
        for i in range(4):
            await deliver(store, acct, message(f"m{i}"))
        box = await inbox(store, acct)
        before = box.highestmodseq
        await store.store_flags(box.id, [2, 3], FlagMode.ADD, Flag.DELETED)
        await store.expunge(box.id)
        changed, vanished = await store.changes_since(box.id, before)
        assert vanished == [2, 3]
        assert [m.uid for m in changed] == []  # the flag change is superseded by the expunge
        _, vanished_later = await store.changes_since(box.id, (await inbox(store, acct)).highestmodseq)
        assert vanished_later == []


async def test_every_flag_change_bumps_modseq_and_noops_do_not(make_store):
    async with make_store() as store:
        acct = await account(store)
        await deliver(store, acct, message())
        box = await inbox(store, acct)
        seq = [box.highestmodseq]
        for mode, flag in [(FlagMode.ADD, Flag.SEEN), (FlagMode.ADD, Flag.FLAGGED), (FlagMode.REMOVE, Flag.SEEN)]:
            changed, _ = await store.store_flags(box.id, [1], mode, flag)
            assert changed and changed[0].modseq == (await inbox(store, acct)).highestmodseq
            seq.append(changed[0].modseq)
        assert seq == sorted(set(seq))
        changed, _ = await store.store_flags(box.id, [1], FlagMode.ADD, Flag.FLAGGED)  # already set
        assert changed == []
        assert (await inbox(store, acct)).highestmodseq == seq[-1]


async def test_keywords_are_stored_and_removed(make_store):
    async with make_store() as store:
        acct = await account(store)
        await deliver(store, acct, message())
        box = await inbox(store, acct)
        await store.store_flags(box.id, [1], FlagMode.ADD, Flag(0), frozenset({"$Junk", "work"}))
        await store.store_flags(box.id, [1], FlagMode.REMOVE, Flag(0), frozenset({"work"}))
        [m] = await store.list_messages(box.id)
        assert m.keywords == {"$Junk"}


async def test_unchangedsince_refuses_messages_modified_later(make_store):
    async with make_store() as store:
        acct = await account(store)
        await deliver(store, acct, message("a"))
        await deliver(store, acct, message("b"))
        box = await inbox(store, acct)
        mark = box.highestmodseq
        await store.store_flags(box.id, [2], FlagMode.ADD, Flag.SEEN)
        changed, refused = await store.store_flags(box.id, [1, 2], FlagMode.ADD, Flag.FLAGGED, unchangedsince=mark)
        assert [m.uid for m in changed] == [1]
        assert refused == [2]


async def test_quota_accounting_and_refusal(make_store):
    async with make_store() as store:
        acct = await account(store, quota=1000)
        raw = message(pad=300)
        await deliver(store, acct, raw)
        assert (await store.get_account(acct.address)).used == len(raw)
        await deliver(store, acct, raw)
        [outcome] = await store.deliver(message("third", pad=300), [DeliveryTarget(acct.id)])
        assert isinstance(outcome, DeliveryRefused) and outcome.quota
        box = await inbox(store, acct)
        with pytest.raises(QuotaExceeded):
            await store.copy_messages(box.id, [1, 2], (await store.get_mailbox(acct.id, "Archive")).id)
        await store.store_flags(box.id, [1], FlagMode.ADD, Flag.DELETED)
        await store.expunge(box.id)
        assert (await store.get_account(acct.address)).used == len(raw)


async def test_blob_is_byte_identical_and_stored_once_for_many_recipients(make_store):
    async with make_store() as store:
        alice = await account(store, "alice@example.com")
        bob = await account(store, "bob@example.com")
        raw = b"Subject: x\n\nbare LF body\r\nmixed\n" + bytes(range(256))
        outcomes = await store.deliver(raw, [DeliveryTarget(alice.id), DeliveryTarget(bob.id)])
        assert all(isinstance(o, Delivered) for o in outcomes)
        [ma] = await store.list_messages(outcomes[0].mailbox_id)
        [mb] = await store.list_messages(outcomes[1].mailbox_id)
        assert ma.blob_id == mb.blob_id
        assert await store.read_blob(ma.blob_id) == raw
        assert ma.size == len(raw)


async def test_cached_parse_is_stored_with_the_blob(make_store):
    async with make_store() as store:
        acct = await account(store)
        await deliver(store, acct, message("Cached subject"))
        [m] = await store.list_messages((await inbox(store, acct)).id)
        parsed = await store.parsed(m.blob_id)
        assert isinstance(parsed, dict) and parsed


async def test_missing_mailbox_refuses_only_that_target(make_store):
    async with make_store() as store:
        acct = await account(store)
        outcomes = await store.deliver(message(), [DeliveryTarget(acct.id, "Nope"), DeliveryTarget(acct.id)])
        assert isinstance(outcomes[0], DeliveryRefused) and outcomes[0].missing_mailbox
        assert isinstance(outcomes[1], Delivered)


async def test_rename_moves_children_and_keeps_messages(make_store):
    async with make_store() as store:
        acct = await account(store)
        await store.create_mailbox(acct.id, "Work")
        await store.create_mailbox(acct.id, "Work/2026")
        await deliver(store, acct, message(), "Work/2026")
        await store.rename_mailbox(acct.id, "Work", "Job")
        names = {m.name for m in await store.list_mailboxes(acct.id)}
        assert {"Job", "Job/2026"} <= names and "Work" not in names
        assert len(await store.list_messages((await store.get_mailbox(acct.id, "Job/2026")).id)) == 1


async def test_rename_inbox_moves_messages_and_leaves_inbox_empty(make_store):
    async with make_store() as store:
        acct = await account(store)
        await deliver(store, acct, message("a"))
        await deliver(store, acct, message("b"))
        await store.rename_mailbox(acct.id, "inbox", "Old")
        assert await store.list_messages((await inbox(store, acct)).id) == []
        old = await store.get_mailbox(acct.id, "Old")
        assert [m.uid for m in await store.list_messages(old.id)] == [1, 2]


async def test_inbox_name_is_case_insensitive_and_cannot_be_deleted(make_store):
    async with make_store() as store:
        acct = await account(store)
        assert (await store.get_mailbox(acct.id, "iNbOx")).name == "INBOX"
        with pytest.raises(StoreError):
            await store.delete_mailbox(acct.id, "INBOX")


async def test_copy_and_move_assign_new_uids_and_share_the_blob(make_store):
    async with make_store() as store:
        acct = await account(store)
        for i in range(3):
            await deliver(store, acct, message(f"m{i}"))
        box = await inbox(store, acct)
        archive = await store.get_mailbox(acct.id, "Archive")
        assert await store.copy_messages(box.id, [1, 3], archive.id) == [(1, 1), (3, 2)]
        assert await store.move_messages(box.id, [2], archive.id) == [(2, 3)]
        assert [m.uid for m in await store.list_messages(box.id)] == [1, 3]
        _, vanished = await store.changes_since(box.id, 0)
        assert vanished == [2]


async def test_deleting_messages_releases_blobs_for_garbage_collection(make_store, tmp_path):
    async with make_store() as store:
        acct = await account(store)
        await deliver(store, acct, message("only"))
        box = await inbox(store, acct)
        [m] = await store.list_messages(box.id)
        path = await store.blob_path(m.blob_id)
        assert path is not None and path.exists()
        await store.store_flags(box.id, [1], FlagMode.ADD, Flag.DELETED)
        await store.expunge(box.id)
        assert await store.collect_garbage() == 1
        assert not path.exists()


async def test_change_feed_wakes_subscriber_on_delivery(make_store):
    async with make_store() as store:
        acct = await account(store)
        with store.changes.subscribe(acct.id) as sub:
            waiter = asyncio.ensure_future(sub.wait(timeout=5))
            await asyncio.sleep(0)
            await deliver(store, acct, message())
            changes = await waiter
        assert changes and "new" in changes[0].kinds
        assert changes[0].mailbox_id == (await inbox(store, acct)).id


async def test_concurrent_deliveries_share_commits_and_get_unique_uids(make_store):
    async with make_store() as store:
        acct = await account(store)
        results = await asyncio.gather(*(store.deliver(message(f"c{i}"), [DeliveryTarget(acct.id)])
                                         for i in range(60)))
        uids = sorted(r[0].uid for r in results)
        assert uids == list(range(1, 61))


async def test_mailbox_status_counts(make_store):
    async with make_store() as store:
        acct = await account(store)
        for i in range(3):
            await deliver(store, acct, message(f"m{i}"))
        box = await inbox(store, acct)
        await store.store_flags(box.id, [1], FlagMode.ADD, Flag.SEEN)
        st = await store.mailbox_status(box.id)
        assert (st.messages, st.unseen, st.uidnext) == (3, 2, 4)


async def test_claim_recent_hands_recent_messages_to_one_session(make_store):
    async with make_store() as store:
        acct = await account(store)
        await deliver(store, acct, message("a"))
        box = await inbox(store, acct)
        assert await store.claim_recent(box.id) == 1  # uid 1 and above are recent for this session
        await deliver(store, acct, message("b"))
        assert await store.claim_recent(box.id) == 2  # the next session sees only uid 2 as recent


async def test_app_passwords_and_aliases(make_store):
    async with make_store() as store:
        acct = await account(store)
        await store.add_app_password(acct.id, "phone", "h")
        assert [a.name for a in await store.list_app_passwords(acct.id)] == ["phone"]
        await store.add_alias("info@example.com", "alice@example.com")
        await store.add_alias("info@example.com", "bob@example.org")
        assert await store.alias_targets("info@example.com") == ["alice@example.com", "bob@example.org"]
        await store.delete_alias("info@example.com", "bob@example.org")
        assert await store.alias_targets("info@example.com") == ["alice@example.com"]


async def test_outbound_recipients_are_queued_per_domain_with_the_delivery(make_store):
    from postbote.store import OutboundMessage, OutboundRecipient

    async with make_store() as store:
        acct = await account(store)
        out = OutboundMessage("Q1", "alice@example.com", (
            OutboundRecipient("x@remote.example", notify="FAILURE"), OutboundRecipient("y@remote.example"),
            OutboundRecipient("z@other.example")), envid="E1", ret="HDRS")
        [local] = await store.deliver(message(), [DeliveryTarget(acct.id)], outbound=out)
        assert isinstance(local, Delivered)
        entries = await store.list_outbound()
        assert [(e.domain, e.recipients) for e in entries] == [
            ("other.example", ("z@other.example",)), ("remote.example", ("x@remote.example", "y@remote.example"))]
        assert {e.queue_id for e in entries} == {"Q1"}
        # The queue holds its own reference to the blob: expunging the local copy keeps it.
        box = await inbox(store, acct)
        await store.store_flags(box.id, [1], FlagMode.ADD, Flag.DELETED)
        await store.expunge(box.id)
        assert await store.collect_garbage() == 0
        assert await store.read_blob(entries[0].blob_id) == message()


async def test_remove_messages_takes_exactly_the_given_uids_whatever_their_flags(make_store):
    async with make_store() as store:
        acct = await account(store)
        for i in range(4):
            await deliver(store, acct, message(f"m{i}"))
        box = await inbox(store, acct)
        await store.store_flags(box.id, [4], FlagMode.ADD, Flag.DELETED)
        assert await store.remove_messages(box.id, [1, 3, 99]) == [1, 3]
        assert [m.uid for m in await store.list_messages(box.id)] == [2, 4]
        _, vanished = await store.changes_since(box.id, 0)
        assert vanished == [1, 3]
