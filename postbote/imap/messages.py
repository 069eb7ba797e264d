"""Commands on messages: APPEND (with MULTIAPPEND, RFC 3502), EXPUNGE and UID EXPUNGE, FETCH
(with CONDSTORE's CHANGEDSINCE and QRESYNC's VANISHED), STORE, COPY and MOVE (RFC 6851), as
the `MessageCommands` mixin of `ImapSession`.

FETCH reads the store in batches of `FETCH_BATCH` and flushes the output between them; what
each item looks like is decided in `fetch.py`.
"""

from __future__ import annotations

from collections.abc import Sequence

from postbote.imap import commands as c
from postbote.imap import encode
from postbote.imap.base import Answer, SessionBase, _bad, _no
from postbote.imap.fetch import FetchError, FetchPlan, Structure, fast_fetch, fetch_items
from postbote.imap.selected import SelectedMailbox
from postbote.imap.sequence import SequenceSet
from postbote.store import NotFound, QuotaExceeded, StoreError
from postbote.store.types import FLAG_NAMES, Flag, FlagMode, Mailbox, Message

FETCH_BATCH = 500


class MessageCommands(SessionBase):
    """The `do_*` handlers of message commands (see the module doc)."""

    # -- APPEND ---------------------------------------------------------------------------------

    async def do_append(self, cmd: c.Append) -> object:
        mailbox = await self._mailbox(cmd.mailbox, trycreate=True)
        done: list[int] = []
        try:
            for message in cmd.messages:
                done.append(await self._append_one(mailbox, message))
        except (Answer, StoreError):
            if done:  # RFC 3502: MULTIAPPEND is all or nothing
                await self.store.store_flags(mailbox.id, done, FlagMode.ADD, Flag.DELETED)
                await self.store.expunge(mailbox.id, done)
            raise
        if self.selected is not None and self.selected.mailbox_id == mailbox.id:
            await self.refresh(force=True)
        return ("appended", encode.code_appenduid(mailbox.uidvalidity, done))

    async def _append_one(self, mailbox: Mailbox, message: c.AppendMessage) -> int:
        if not message.data:
            raise _no("an empty message cannot be appended", encode.CANNOT)
        if len(message.data) > self.policy.append_limit:
            raise _no("the message is larger than the append limit", encode.TOOBIG)
        flags, keywords = split_flags(message.flags)
        date = int(message.date.timestamp()) if message.date is not None else None
        try:
            delivered = await self.store.append(self._account().id, mailbox.name, message.data,
                                                flags, keywords, date)
        except QuotaExceeded:
            raise _no("the mailbox is over its storage quota", encode.OVERQUOTA) from None
        except NotFound:
            raise _no(f"no mailbox {mailbox.name}", encode.TRYCREATE) from None
        return delivered.uid

    # -- EXPUNGE --------------------------------------------------------------------------------

    async def do_expunge(self, cmd: c.Expunge | c.UidExpunge) -> None:
        sel = self._writable()
        uids = None
        if isinstance(cmd, c.UidExpunge):
            uids = sel.uids_for(cmd.sequence, uid=True, saved=self.saved)
            if not uids:
                return
        gone = await self.store.expunge(sel.mailbox_id, uids)
        sel.forget(gone)

    # -- FETCH ----------------------------------------------------------------------------------

    def _resolve(self, sequence: object, uid: bool) -> list[int]:
        sel = self._sel()
        assert isinstance(sequence, SequenceSet)
        if not uid and not sel.valid_sequence(sequence):
            raise _bad("message number beyond the last message", encode.CLIENTBUG)
        return sel.uids_for(sequence, uid=uid, saved=self.saved)

    async def do_fetch(self, cmd: c.Fetch) -> None:
        sel = self._sel()
        uids = self._resolve(cmd.sequence, cmd.uid)
        items = list(cmd.items)
        if cmd.uid and not any(isinstance(i, c.FetchAtt) and i.name == "UID" for i in items):
            items.insert(0, c.FetchAtt("UID"))  # RFC 9051 §6.4.9: UID FETCH always reports UIDs
        if cmd.changedsince is not None or any(isinstance(i, c.FetchAtt) and i.name == "MODSEQ" for i in items):
            self.enabled.condstore = True
            if not any(isinstance(i, c.FetchAtt) and i.name == "MODSEQ" for i in items):
                items.append(c.FetchAtt("MODSEQ"))
        if cmd.vanished:
            if not (cmd.uid and self.enabled.qresync and cmd.changedsince is not None):
                raise _bad("VANISHED needs UID FETCH, QRESYNC and CHANGEDSINCE", encode.CLIENTBUG)
            await self._fetch_vanished(sel, cmd)
        plan = FetchPlan.of(items, sel.readonly)
        if plan.sets_seen and not any(isinstance(i, c.FetchAtt) and i.name == "FLAGS" for i in items):
            plan = FetchPlan.of([*items, c.FetchAtt("FLAGS")], sel.readonly)
        failure: FetchError | None = None
        for start in range(0, len(uids), FETCH_BATCH):
            chunk = uids[start:start + FETCH_BATCH]
            batch, parsed = await self._load_batch(sel, chunk, plan.needs_parse, plan.parse_keys)
            if cmd.changedsince is not None:
                batch = [m for m in batch if m.modseq > cmd.changedsince]
            failure = await self._fetch_batch(sel, batch, plan, parsed) or failure
            await self.out.flush()
        if failure is not None:
            raise _no(failure.text, encode.ResponseCode(failure.code) if failure.code else None)

    async def _fetch_vanished(self, sel: SelectedMailbox, cmd: c.Fetch) -> None:
        assert cmd.changedsince is not None
        _, vanished = await self.store.changes_since(sel.mailbox_id, cmd.changedsince)
        top = max(vanished, default=0)
        named = [u for u in vanished if cmd.sequence.contains(u, max(top, 1))] if not cmd.sequence.saved else []
        if named:
            self.out.send(encode.vanished(named, earlier=True))

    async def _fetch_batch(self, sel: SelectedMailbox, batch: list[Message], plan: FetchPlan,
                           parsed: dict[int, dict]) -> FetchError | None:
        if plan.sets_seen:
            batch = await self._mark_seen(sel, batch, plan)
        failure = None
        for message in batch:
            seq = sel.seq_of(message.uid)
            if seq is None:
                continue
            if plan.fast:
                self.out.send(fast_fetch(seq, message, plan, message.uid in sel.recent))
                continue
            raw = await self.store.read_blob(message.blob_id) if plan.needs_blob else None
            try:
                parse = Structure(parsed.get(message.blob_id), raw) if plan.needs_parse else None
                items = fetch_items(message, plan, recent=message.uid in sel.recent, parsed=parse, raw=raw)
            except FetchError as exc:
                failure = exc
                continue
            for chunk in encode.iter_fetch(seq, items, utf8=self.utf8):
                self.out.send(chunk)
            self.tally.fetched += 1
            if plan.needs_blob:
                await self.out.flush()  # bodies: at most about one message queued at a time
        return failure

    async def _mark_seen(self, sel: SelectedMailbox, batch: list[Message], plan: FetchPlan) -> list[Message]:
        """RFC 9051 §6.4.5: BODY[] without .PEEK sets \\Seen, and FLAGS are then reported."""
        unseen = [m.uid for m in batch if not m.has(Flag.SEEN)]
        if not unseen:
            return batch
        changed, _ = await self.store.store_flags(sel.mailbox_id, unseen, FlagMode.ADD, Flag.SEEN)
        updated = {m.uid: m for m in changed}
        for m in changed:
            sel.note_own_change(m)
        return [updated.get(m.uid, m) for m in batch]

    # -- STORE ----------------------------------------------------------------------------------

    async def do_store(self, cmd: c.Store) -> object:
        sel = self._writable()
        uids = self._resolve(cmd.sequence, cmd.uid)
        flags, keywords = split_flags(cmd.flags)
        mode = {"": FlagMode.REPLACE, "+": FlagMode.ADD, "-": FlagMode.REMOVE}[cmd.mode]
        if cmd.unchangedsince is not None:
            self.enabled.condstore = True
        changed, refused = await self.store.store_flags(sel.mailbox_id, uids, mode, flags, keywords,
                                                        cmd.unchangedsince)
        self.app.spam.flagged(self._account().id, mode, keywords, changed)  # $Junk/$NotJunk train
        for message in changed:
            sel.note_own_change(message)
        if not cmd.silent or cmd.unchangedsince is not None:
            await self._report_flags(sel, uids, changed, refused, cmd)
        if refused:
            numbers = refused if cmd.uid else [n for n in map(sel.seq_of, refused) if n is not None]
            return ("conditional store failed for some messages", encode.code_modified(numbers))
        return None

    async def _report_flags(self, sel: SelectedMailbox, uids: list[int], changed: list[Message],
                            refused: list[int], cmd: c.Store) -> None:
        style = self.enabled.style()
        if cmd.silent:
            shown = changed
        else:
            by_uid = {m.uid: m for m in changed}
            rest = [u for u in uids if u not in by_uid and u not in set(refused)]
            shown = sorted([*changed, *await self.store.messages_by_uid(sel.mailbox_id, rest)],
                           key=lambda m: m.uid) if rest else changed
        for message in shown:
            seq = sel.seq_of(message.uid)
            if seq is None:
                continue
            if cmd.silent:
                items: list[tuple[str, object]] = [("UID", message.uid), ("MODSEQ", message.modseq)]
                self.out.send(encode.fetch(seq, items))
            else:
                self.out.send(sel.flags_fetch(seq, message, style))

    # -- COPY / MOVE ------------------------------------------------------------------------------

    async def do_copy(self, cmd: c.Copy | c.Move) -> object:
        sel = self._sel()
        if isinstance(cmd, c.Move):
            self._writable()
        uids = self._resolve(cmd.sequence, cmd.uid)
        target = await self._mailbox(cmd.mailbox, trycreate=True)
        if not uids:
            return None
        try:
            if isinstance(cmd, c.Move):
                pairs = await self.store.move_messages(sel.mailbox_id, uids, target.id)
            else:
                pairs = await self.store.copy_messages(sel.mailbox_id, uids, target.id)
        except QuotaExceeded:
            raise _no("the copy would exceed the storage quota", encode.OVERQUOTA) from None
        if not pairs:
            return None
        self.app.spam.moved(self._account().id, sel.mailbox_id, target, [p[1] for p in pairs])  # Junk trains
        code = encode.code_copyuid(target.uidvalidity, [p[0] for p in pairs], [p[1] for p in pairs])
        if isinstance(cmd, c.Move):
            # RFC 6851 §4.3: COPYUID goes in an untagged OK before the expunges
            self.out.send(encode.untagged("OK", "moved", code))
            sel.forget(p[0] for p in pairs)
            return None
        return ("copied", code)


def split_flags(names: Sequence[str]) -> tuple[Flag, frozenset[str]]:
    """IMAP flag names to the store's bitmask and keywords (\\Recent cannot be set)."""
    flags = Flag(0)
    keywords: set[str] = set()
    for name in names:
        system = FLAG_NAMES.get(name.lower())
        if system is not None:
            flags |= system
        elif not name.startswith("\\"):
            keywords.add(name)
    return flags, frozenset(keywords)
