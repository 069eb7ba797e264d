"""Big mailboxes: FETCH 1:* and SEARCH go through the store in batches and stream out, so a
session never holds the whole answer (or every message row) at once."""

from __future__ import annotations

import asyncio
import re

from postbote.imap import messages as imap_messages
from postbote.imap import session as imap_session
from postbote.store import DeliveryTarget
from tests.imap.conftest import USER, deliver, message

COUNT = 1500


def _fill(server, count: int) -> None:
    async def run() -> None:
        store = server.app.store
        account = await store.get_account(USER)
        raws = [message(f"bulk {n}") for n in range(count)]
        for start in range(0, count, 250):  # concurrent deliveries share group commits
            await asyncio.gather(*(store.deliver(raw, [DeliveryTarget(account.id)])
                                   for raw in raws[start:start + 250]))

    server.run(run(), timeout=120)


def test_fetch_all_flags_streams_in_batches(server, raw, monkeypatch):
    _fill(server, COUNT)
    monkeypatch.setattr(imap_messages, "FETCH_BATCH", 100)
    store = server.app.store
    asked: list[int] = []
    original = store.messages_by_uid

    async def spy(mailbox_id, uids):
        asked.append(len(uids))
        return await original(mailbox_id, uids)

    monkeypatch.setattr(store, "messages_by_uid", spy)
    client = raw()
    client.command(b"SELECT INBOX")
    lines = client.command(b"FETCH 1:* (UID FLAGS)")
    assert len(lines) == COUNT + 1 and lines[-1].startswith(b"t OK")
    assert lines[0] == b"* 1 FETCH (UID 1 FLAGS (\\Recent))\r\n"
    assert lines[COUNT - 1] == b"* %d FETCH (UID %d FLAGS (\\Recent))\r\n" % (COUNT, COUNT)
    assert max(asked) == 100 and len(asked) == COUNT // 100


def test_search_and_uid_ranges_on_a_big_mailbox(server, raw):
    _fill(server, COUNT)
    client = raw()
    client.command(b"SELECT INBOX")
    found = client.command(b"SEARCH SUBJECT \"bulk 1499\"")[0]  # concurrent deliveries: any UID
    assert re.fullmatch(rb"\* SEARCH (\d+)\r\n", found)
    number = re.fullmatch(rb"\* SEARCH (\d+)\r\n", found).group(1)
    assert b"Subject: bulk 1499\r\n" in b"".join(client.command(b"FETCH " + number + b" BODY.PEEK[HEADER]"))
    client.command(b"STORE 2:* +FLAGS.SILENT (\\Seen)")
    assert client.command(b"UID SEARCH UNSEEN")[0] == b"* SEARCH 1\r\n"
    assert client.command(b"SEARCH RETURN (COUNT) SEEN")[0] == b'* ESEARCH (TAG "t") COUNT %d\r\n' % (COUNT - 1)


def test_fetching_many_bodies_keeps_output_bounded(server, raw, monkeypatch):
    big = message("big", body="x" * 200_000 + "\r\n")
    for _ in range(8):
        deliver(server, USER, big)
    queued: list[int] = []
    original = imap_session.ImapSession._fetch_batch

    async def watch(self, sel, batch, plan, parsed):
        send = self.out.send

        def counting(data: bytes) -> None:
            send(data)
            queued.append(self.out.stream.queued)

        self.out.send = counting
        try:
            return await original(self, sel, batch, plan, parsed)
        finally:
            self.out.send = send

    monkeypatch.setattr(imap_session.ImapSession, "_fetch_batch", watch)
    client = raw()
    client.command(b"SELECT INBOX")
    client.send(b"t FETCH 1:* BODY.PEEK[]\r\n")
    received = 0
    while not (line := client.line()).startswith(b"t OK"):
        received += len(line)
    assert received > 8 * 200_000
    assert max(queued) < 2 * len(big) + 300_000  # never the whole answer
