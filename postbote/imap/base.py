"""What the IMAP session and its command modules share.

`ImapSession` (in `session.py`) is assembled from mixins, one module per theme of commands
(`mailboxes.py`, `selecting.py`, `messages.py`, `searching.py`). They all read and change the
same per-connection state, declared here in `SessionBase`, end a command early with `Answer`,
and look up the account, a mailbox or the selected mailbox through the helpers below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Protocol

from postbote.imap import encode
from postbote.imap.encode import ResponseCode
from postbote.imap.selected import AnnounceStyle, RecentClaims, SelectedMailbox
from postbote.store import Store
from postbote.store.types import Account, Change, Mailbox, Message

if TYPE_CHECKING:
    from postbote.app import App
    from postbote.listener import Connection


class State(Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


class Output(Protocol):
    def send(self, data: bytes) -> None: ...

    async def flush(self) -> None: ...


@dataclass
class Enabled:
    """What the client has turned on with ENABLE (or implicitly, RFC 7162 §3.1)."""

    rev2: bool = False
    utf8: bool = False
    condstore: bool = False
    qresync: bool = False

    def style(self) -> AnnounceStyle:
        return AnnounceStyle(qresync=self.qresync, condstore=self.condstore, rev1=not self.rev2)


@dataclass(frozen=True)
class SessionPolicy:
    """Per-connection facts the session cannot learn from commands."""

    tls_active: bool
    tls_available: bool
    plaintext_allowed: bool  # LOGIN / AUTHENTICATE PLAIN before TLS (loopback peers)
    append_limit: int


class Answer(Exception):
    """Ends a command with a tagged NO or BAD; raised deep in a handler, caught in one place."""

    def __init__(self, status: str, text: str, code: ResponseCode | None = None) -> None:
        super().__init__(text)
        self.status, self.text, self.code = status, text, code


def _no(text: str, code: ResponseCode | None = None) -> Answer:
    return Answer("NO", text, code)


def _bad(text: str, code: ResponseCode | None = None) -> Answer:
    return Answer("BAD", text, code)


class SessionBase:
    """The per-connection state every command module works on; `ImapSession.__init__` sets it."""

    app: App
    store: Store
    conn: Connection
    out: Output
    policy: SessionPolicy
    state: State
    account: Account | None
    enabled: Enabled
    selected: SelectedMailbox | None
    saved: list[int]  # SEARCHRES `$`, as UIDs (RFC 5182)
    recent_claims: RecentClaims

    if TYPE_CHECKING:
        async def refresh(self, force: bool = False, taken: Sequence[Change] = ()) -> None: ...

    @property
    def utf8(self) -> bool:
        return self.enabled.utf8 or self.enabled.rev2

    def _account(self) -> Account:
        assert self.account is not None
        return self.account

    async def _mailbox(self, name: str, *, trycreate: bool = False) -> Mailbox:
        mailbox = await self.store.get_mailbox(self._account().id, name)
        if mailbox is None:
            code = encode.TRYCREATE if trycreate else encode.NONEXISTENT
            raise _no(f"no mailbox {name}", code)
        return mailbox

    def _sel(self) -> SelectedMailbox:
        assert self.selected is not None
        return self.selected

    def _writable(self) -> SelectedMailbox:
        sel = self._sel()
        if sel.readonly:
            raise _no("the mailbox is open read-only (EXAMINE)", encode.READ_ONLY)
        return sel

    def _deselect(self) -> bool:
        had = self.selected is not None
        self.selected = None
        self.saved = []
        self.state = State.AUTHENTICATED
        return had

    async def _load_batch(self, sel: SelectedMailbox, uids: Sequence[int], parse: bool,
                          parse_keys: Sequence[str] | None) -> tuple[list[Message], dict[int, dict]]:
        """Some of the selected mailbox's messages, with each one's cached parse (by blob id)
        when the command reads headers or structure (FETCH, SEARCH, NOTIFY's MessageNew)."""
        if not parse:
            return await self.store.messages_by_uid(sel.mailbox_id, uids), {}
        pairs = await self.store.messages_with_parsed(sel.mailbox_id, uids, parse_keys)
        return [m for m, _ in pairs], {m.blob_id: p for m, p in pairs}
