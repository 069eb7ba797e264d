"""One IMAP session's state machine over the store: what each command does and answers.

The grammar (`grammar.py`) has turned bytes into command values; the server (`server.py`)
owns the socket, TLS, compression and the IDLE wait. This module decides: state rules
(RFC 9051 §3), mailbox commands, FETCH/STORE/SEARCH/COPY/MOVE on the selected mailbox
(through `SelectedMailbox`, which keeps sequence numbers right), and the extensions that
change answers (ENABLE'd IMAP4rev2, UTF8=ACCEPT, CONDSTORE, QRESYNC).

Output goes through `Output.send`; a long answer calls `Output.flush` between batches, so
`FETCH 1:*` over 100,000 messages holds one batch at a time.
"""

from __future__ import annotations

import asyncio
import bisect
import codecs
import logging
import re
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Protocol, TypeVar

from postbote.accounts.service import AuthFailed
from postbote.imap import commands as c
from postbote.imap import encode
from postbote.imap.encode import ResponseCode
from postbote.imap.fetch import FetchError, FetchPlan, Structure, fast_fetch, fetch_items, load_parsed
from postbote.imap.grammar import ImapCommandParser
from postbote.imap.notify import SUPPORTED_EVENTS, NotifyState, check
from postbote.imap.search import (
    Candidate,
    HeaderView,
    SearchNeeds,
    SearchScope,
    esearch_response,
    matches_all,
    saved_result,
)
from postbote.imap.selected import AnnounceStyle, RecentClaims, SelectedMailbox
from postbote.imap.sequence import SequenceSet
from postbote.imap.sortthread import sort_messages, thread_messages
from postbote.log import event
from postbote.mail.message import ParsedMessage
from postbote.store import AlreadyExists, NotFound, QuotaExceeded, Store, StoreError
from postbote.store.types import DELIMITER, FLAG_NAMES, Account, Change, Flag, FlagMode, Mailbox, Message

if TYPE_CHECKING:
    from postbote.app import App
    from postbote.listener import Connection

log = logging.getLogger("postbote.imap")

FETCH_BATCH = 500
METADATA_MAXSIZE = 64 * 1024  # RFC 5464: octets of one value
METADATA_MAX_ENTRIES = 1000  # per account
SEARCH_BATCH = 1000
NOTIFY_BACKLOG = 256  # changes kept during commands; beyond, NOTIFICATIONOVERFLOW
SPECIAL_USES = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")
ENABLEABLE = ("IMAP4REV2", "UTF8=ACCEPT", "CONDSTORE", "QRESYNC")
_SORT_THREAD = ("SORT", "SORT=DISPLAY", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES")


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


T = TypeVar("T")


@dataclass(frozen=True)
class SessionPolicy:
    """Per-connection facts the session cannot learn from commands."""

    tls_active: bool
    tls_available: bool
    plaintext_allowed: bool  # LOGIN / AUTHENTICATE PLAIN before TLS (loopback peers)
    append_limit: int


class SerialWrites:
    """The store, with IMAP's metadata writes taken one at a time.

    SQLite admits one writer; a second one waits inside the executor for the lock, holding a
    thread that reads (FETCH, SEARCH, change checks) then queue behind. Waiting here, on the
    event loop, costs no thread. APPEND is left out: concurrent deliveries share one group
    commit, which a queue here would defeat.
    """

    WRITES = frozenset({"store_flags", "expunge", "copy_messages", "move_messages", "claim_recent",
                        "create_mailbox", "delete_mailbox", "rename_mailbox", "subscribe",
                        "unsubscribe", "set_metadata"})

    def __init__(self, store: object, lane: asyncio.Semaphore) -> None:
        self._store = store
        self._lane = lane

    def __getattr__(self, name: str) -> object:
        method = getattr(self._store, name)
        if name not in self.WRITES:
            return method

        async def serialized(*args: object, **kwargs: object) -> object:
            async with self._lane:
                return await method(*args, **kwargs)

        return serialized


class Answer(Exception):
    """Ends a command with a tagged NO or BAD; raised deep in a handler, caught in one place."""

    def __init__(self, status: str, text: str, code: ResponseCode | None = None) -> None:
        super().__init__(text)
        self.status, self.text, self.code = status, text, code


def _no(text: str, code: ResponseCode | None = None) -> Answer:
    return Answer("NO", text, code)


def _bad(text: str, code: ResponseCode | None = None) -> Answer:
    return Answer("BAD", text, code)


_NOT_AUTH_OK = (c.Capability, c.Noop, c.Logout, c.StartTls, c.Authenticate, c.Login, c.Id,
                c.Enable, c.Compress)
_ANY_STATE = (c.Capability, c.Noop, c.Logout, c.Id)
_SELECTED_ONLY = (c.Check, c.Close, c.Unselect, c.Expunge, c.UidExpunge, c.Search, c.Fetch,
                  c.Store, c.Copy, c.Move, c.Sort, c.Thread)


@dataclass
class Tally:
    """For the session's log line."""

    user: str | None = None
    commands: int = 0
    auth_failures: int = 0
    fetched: int = 0


class ImapSession:
    """Commands in, responses out through `Output` (see the module doc)."""

    def __init__(self, app: App, conn: Connection, out: Output, parser: ImapCommandParser,
                 policy: SessionPolicy, recent_claims: RecentClaims | None = None,
                 write_lane: asyncio.Semaphore | None = None) -> None:
        self.app = app
        self.store: Store = SerialWrites(app.store, write_lane or asyncio.Semaphore(1))  # type: ignore[assignment]
        self.conn = conn
        self.out = out
        self.parser = parser
        self.policy = policy
        self.state = State.NOT_AUTHENTICATED
        self.account: Account | None = None
        self.enabled = Enabled()
        self.selected: SelectedMailbox | None = None
        self.subscription = None
        self.saved: list[int] = []  # SEARCHRES `$`, as UIDs (RFC 5182)
        self.tally = Tally()
        self.compressed = False
        self._dispatch = self._handlers()
        self.recent_claims = recent_claims or RecentClaims()
        self.notify: NotifyState | None = None  # NOTIFY SET in force (RFC 5465)
        self._backlog: list[Change] = []  # changes of other mailboxes taken during a command
        self._stale = False  # the selected mailbox changed and was not re-read yet
        self._names: dict[int, str] = {}  # mailbox id -> name, kept while NOTIFY is on
        self._subscribed: set[str] = set()  # kept while NOTIFY needs it

    # -- capabilities ---------------------------------------------------------------------

    def capabilities(self) -> list[str]:
        caps = ["IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE"]
        if self.state is State.NOT_AUTHENTICATED:
            if self.policy.tls_available and not self.policy.tls_active:
                caps.append("STARTTLS")
            if self.login_allowed:
                caps.append("AUTH=PLAIN")
            else:
                caps.append("LOGINDISABLED")
            return caps
        caps += ["IDLE", "NAMESPACE", "UIDPLUS", "MOVE", "UNSELECT", "CHILDREN", "LIST-EXTENDED",
                 "LIST-STATUS", "SPECIAL-USE", "CREATE-SPECIAL-USE", "CONDSTORE", "QRESYNC",
                 "ESEARCH", "SEARCHRES", "WITHIN", "QUOTA", "QUOTA=RES-STORAGE", "STATUS=SIZE",
                 f"APPENDLIMIT={self.policy.append_limit}", "UTF8=ACCEPT", "MULTIAPPEND", "BINARY",
                 "SAVEDATE", "OBJECTID", "PREVIEW", "METADATA", "NOTIFY", *_SORT_THREAD]
        if not self.compressed:
            caps.append("COMPRESS=DEFLATE")
        return caps

    @property
    def login_allowed(self) -> bool:
        return self.policy.tls_active or self.policy.plaintext_allowed

    @property
    def utf8(self) -> bool:
        return self.enabled.utf8 or self.enabled.rev2

    # -- dispatch -------------------------------------------------------------------------

    async def handle(self, cmd: c.Command) -> None:
        """Run one command to its tagged response."""
        self.tally.commands += 1
        try:
            self._check_state(cmd)
            handler = self._dispatch.get(type(cmd))
            if handler is None:
                raise _bad(f"{type(cmd).__name__.upper()} is not supported", encode.CLIENTBUG)
            text = await handler(cmd)
        except Answer as answer:
            await self._finish(cmd, allow_expunge=False)
            self.out.send(encode.tagged(cmd.tag, answer.status, answer.text, answer.code, utf8=self.utf8))
            return
        except StoreError as exc:
            event(log, "imap store error", level=logging.WARNING, session=self.conn.id, error=str(exc))
            self.out.send(encode.no(cmd.tag, "the mailbox store is unavailable, try again", encode.UNAVAILABLE))
            return
        await self._finish(cmd, allow_expunge=not isinstance(cmd, (c.Fetch, c.Store, c.Search, c.Sort, c.Thread)))
        if self.state is State.LOGOUT:
            self.out.send(encode.bye("logging out"))
        if isinstance(text, tuple):
            self.out.send(encode.tagged(cmd.tag, "OK", text[0], text[1], utf8=self.utf8))
        else:
            self.out.send(encode.ok(cmd.tag))

    def _check_state(self, cmd: c.Command) -> None:
        if isinstance(cmd, _ANY_STATE):
            return
        if self.state is State.NOT_AUTHENTICATED and not isinstance(cmd, _NOT_AUTH_OK):
            raise _bad("log in first", encode.CLIENTBUG)
        if self.state is not State.NOT_AUTHENTICATED and isinstance(cmd, (c.Login, c.Authenticate, c.StartTls)):
            raise _bad("already logged in", encode.CLIENTBUG)
        if self.state is not State.SELECTED and isinstance(cmd, _SELECTED_ONLY):
            raise _bad("no mailbox selected", encode.CLIENTBUG)

    def _handlers(self) -> dict[type, Callable[..., Awaitable[object]]]:
        return {
            c.Capability: self.do_capability, c.Noop: self.do_noop, c.Check: self.do_noop,
            c.Logout: self.do_logout, c.Login: self.do_login, c.Enable: self.do_enable,
            c.Id: self.do_id, c.Namespace: self.do_namespace, c.List: self.do_list,
            c.Lsub: self.do_lsub, c.Create: self.do_create, c.Delete: self.do_delete,
            c.Rename: self.do_rename, c.Subscribe: self.do_subscribe,
            c.Unsubscribe: self.do_unsubscribe, c.Status: self.do_status,
            c.Select: self.do_select, c.Examine: self.do_select, c.Append: self.do_append,
            c.Close: self.do_close, c.Unselect: self.do_unselect, c.Expunge: self.do_expunge,
            c.UidExpunge: self.do_expunge, c.Fetch: self.do_fetch, c.Store: self.do_store,
            c.Copy: self.do_copy, c.Move: self.do_copy, c.Search: self.do_search,
            c.GetQuota: self.do_getquota, c.GetQuotaRoot: self.do_getquotaroot,
            c.SetQuota: self.do_setquota, c.Sort: self.do_sort, c.Thread: self.do_thread,
            c.GetMetadata: self.do_getmetadata, c.SetMetadata: self.do_setmetadata,
            c.Notify: self.do_notify,
        }

    async def _finish(self, cmd: c.Command, *, allow_expunge: bool) -> None:
        """Tell the client what others changed, where RFC 9051 §7.5.1 allows it."""
        if self.selected is None:
            return
        await self.refresh()
        for line in self.selected.announce(self.enabled.style(), allow_expunge=allow_expunge):
            self.out.send(line)

    async def refresh(self, force: bool = False, taken: Sequence[Change] = ()) -> None:
        """Learn what changed in the selected mailbox, if the change feed says anything did."""
        sel = self.selected
        if sel is None or self.subscription is None:
            return
        changes = [*taken, *self.subscription.take()]
        relevant = [ch for ch in changes if ch.mailbox_id in (sel.mailbox_id, 0)]
        if self.notify is not None:
            self._keep_for_notify(changes)
        if self._stale:
            force, self._stale = True, False
        if not force and not relevant:
            return
        if not force and all(ch.kinds == {"flags"} and ch.mailbox_id for ch in relevant):
            if sel.skip_own(sorted({ch.modseq for ch in relevant})):
                return
        try:
            modseq, changed, vanished = await self.store.mailbox_changes(sel.mailbox_id, sel.modseq)
        except NotFound:
            return  # deleted under us: the next command on it fails
        fresh = sel.apply(modseq, changed, vanished)
        if fresh and not self.enabled.rev2 and not sel.readonly:
            if self.recent_claims.covered(sel.mailbox_id, fresh[-1]):
                return  # another session of this process holds them as \Recent
            self.recent_claims.record(sel.mailbox_id, fresh[-1])
            first = await self.store.claim_recent(sel.mailbox_id)
            sel.recent.update(uid for uid in fresh if uid >= first)

    async def idle_changed(self, changes: Sequence[Change]) -> None:
        """A change arrived during IDLE: tell the client at once (expunges included)."""
        if self.selected is None:
            return
        await self.refresh(taken=changes)
        for line in self.selected.announce(self.enabled.style(), allow_expunge=True):
            self.out.send(line)

    # -- NOTIFY (RFC 5465) ---------------------------------------------------------------------

    @property
    def notifying(self) -> bool:
        return self.notify is not None

    @property
    def has_backlog(self) -> bool:
        return bool(self._backlog)

    def _keep_for_notify(self, changes: Sequence[Change]) -> None:
        """Changes a command's refresh took that NOTIFY still has to report once it is done."""
        selected_id = self.selected.mailbox_id if self.selected is not None else -1
        for change in changes:
            if change.mailbox_id == selected_id and not change.kinds & {"mailbox", "subscription"}:
                continue
            if not change.kinds & {"new", "flags", "expunge", "mailbox", "subscription", "overflow"}:
                continue  # e.g. {"sieve"}: nothing NOTIFY reports
            if len(self._backlog) >= NOTIFY_BACKLOG:
                self._backlog = [Change(change.account_id, 0, 0, frozenset({"overflow"}))]
            else:
                self._backlog.append(change)

    async def do_notify(self, cmd: c.Notify) -> None:
        if not cmd.groups:
            self._notify_off()  # RFC 5465 §3.1: NOTIFY NONE
            return
        refusal = check(cmd)
        if refusal is not None:
            code = encode.code_badevent(SUPPORTED_EVENTS) if refusal.badevent else encode.CLIENTBUG
            raise Answer(refusal.status, refusal.text, code)
        self.notify = NotifyState.of(cmd)
        self._backlog = []
        await self._load_names()
        if cmd.status:  # RFC 5465 §3.1: the STATUS indicator
            for mailbox_id, name in sorted(self._names.items(), key=lambda pair: pair[1]):
                if not self._is_selected(mailbox_id) and self.notify.status_wanted(name, self._subscribed):
                    await self._send_status(mailbox_id, name)

    def _notify_off(self) -> None:
        self.notify = None
        self._backlog = []
        self._names = {}
        self._subscribed = set()

    def _is_selected(self, mailbox_id: int) -> bool:
        return self.selected is not None and self.selected.mailbox_id == mailbox_id

    async def _load_names(self) -> None:
        mailboxes = await self.store.list_mailboxes(self._account().id)
        self._names = {m.id: m.name for m in mailboxes}
        if self.notify is not None and self.notify.needs_subscriptions:
            self._subscribed = set(await self.store.list_subscriptions(self._account().id))

    async def notifications(self, changes: Sequence[Change] = (), *, idle: bool = False) -> None:
        """Unsolicited responses between commands: what NOTIFY asked for, or, without NOTIFY,
        what IDLE reports (RFC 5465 §4: with NOTIFY on, NOTIFY decides what IDLE reports)."""
        if self.notify is None:
            if idle:
                await self.idle_changed(changes)
            return
        taken = [*self._backlog, *changes, *(self.subscription.take() if self.subscription else ())]
        self._backlog = []
        if any("overflow" in change.kinds for change in taken):
            self._overflow()
            return
        mine = [ch for ch in taken if self._is_selected(ch.mailbox_id)]
        if mine:
            await self._notify_selected(mine)
        if any("mailbox" in change.kinds for change in taken):
            await self._mailboxes_changed()
        if any("subscription" in change.kinds for change in taken):
            await self._subscriptions_changed()
        await self._notify_status(taken)

    def _overflow(self) -> None:
        """RFC 5465 §5.8: too much to tell; NOTIFY turns itself off and the client resyncs."""
        self.out.send(encode.untagged("OK", "too many changes, NOTIFY is off", encode.NOTIFICATIONOVERFLOW))
        self._notify_off()
        self._stale = True

    async def _notify_selected(self, changes: Sequence[Change]) -> None:
        """RFC 5465 §5.1-§5.3: EXISTS, EXPUNGE (not with selected-delayed) and FETCH."""
        assert self.notify is not None
        sel, events = self.selected, self.notify.selected
        if sel is None or not events:
            self._stale = True  # not asked for: told with the next command, as usual
            return
        await self.refresh(taken=changes)
        fresh = sel.pending_new
        for line in sel.announce(self.enabled.style(), allow_expunge=not self.notify.delayed,
                                 flags="FlagChange" in events):
            self.out.send(line)
        if fresh and self.notify.fetch_atts:
            await self._fetch_new(sel, fresh, self.notify.fetch_atts)

    async def _fetch_new(self, sel: SelectedMailbox, uids: list[int], atts: Sequence[c.FetchItem]) -> None:
        """RFC 5465 §5.2: MessageNew (fetch-att ...) sends a FETCH for each new message."""
        items = list(atts)
        if not any(isinstance(i, c.FetchAtt) and i.name == "UID" for i in items):
            items.insert(0, c.FetchAtt("UID"))
        if self.enabled.condstore and not any(isinstance(i, c.FetchAtt) and i.name == "MODSEQ" for i in items):
            items.append(c.FetchAtt("MODSEQ"))
        plan = FetchPlan.of(items, True)  # read-only: a notification never sets \Seen
        uids = [uid for uid in uids if sel.seq_of(uid) is not None]
        parsed: dict[int, dict] = {}
        if plan.needs_parse:
            pairs = await self.store.messages_with_parsed(sel.mailbox_id, uids, plan.parse_keys)
            batch = [m for m, _ in pairs]
            parsed = {m.blob_id: p for m, p in pairs}
        else:
            batch = await self.store.messages_by_uid(sel.mailbox_id, uids)
        await self._fetch_batch(sel, batch, plan, parsed)

    def _wants(self, name: str, event_name: str, subscribed: Collection[str] | None = None) -> bool:
        assert self.notify is not None
        return event_name in self.notify.events_for(name, self._subscribed if subscribed is None else subscribed)

    async def _mailboxes_changed(self) -> None:
        """RFC 5465 §5.4 MailboxName: a LIST for each created, deleted or renamed mailbox."""
        old = self._names
        mailboxes = await self.store.list_mailboxes(self._account().id)
        self._names = {m.id: m.name for m in mailboxes}
        listing = MailboxListing(mailboxes, self._subscribed)
        for mailbox_id, name in self._names.items():
            before = old.get(mailbox_id)
            if before == name:
                continue
            if self._wants(name, "MailboxName") or (before is not None and self._wants(before, "MailboxName")):
                attributes = listing.attributes(name, listing.by_name[name], set())
                self.out.send(encode.list_response(name, DELIMITER, attributes, utf8=self.utf8, oldname=before))
        for mailbox_id, name in old.items():
            if mailbox_id not in self._names and self._wants(name, "MailboxName"):
                self.out.send(encode.list_response(name, DELIMITER, ["\\NonExistent"], utf8=self.utf8))

    async def _subscriptions_changed(self) -> None:
        """RFC 5465 §5.5 SubscriptionChange: a LIST with or without \\Subscribed."""
        assert self.notify is not None
        if not self.notify.needs_subscriptions:
            return
        old = self._subscribed
        self._subscribed = set(await self.store.list_subscriptions(self._account().id))
        for name in sorted(old ^ self._subscribed):
            if self._wants(name, "SubscriptionChange", old | self._subscribed):
                attributes = ["\\Subscribed"] if name in self._subscribed else []
                self.out.send(encode.list_response(name, DELIMITER, attributes, utf8=self.utf8))

    async def _notify_status(self, changes: Sequence[Change]) -> None:
        """RFC 5465 §5.2-§5.3: a STATUS for another mailbox whose messages changed."""
        assert self.notify is not None
        kinds: dict[int, set[str]] = {}
        for change in changes:
            if change.mailbox_id and change.kinds & {"new", "flags", "expunge"}:
                kinds.setdefault(change.mailbox_id, set()).update(change.kinds)
        for mailbox_id, found in kinds.items():
            if self._is_selected(mailbox_id) or self.notify is None:
                continue
            name = self._names.get(mailbox_id)
            if name is None:
                await self._load_names()
                name = self._names.get(mailbox_id)
            if name is not None and self.notify.reports(name, found, self._subscribed):
                await self._send_status(mailbox_id, name)

    async def _send_status(self, mailbox_id: int, name: str) -> None:
        try:
            status = await self.store.mailbox_status(mailbox_id)
        except NotFound:
            return
        items: list[tuple[str, int]] = [("MESSAGES", status.messages), ("UIDNEXT", status.uidnext),
                                        ("UIDVALIDITY", status.uidvalidity), ("UNSEEN", status.unseen)]
        if self.enabled.condstore:
            items.append(("HIGHESTMODSEQ", status.highestmodseq))
        self.out.send(encode.status(name, items, utf8=self.utf8))

    def close(self) -> None:
        if self.subscription is not None:
            self.subscription.close()
            self.subscription = None

    # -- any state ----------------------------------------------------------------------------

    async def do_capability(self, cmd: c.Capability) -> None:
        self.out.send(encode.capability(self.capabilities()))

    async def do_noop(self, cmd: c.Noop | c.Check) -> None:
        await self.refresh(force=True)

    async def do_logout(self, cmd: c.Logout) -> None:
        self.state = State.LOGOUT

    async def do_id(self, cmd: c.Id) -> None:
        self.out.send(encode.id_response({"name": "postbote", "vendor": "postbote"}))

    async def do_enable(self, cmd: c.Enable) -> None:
        if self.state is State.NOT_AUTHENTICATED:
            raise _bad("ENABLE is allowed after login", encode.CLIENTBUG)
        newly: list[str] = []
        for name in cmd.capabilities:
            if name not in ENABLEABLE:
                continue
            attr = {"IMAP4REV2": "rev2", "UTF8=ACCEPT": "utf8", "CONDSTORE": "condstore",
                    "QRESYNC": "qresync"}[name]
            if not getattr(self.enabled, attr):
                setattr(self.enabled, attr, True)
                newly.append("IMAP4rev2" if name == "IMAP4REV2" else name)
        if self.enabled.qresync:
            self.enabled.condstore = True  # RFC 7162 §3.2.3
        self.parser.utf8_names = self.utf8
        self.out.send(encode.enabled(newly))

    # -- not authenticated --------------------------------------------------------------------

    async def do_login(self, cmd: c.Login) -> object:
        if not self.login_allowed:
            raise _no("log in after STARTTLS", encode.PRIVACYREQUIRED)
        return await self.authenticate(cmd.user, cmd.password)

    async def authenticate(self, user: str, password: str, authzid: str = "") -> object:
        """Shared by LOGIN and AUTHENTICATE PLAIN; returns the tagged OK's (text, code)."""
        self.tally.user = user
        result = await self.app.accounts.authenticate(user, password, self.conn.peer_ip)
        if isinstance(result, AuthFailed):
            self.tally.auth_failures += 1
            code = encode.UNAVAILABLE if result.locked else encode.AUTHENTICATIONFAILED
            raise _no("too many failed logins, try again later" if result.locked
                      else "invalid user name or password", code)
        account = result.account
        if authzid and authzid.lower() not in (user.lower(), account.address):
            raise _no(f"not authorized to act as {authzid}", encode.AUTHORIZATIONFAILED)
        self.account = account
        self.tally.user = account.address
        self.state = State.AUTHENTICATED
        self.subscription = self.store.changes.subscribe(account.id)
        return ("logged in", encode.code_capability(self.capabilities()))

    # -- authenticated: mailboxes --------------------------------------------------------------

    def _account(self) -> Account:
        assert self.account is not None
        return self.account

    async def _mailbox(self, name: str, *, trycreate: bool = False) -> Mailbox:
        mailbox = await self.store.get_mailbox(self._account().id, name)
        if mailbox is None:
            code = encode.TRYCREATE if trycreate else encode.NONEXISTENT
            raise _no(f"no mailbox {name}", code)
        return mailbox

    async def do_namespace(self, cmd: c.Namespace) -> None:
        self.out.send(encode.namespace([("", DELIMITER)], utf8=self.utf8))

    async def do_create(self, cmd: c.Create) -> object:
        name = cmd.mailbox.rstrip(DELIMITER)  # RFC 9051 §6.3.4: a trailing delimiter is a hint
        if name.upper() == "INBOX":
            raise _no("INBOX exists already", encode.ALREADYEXISTS)
        special = None
        if cmd.special_use:
            known = {use.upper(): use for use in SPECIAL_USES}
            uses = [known.get(use.upper()) for use in cmd.special_use]
            if None in uses or len(uses) > 1:
                raise _no("unsupported special-use attribute", encode.USEATTR)
            special = uses[0]
        account_id = self._account().id
        parts = name.split(DELIMITER)
        for depth in range(1, len(parts)):  # RFC 9051 §6.3.4: create the superiors too
            parent = DELIMITER.join(parts[:depth])
            if await self.store.get_mailbox(account_id, parent) is None:
                await self._create(parent, None)
        mailbox = await self._create(name, special)
        return ("created", encode.code_mailboxid(f"F{mailbox.id}"))  # RFC 8474 §4.1

    async def _create(self, name: str, special: str | None) -> Mailbox:
        try:
            return await self.store.create_mailbox(self._account().id, name, special)
        except AlreadyExists:
            raise _no(f"mailbox {name} exists already", encode.ALREADYEXISTS) from None
        except NotFound as exc:
            raise _no(str(exc), encode.NONEXISTENT) from None
        except StoreError as exc:
            raise _no(str(exc), encode.CANNOT) from None

    async def do_delete(self, cmd: c.Delete) -> None:
        if cmd.mailbox == "INBOX":
            raise _no("INBOX cannot be deleted", encode.CANNOT)
        mailbox = await self._mailbox(cmd.mailbox)
        names = [m.name for m in await self.store.list_mailboxes(self._account().id)]
        if any(n.startswith(mailbox.name + DELIMITER) for n in names):
            raise _no("delete the mailboxes inside it first", encode.HASCHILDREN)
        if self.selected is not None and self.selected.mailbox_id == mailbox.id:
            self._deselect()
        await self.store.delete_mailbox(self._account().id, mailbox.name)

    async def do_rename(self, cmd: c.Rename) -> None:
        await self._mailbox(cmd.mailbox)
        if await self.store.get_mailbox(self._account().id, cmd.new_name) is not None:
            raise _no(f"mailbox {cmd.new_name} exists already", encode.ALREADYEXISTS)
        parts = cmd.new_name.split(DELIMITER)
        for depth in range(1, len(parts)):
            parent = DELIMITER.join(parts[:depth])
            if await self.store.get_mailbox(self._account().id, parent) is None:
                await self._create(parent, None)
        try:
            await self.store.rename_mailbox(self._account().id, cmd.mailbox, cmd.new_name)
        except AlreadyExists:
            raise _no(f"mailbox {cmd.new_name} exists already", encode.ALREADYEXISTS) from None

    async def do_subscribe(self, cmd: c.Subscribe) -> None:
        mailbox = await self._mailbox(cmd.mailbox)
        await self.store.subscribe(self._account().id, cmd.mailbox)
        self._announce_subscription(mailbox.id)

    async def do_unsubscribe(self, cmd: c.Unsubscribe) -> None:
        await self.store.unsubscribe(self._account().id, cmd.mailbox)
        mailbox = await self.store.get_mailbox(self._account().id, cmd.mailbox)
        self._announce_subscription(mailbox.id if mailbox is not None else 0)

    def _announce_subscription(self, mailbox_id: int) -> None:
        """The store does not publish subscription changes; NOTIFY SubscriptionChange (RFC
        5465 §5.5) needs other sessions to hear of them, so the change feed is told here."""
        self.store.changes.publish(Change(self._account().id, mailbox_id, 0, frozenset({"subscription"})))

    async def do_list(self, cmd: c.List) -> None:
        if cmd.patterns == ("",) and not cmd.selection_options:
            # RFC 9051 §6.3.9: the hierarchy delimiter and root name
            self.out.send(encode.list_response("", DELIMITER, ["\\Noselect"], utf8=self.utf8))
            return
        mailboxes = await self.store.list_mailboxes(self._account().id)
        subscribed = set(await self.store.list_subscriptions(self._account().id))
        listing = MailboxListing(mailboxes, subscribed)
        select, returns = set(cmd.selection_options), set(cmd.return_options)
        for name, attributes, childinfo in listing.matching(cmd.reference, cmd.patterns, select, returns):
            self.out.send(encode.list_response(name, DELIMITER, attributes, utf8=self.utf8, childinfo=childinfo))
            mailbox = listing.by_name.get(name)
            if cmd.status_items is not None and mailbox is not None:
                self.out.send(await self._status_line(mailbox, cmd.status_items))

    async def do_lsub(self, cmd: c.Lsub) -> None:
        mailboxes = await self.store.list_mailboxes(self._account().id)
        subscribed = set(await self.store.list_subscriptions(self._account().id))
        listing = MailboxListing(mailboxes, subscribed)
        for name, attributes, _ in listing.matching(cmd.reference, (cmd.pattern,), {"SUBSCRIBED"}, set()):
            attributes = [a for a in attributes if a not in ("\\Subscribed", "\\NonExistent")]
            self.out.send(encode.lsub_response(name, DELIMITER, attributes, utf8=self.utf8))

    async def do_status(self, cmd: c.Status) -> None:
        mailbox = await self._mailbox(cmd.mailbox)
        self.out.send(await self._status_line(mailbox, cmd.items))

    async def _status_line(self, mailbox: Mailbox, items: Sequence[str]) -> bytes:
        status = await self.store.mailbox_status(mailbox.id)
        values = {
            "MESSAGES": status.messages, "UIDNEXT": status.uidnext,
            "UIDVALIDITY": status.uidvalidity, "UNSEEN": status.unseen,
            "DELETED": status.deleted, "SIZE": status.size,
            "HIGHESTMODSEQ": status.highestmodseq, "RECENT": status.recent,
            "APPENDLIMIT": self.policy.append_limit,
        }
        if "HIGHESTMODSEQ" in items:
            self.enabled.condstore = True  # RFC 7162 §3.1: a CONDSTORE-enabling command
        pairs: list[tuple[str, object]] = []
        for item in items:
            if item == "MAILBOXID":
                pairs.append((item, (encode.Atom(f"F{mailbox.id}"),)))
            elif item in values:
                pairs.append((item, values[item]))
        return encode.status(mailbox.name, pairs, utf8=self.utf8)  # type: ignore[arg-type]

    # -- quota (RFC 9208) -----------------------------------------------------------------------

    async def _fresh_account(self) -> Account:
        account = await self.store.get_account_by_id(self._account().id)
        if account is None:
            raise _no("the account is gone", encode.NONEXISTENT)
        return account

    async def do_getquotaroot(self, cmd: c.GetQuotaRoot) -> None:
        await self._mailbox(cmd.mailbox)
        account = await self._fresh_account()
        roots = [""] if account.quota else []
        self.out.send(encode.quotaroot(cmd.mailbox, roots, utf8=self.utf8))
        if account.quota:
            self.out.send(encode.quota("", [("STORAGE", account.used // 1024, account.quota // 1024)]))

    async def do_getquota(self, cmd: c.GetQuota) -> None:
        account = await self._fresh_account()
        if cmd.root != "" or not account.quota:
            raise _no(f"no quota root {cmd.root!r}", encode.NONEXISTENT)
        self.out.send(encode.quota("", [("STORAGE", account.used // 1024, account.quota // 1024)]))

    async def do_setquota(self, cmd: c.SetQuota) -> None:
        raise _no("quotas are set by the administrator", encode.NOPERM)

    # -- METADATA (RFC 5464) ----------------------------------------------------------------------

    async def _metadata_target(self, name: str) -> int:
        """The mailbox id entries hang on; 0 for the server entries of GETMETADATA ""."""
        return 0 if name == "" else (await self._mailbox(name)).id

    async def do_getmetadata(self, cmd: c.GetMetadata) -> object:
        target = await self._metadata_target(cmd.mailbox)
        names = [metadata_entry(entry) for entry in cmd.entries]
        depth = {None: 0, "0": 0, "1": 1, "infinity": None}[cmd.depth]
        found = await self.store.get_metadata(self._account().id, target, names, depth)
        longest = 0
        if cmd.maxsize is not None:
            longest = max((len(v) for _, v in found if len(v) > cmd.maxsize), default=0)
            found = [(e, v) for e, v in found if len(v) <= cmd.maxsize]
        if found:
            self.out.send(encode.metadata(cmd.mailbox, [(e, _metadata_value(v)) for e, v in found],
                                          utf8=self.utf8))
        if longest:
            return ("some values are longer than MAXSIZE", ResponseCode("METADATA", (encode.Atom("LONGENTRIES"), longest)))
        return None

    async def do_setmetadata(self, cmd: c.SetMetadata) -> None:
        target = await self._metadata_target(cmd.mailbox)
        entries = [(metadata_entry(entry), value) for entry, value in cmd.entries]
        if any(value is not None and len(value) > METADATA_MAXSIZE for _, value in entries):
            raise _no("the value is too large", ResponseCode("METADATA", (encode.Atom("MAXSIZE"), METADATA_MAXSIZE)))
        try:
            await self.store.set_metadata(self._account().id, target, entries, METADATA_MAX_ENTRIES)
        except QuotaExceeded:
            raise _no("too many metadata entries", ResponseCode("METADATA", (encode.Atom("TOOMANY"),))) from None

    # -- SELECT / EXAMINE -------------------------------------------------------------------------

    def _deselect(self) -> bool:
        had = self.selected is not None
        self.selected = None
        self.saved = []
        self.state = State.AUTHENTICATED
        return had

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

    def _sel(self) -> SelectedMailbox:
        assert self.selected is not None
        return self.selected

    def _writable(self) -> SelectedMailbox:
        sel = self._sel()
        if sel.readonly:
            raise _no("the mailbox is open read-only (EXAMINE)", encode.READ_ONLY)
        return sel

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
            parsed: dict[int, dict] = {}
            if plan.needs_parse:
                pairs = await self.store.messages_with_parsed(sel.mailbox_id, chunk, plan.parse_keys)
                batch = [m for m, _ in pairs]
                parsed = {m.blob_id: p for m, p in pairs}
            else:
                batch = await self.store.messages_by_uid(sel.mailbox_id, chunk)
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

    # -- SEARCH ---------------------------------------------------------------------------------

    async def _check_charset(self, charset: str | None) -> None:
        if charset is None:
            return
        try:
            codecs.lookup(charset)
        except LookupError:
            raise _no(f"unknown charset {charset}", encode.code_badcharset(["UTF-8", "US-ASCII"])) from None

    async def matching(self, keys: Sequence[c.SearchKey]) -> list[Message]:
        """The selected messages matching every key, by ascending UID."""
        sel = self._sel()
        needs = SearchNeeds.of(keys)
        scope = SearchScope(sel.exists, sel.max_uid, frozenset(self.saved), time.time())
        found: list[Message] = []
        uids = await self._search_candidates(sel, keys)
        for start in range(0, len(uids), SEARCH_BATCH):
            chunk = uids[start:start + SEARCH_BATCH]
            parsed: dict[int, dict] = {}
            if needs.parse:
                pairs = await self.store.messages_with_parsed(sel.mailbox_id, chunk, needs.parse_keys)
                batch = [m for m, _ in pairs]
                parsed = {m.blob_id: p for m, p in pairs}
            else:
                batch = await self.store.messages_by_uid(sel.mailbox_id, chunk)
            for m in batch:
                seq = sel.seq_of(m.uid)
                if seq is None or sel.is_expunged(m.uid):
                    continue
                raw = await self.store.read_blob(m.blob_id) if needs.body else None
                cand = Candidate(seq, m, m.uid in sel.recent)
                if needs.parse:
                    cand.parsed = HeaderView(parsed.get(m.blob_id), raw)
                if matches_all(keys, cand, scope):
                    found.append(m)
        return found

    async def _search_candidates(self, sel: SelectedMailbox, keys: Sequence[c.SearchKey]) -> list[int]:
        """The view's UIDs, narrowed by the store's subject column when a key allows it."""
        uids = sel.uids.tolist()
        for key in keys:
            if isinstance(key, c.SearchText) and key.field == "SUBJECT":
                narrowed = await self.store.uids_with_subject(sel.mailbox_id, key.value)
                if narrowed is not None:
                    keep = set(narrowed)
                    uids = [uid for uid in uids if uid in keep]
        return uids

    async def do_search(self, cmd: c.Search) -> None:
        sel = self._sel()
        await self._check_charset(cmd.charset)
        found = await self.matching(cmd.criteria)
        uses_modseq = _uses_modseq(cmd.criteria)
        if uses_modseq:
            self.enabled.condstore = True
        modseq = max((m.modseq for m in found), default=None) if uses_modseq else None
        numbers = [m.uid if cmd.uid else sel.seq_of(m.uid) or 0 for m in found]
        options = cmd.return_options
        if options is not None and "SAVE" in options:
            self.saved = saved_result([m.uid for m in found], options)
        if options is None and not self.enabled.rev2:
            self.out.send(encode.search(numbers, modseq=modseq))
        elif options is None or set(options) != {"SAVE"}:
            self.out.send(esearch_response(cmd.tag, numbers, options or (), uid=cmd.uid, modseq=modseq))

    async def do_sort(self, cmd: c.Sort) -> None:
        await self._check_charset(cmd.charset)
        sel = self._sel()
        found = await self.matching(cmd.search)
        parsed = await self.store.parsed_many([m.blob_id for m in found])
        ordered = await self._off_loop(lambda: sort_messages(found, _loaded(parsed), cmd.criteria))
        numbers = [m.uid if cmd.uid else sel.seq_of(m.uid) or 0 for m in ordered]
        if cmd.return_options is not None:
            self.out.send(esearch_response(cmd.tag, numbers, cmd.return_options, uid=cmd.uid, modseq=None))
        else:
            self.out.send(encode.sort(numbers))

    async def do_thread(self, cmd: c.Thread) -> None:
        await self._check_charset(cmd.charset)
        if cmd.algorithm not in ("ORDEREDSUBJECT", "REFERENCES"):
            raise _bad(f"unknown threading algorithm {cmd.algorithm}", encode.CLIENTBUG)
        sel = self._sel()
        found = await self.matching(cmd.search)
        parsed = await self.store.parsed_many([m.blob_id for m in found])
        numbers = {m.uid: (m.uid if cmd.uid else sel.seq_of(m.uid) or 0) for m in found}
        roots = await self._off_loop(lambda: thread_messages(found, _loaded(parsed), cmd.algorithm, numbers))
        self.out.send(encode.thread(roots))


    async def _off_loop(self, work: Callable[[], T]) -> T:
        """CPU work that grows with the mailbox (SORT, THREAD: 0.4 s for 20,000
        messages) runs in a worker thread, so other sessions are not kept waiting."""
        return await asyncio.get_running_loop().run_in_executor(self.app.executor, work)


def _loaded(parsed: Mapping[int, object]) -> dict[int, ParsedMessage | None]:
    return {b: load_parsed(p, None) for b, p in parsed.items()}


def _uses_modseq(keys: Sequence[c.SearchKey]) -> bool:
    stack = list(keys)
    while stack:
        key = stack.pop()
        if isinstance(key, c.SearchModSeq):
            return True
        if isinstance(key, c.SearchNot):
            stack.append(key.key)
        elif isinstance(key, c.SearchOr):
            stack += [key.left, key.right]
        elif isinstance(key, c.SearchAnd):
            stack += key.keys
    return False


_METADATA_ENTRY = re.compile(r"/(private|shared)(/[\x21-\x7e]+)*")


def metadata_entry(name: str) -> str:
    """RFC 5464 §3.2: an entry name under /private or /shared, compared without case."""
    lower = name.lower()
    if not _METADATA_ENTRY.fullmatch(lower) or "//" in lower or "*" in lower or "%" in lower:
        raise _bad(f"invalid metadata entry name {name!r}", encode.CLIENTBUG)
    return lower


def _metadata_value(value: bytes) -> str | bytes:
    """Text goes out as a string (quoted when short), anything else as a literal."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return value
    return text if text.isprintable() else value


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


# --- LIST -----------------------------------------------------------------------------------------


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """RFC 9051 §6.3.9: `*` matches anything, `%` anything but the hierarchy delimiter."""
    out = []
    for char in pattern:
        if char == "*":
            out.append(".*")
        elif char == "%":
            out.append(f"[^{re.escape(DELIMITER)}]*")
        else:
            out.append(re.escape(char))
    text = "".join(out)
    if pattern.upper().startswith("INBOX"):
        text = "(?i:" + re.escape("INBOX") + ")" + "".join(out)[len(re.escape("INBOX")):]
    return re.compile(text, re.DOTALL)


@dataclass
class MailboxListing:
    """The account's mailboxes and subscriptions, as LIST and LSUB answer them."""

    mailboxes: list[Mailbox]
    subscribed: set[str]
    by_name: dict[str, Mailbox] = field(init=False)

    def __post_init__(self) -> None:
        self.by_name = {m.name: m for m in self.mailboxes}

    def has_children(self, name: str) -> bool:
        prefix = name + DELIMITER
        return any(n.startswith(prefix) for n in self.by_name)

    def names(self, select: set[str]) -> list[str]:
        names = set(self.by_name)
        if "SUBSCRIBED" in select:
            names = set(self.subscribed)
        implied = set()
        for name in names:  # parents that exist only as part of a longer name
            parts = name.split(DELIMITER)
            implied |= {DELIMITER.join(parts[:i]) for i in range(1, len(parts))}
        return sorted(names | (implied - names if "SUBSCRIBED" not in select else set()),
                      key=lambda n: (n != "INBOX", n))

    def matching(self, reference: str, patterns: Sequence[str], select: set[str],
                 returns: set[str]) -> list[tuple[str, list[str], list[str]]]:
        """(name, attributes, CHILDINFO) of each mailbox a LIST names (RFC 5258)."""
        regexes = [pattern_regex(reference + p) for p in patterns if p != ""]
        found = []
        names = self.names(select)
        if "RECURSIVEMATCH" in select and "SUBSCRIBED" in select:
            names = sorted(set(names) | set(self.names(set())), key=lambda n: (n != "INBOX", n))
        for name in names:
            if not any(r.fullmatch(name) for r in regexes):
                continue
            mailbox = self.by_name.get(name)
            if "SPECIAL-USE" in select and (mailbox is None or not mailbox.special_use):
                continue
            childinfo = self._childinfo(name, select)
            if "SUBSCRIBED" in select and name not in self.subscribed and not childinfo:
                continue
            found.append((name, self.attributes(name, mailbox, select | returns), childinfo))
        return found

    def _childinfo(self, name: str, select: set[str]) -> list[str]:
        """RFC 5258 §3.5: with RECURSIVEMATCH, say a parent is listed for a subscribed child."""
        if "RECURSIVEMATCH" not in select or "SUBSCRIBED" not in select:
            return []
        prefix = name + DELIMITER
        return ["SUBSCRIBED"] if any(n.startswith(prefix) for n in self.subscribed) else []

    def attributes(self, name: str, mailbox: Mailbox | None, wanted: set[str]) -> list[str]:
        attributes = []
        if mailbox is None:
            attributes.append("\\NonExistent" if name in self.subscribed else "\\Noselect")
        attributes.append("\\HasChildren" if self.has_children(name) else "\\HasNoChildren")
        if "SUBSCRIBED" in wanted and name in self.subscribed:
            attributes.append("\\Subscribed")
        if mailbox is not None and mailbox.special_use:
            attributes.append(mailbox.special_use)
        return attributes
