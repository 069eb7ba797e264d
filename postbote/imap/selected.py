"""The selected mailbox as one session's client knows it.

A client names messages by sequence number, and those numbers may only move when the
client is told: an expunge by another session stays in this view (and keeps its number)
until an EXPUNGE or VANISHED response is allowed, and a new message gets a number only when
EXISTS announces it. This module keeps that view and decides what to announce and when:

- `apply()` takes what the store says changed since the view's MODSEQ (new UIDs, changed
  flags, expunged UIDs) and files it as pending;
- `announce()` turns pending changes into untagged responses. RFC 9051 §7.5.1: no EXPUNGE
  while answering FETCH, STORE or SEARCH, so the caller says whether expunges may go out.

It holds no store and no socket: the session feeds it and writes what it returns. UIDs are
kept in an `array` (4 bytes each), so a 100,000-message mailbox costs 400 KB per session.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from postbote.imap import encode
from postbote.imap.sequence import SequenceSet
from postbote.store.types import Flag, Message

# The system flags in the order FLAGS responses list them.
SYSTEM_FLAG_NAMES: tuple[tuple[Flag, str], ...] = (
    (Flag.ANSWERED, "\\Answered"),
    (Flag.FLAGGED, "\\Flagged"),
    (Flag.DELETED, "\\Deleted"),
    (Flag.SEEN, "\\Seen"),
    (Flag.DRAFT, "\\Draft"),
)


# Every combination of system flags, spelled out once: FETCH FLAGS over a big mailbox is hot.
_SYSTEM_NAMES: list[tuple[str, ...]] = [
    tuple(name for flag, name in SYSTEM_FLAG_NAMES if bits & flag) for bits in range(32)
]


def flag_names(message: Message, recent: bool = False) -> list[str]:
    """The FLAGS of a message as a client sees them (\\Recent belongs to the session)."""
    names = list(_SYSTEM_NAMES[int(message.flags) & 31])
    if message.keywords:
        names += sorted(message.keywords)
    if recent:
        names.append("\\Recent")
    return names


@dataclass(frozen=True)
class AnnounceStyle:
    """How this session's client wants changes told (what it has ENABLEd)."""

    qresync: bool = False  # VANISHED instead of EXPUNGE (RFC 7162 §3.2.10)
    condstore: bool = False  # MODSEQ in unsolicited FETCH (RFC 7162 §3.1.4)
    rev1: bool = True  # \Recent and RECENT exist only in IMAP4rev1


@dataclass
class SelectedMailbox:
    """One session's view of its selected mailbox (see the module doc)."""

    mailbox_id: int
    name: str
    readonly: bool
    uidvalidity: int
    uidnext: int
    modseq: int
    uids: array = field(default_factory=lambda: array("I"))
    recent: set[int] = field(default_factory=set)
    keywords: set[str] = field(default_factory=set)
    _expunged: set[int] = field(default_factory=set)
    _new: list[int] = field(default_factory=list)
    _flags: dict[int, Message] = field(default_factory=dict)
    _own: dict[int, int] = field(default_factory=dict)  # uid -> modseq this session reported
    _told_keywords: frozenset[str] = frozenset()

    @classmethod
    def open(cls, mailbox_id: int, name: str, readonly: bool, uidvalidity: int, uidnext: int,
             modseq: int, uids: Iterable[int]) -> SelectedMailbox:
        return cls(mailbox_id, name, readonly, uidvalidity, uidnext, modseq, array("I", uids))

    # -- numbers ---------------------------------------------------------------------------

    @property
    def exists(self) -> int:
        return len(self.uids)

    @property
    def max_uid(self) -> int:
        return self.uids[-1] if self.uids else 0

    def seq_of(self, uid: int) -> int | None:
        index = bisect.bisect_left(self.uids, uid)
        if index < len(self.uids) and self.uids[index] == uid:
            return index + 1
        return None

    def uid_at(self, seq: int) -> int:
        return self.uids[seq - 1]

    def uids_for(self, sequence: SequenceSet, *, uid: bool, saved: Sequence[int] = ()) -> list[int]:
        """The known UIDs a set names; `$` is the saved search result (RFC 5182)."""
        if sequence.saved:
            return [u for u in saved if self.seq_of(u) is not None]
        if uid:
            return sequence.filter(self.uids.tolist(), max(self.max_uid, 1) if self.uids else 0)
        return [self.uids[seq - 1] for seq in sequence.numbers(self.exists)]

    def valid_sequence(self, sequence: SequenceSet) -> bool:
        """RFC 9051 §9: a message number beyond EXISTS is an error. A range ending in `*` is
        clamped instead, so `FETCH 1:*` in an empty mailbox just names nothing, which is what
        clients that resync that way expect."""
        return sequence.saved or sequence.uses_star or sequence.highest_explicit() <= self.exists

    def is_expunged(self, uid: int) -> bool:
        return uid in self._expunged

    # -- learning of changes -----------------------------------------------------------------

    def apply(self, highestmodseq: int, changed: Iterable[Message], vanished: Iterable[int]) -> list[int]:
        """File the store's changes since `self.modseq`; returns UIDs that are new."""
        fresh: list[int] = []
        known_new = set(self._new)
        top = max(self.max_uid, self._new[-1] if self._new else 0)
        for message in changed:
            if message.uid > top and message.uid not in known_new:
                fresh.append(message.uid)
                self.keywords |= message.keywords
            elif self.seq_of(message.uid) is not None:
                if self._own.get(message.uid) != message.modseq:
                    self._flags[message.uid] = message
                self.keywords |= message.keywords
        fresh.sort()
        self._new += fresh
        for uid in vanished:
            if self.seq_of(uid) is not None:
                self._expunged.add(uid)
            elif uid in known_new or uid in fresh:
                self._new.remove(uid)  # never announced: the client never learns of it
        self.modseq = max(self.modseq, highestmodseq)
        self._own.clear()
        return fresh

    def note_own_change(self, message: Message) -> None:
        """This session reported the change itself (STORE, FETCH setting \\Seen)."""
        self._own[message.uid] = message.modseq
        self._flags.pop(message.uid, None)
        self.keywords |= message.keywords

    def skip_own(self, modseqs: Sequence[int]) -> bool:
        """Whether the store's latest changes are exactly this session's own flag change, right
        after what the view knows; then nothing needs re-reading and the view moves on."""
        if len(modseqs) != 1 or modseqs[0] != self.modseq + 1:
            return False
        if modseqs[0] not in self._own.values():
            return False
        self.modseq = modseqs[0]
        self._own.clear()
        return True

    @property
    def pending_new(self) -> list[int]:
        """UIDs the next announce() will number (NOTIFY fetches them right after)."""
        return list(self._new)

    @property
    def has_pending(self) -> bool:
        return bool(self._expunged or self._new or self._flags)

    # -- telling the client ------------------------------------------------------------------

    def defined_flags(self) -> list[str]:
        """The FLAGS response: system flags and every keyword in use (RFC 9051 §7.3.5)."""
        self._told_keywords = frozenset(self.keywords)
        return [name for _, name in SYSTEM_FLAG_NAMES] + sorted(self.keywords)

    def announce(self, style: AnnounceStyle, *, allow_expunge: bool, flags: bool = True) -> list[bytes]:
        """Untagged responses for what is pending, in an order that keeps numbers right.

        `flags=False` keeps flag changes pending (NOTIFY without FlagChange, RFC 5465 §5.1):
        they go out with the next command instead."""
        out: list[bytes] = []
        if self.keywords != self._told_keywords:  # a new keyword: FLAGS again, before its FETCH
            out.append(encode.flags(self.defined_flags()))
            if not self.readonly:
                permanent = [*self.defined_flags(), "\\*"]
                out.append(encode.untagged("OK", "flags that stay", encode.code_permanentflags(permanent)))
        if allow_expunge and self._expunged:
            out += self._announce_expunges(style)
        if self._new:
            self.uids.extend(self._new)
            self.uidnext = max(self.uidnext, self._new[-1] + 1)
            self._new.clear()
            out.append(encode.exists(self.exists))
            if style.rev1:
                out.append(encode.recent(len(self.recent)))
        if not flags:
            return out
        for uid in sorted(self._flags):
            seq = self.seq_of(uid)
            if seq is None or uid in self._expunged:
                continue
            out.append(self.flags_fetch(seq, self._flags[uid], style))
        self._flags.clear()
        return out

    def flags_fetch(self, seq: int, message: Message, style: AnnounceStyle,
                    extra: Sequence[tuple[str, object]] = ()) -> bytes:
        items: list[tuple[str, object]] = [("UID", message.uid),
                                           ("FLAGS", flag_names(message, message.uid in self.recent))]
        if style.condstore or style.qresync:
            items.append(("MODSEQ", message.modseq))
        items += extra
        return encode.fetch(seq, items)

    def _announce_expunges(self, style: AnnounceStyle) -> list[bytes]:
        gone = sorted(self._expunged)
        self._expunged.clear()
        out: list[bytes] = []
        if style.qresync:
            out.append(encode.vanished(gone))
        for uid in reversed(gone):  # highest first: each number is still right when sent
            seq = self.seq_of(uid)
            if seq is None:
                continue
            del self.uids[seq - 1]
            self.recent.discard(uid)
            if not style.qresync:
                out.append(encode.expunge(seq))
        return out

    def forget(self, uids: Iterable[int]) -> None:
        """Mark UIDs this session expunged itself, to be announced like any other."""
        for uid in uids:
            if self.seq_of(uid) is not None:
                self._expunged.add(uid)


class RecentClaims:
    """Which new UIDs some session of this process has already claimed as \\Recent.

    RFC 3501 gives \\Recent to one session only, which the store decides (`claim_recent`, a
    write). When a delivery wakes several sessions of one process on the same mailbox, the
    first one's claim covers the others: they skip the write, and the message stays
    non-recent for them, exactly as the store would have answered.
    """

    def __init__(self) -> None:
        self._claimed: dict[int, int] = {}

    def covered(self, mailbox_id: int, highest_uid: int) -> bool:
        return highest_uid <= self._claimed.get(mailbox_id, 0)

    def record(self, mailbox_id: int, highest_uid: int) -> None:
        if highest_uid > self._claimed.get(mailbox_id, 0):
            self._claimed[mailbox_id] = highest_uid

