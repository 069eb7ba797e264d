"""Entering and leaving the selected state: SELECT, EXAMINE (RFC 9051 §6.3.2-§6.3.3), with
CONDSTORE and QRESYNC resynchronisation (RFC 7162), CLOSE and UNSELECT (RFC 9051 §6.4.1-§6.4.2),
as the `SelectionCommands` mixin of `ImapSession`.

The selected mailbox itself (sequence numbers, pending announcements) is `SelectedMailbox`
in `selected.py`.
"""

from __future__ import annotations

import bisect

from postbote.imap import commands as c
from postbote.imap import encode
from postbote.imap.base import SessionBase, State, _bad
from postbote.imap.mailboxes import MailboxListing
from postbote.imap.selected import SelectedMailbox
from postbote.store.types import DELIMITER


class SelectionCommands(SessionBase):
    """The `do_*` handlers that open and close a mailbox (see the module doc)."""

    async def do_select(self, cmd: c.Select | c.Examine) -> object:
        if self._deselect() and (self.enabled.qresync or self.enabled.rev2):
            self.out.send(encode.untagged("OK", "previous mailbox closed", encode.CLOSED))
        if cmd.qresync is not None and not self.enabled.qresync:
            raise _bad("ENABLE QRESYNC first", encode.CLIENTBUG)
        if cmd.condstore:
            self.enabled.condstore = True
        mailbox = await self._mailbox(cmd.mailbox)
        readonly = isinstance(cmd, c.Examine)
        snap = await self.store.select_snapshot(mailbox.id)
        sel = SelectedMailbox.open(mailbox.id, mailbox.name, readonly, snap.uidvalidity, snap.uidnext,
                                   snap.highestmodseq, snap.uids)
        sel.keywords = set(snap.keywords)
        if not self.enabled.rev2 and not readonly:
            if snap.uids:
                self.recent_claims.record(mailbox.id, snap.uids[-1])
            first = await self.store.claim_recent(mailbox.id)
            sel.recent = {uid for uid in snap.uids[self._index_from(snap.uids, first):]}
        if self.subscription is not None:
            self.subscription.take()
        self.selected = sel
        self.state = State.SELECTED
        self._select_responses(sel, snap.first_unseen_uid)
        if self.enabled.rev2:  # RFC 9051 §6.3.2: a LIST response for the selected mailbox
            listing = MailboxListing(await self.store.list_mailboxes(self._account().id), set())
            attributes = listing.attributes(mailbox.name, mailbox, set())
            self.out.send(encode.list_response(mailbox.name, DELIMITER, attributes, utf8=True))
        if cmd.qresync is not None and cmd.qresync.uidvalidity == sel.uidvalidity:
            await self._qresync(sel, cmd.qresync)
        if readonly:
            return ("examined", encode.READ_ONLY)
        return ("selected", encode.READ_WRITE)

    @staticmethod
    def _index_from(uids: list[int], first: int) -> int:
        return bisect.bisect_left(uids, first)

    def _select_responses(self, sel: SelectedMailbox, first_unseen: int | None) -> None:
        flags = sel.defined_flags()
        self.out.send(encode.flags(flags))
        self.out.send(encode.exists(sel.exists))
        if not self.enabled.rev2:
            self.out.send(encode.recent(len(sel.recent)))
            if first_unseen is not None and sel.seq_of(first_unseen) is not None:
                self.out.send(encode.untagged("OK", "first unseen", encode.code_unseen(sel.seq_of(first_unseen) or 0)))
        self.out.send(encode.untagged("OK", "UIDs valid", encode.code_uidvalidity(sel.uidvalidity)))
        self.out.send(encode.untagged("OK", "predicted next UID", encode.code_uidnext(sel.uidnext)))
        permanent = [*flags, "\\*"] if not sel.readonly else []
        self.out.send(encode.untagged("OK", "flags that stay", encode.code_permanentflags(permanent)))
        self.out.send(encode.untagged("OK", "highest modseq", encode.code_highestmodseq(sel.modseq)))
        self.out.send(encode.untagged("OK", "mailbox id", encode.code_mailboxid(f"F{sel.mailbox_id}")))

    async def _qresync(self, sel: SelectedMailbox, params: c.QresyncParams) -> None:
        """RFC 7162 §3.2.5: what vanished and changed since the client's MODSEQ."""
        changed, vanished = await self.store.changes_since(sel.mailbox_id, params.modseq)
        if params.known_uids is not None:
            top = max(vanished, default=0)
            vanished = [u for u in vanished if params.known_uids.contains(u, max(top, 1))]
        if vanished:
            self.out.send(encode.vanished(vanished, earlier=True))
        style = self.enabled.style()
        for message in changed:
            seq = sel.seq_of(message.uid)
            if seq is not None:
                self.out.send(sel.flags_fetch(seq, message, style))

    async def do_close(self, cmd: c.Close) -> None:
        sel = self._sel()
        self._deselect()
        if not sel.readonly:
            await self.store.expunge(sel.mailbox_id)  # RFC 9051 §6.4.1: silently

    async def do_unselect(self, cmd: c.Unselect) -> None:
        self._deselect()
