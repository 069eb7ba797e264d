"""One IMAP session's state machine over the store: the core every command goes through.

The grammar (`grammar.py`) has turned bytes into command values; the server (`server.py`)
owns the socket, TLS, compression and the IDLE wait. This module decides what is the
session's own: state rules (RFC 9051 §3), dispatch of each command to its `do_*` handler,
capabilities, ENABLE and login, and change announcements (after a command, during IDLE, and
what NOTIFY asks for, RFC 5465).

The command handlers are mixins that `ImapSession` inherits, one module per theme:
`mailboxes.py` (CREATE, DELETE, RENAME, SUBSCRIBE, LIST, LSUB, STATUS, NAMESPACE, QUOTA,
METADATA), `selecting.py` (SELECT, EXAMINE, CLOSE, UNSELECT), `messages.py` (FETCH, STORE,
COPY, MOVE, EXPUNGE, APPEND) and `searching.py` (SEARCH, SORT, THREAD). The state they share,
and `Answer`, which ends a command with NO or BAD, are in `base.py`.

Output goes through `Output.send`; a long answer calls `Output.flush` between batches, so
`FETCH 1:*` over 100,000 messages holds one batch at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from postbote.accounts.service import AuthFailed
from postbote.imap import commands as c
from postbote.imap import encode
from postbote.imap.base import Answer, Enabled, Output, SessionBase, SessionPolicy, State, _bad, _no
from postbote.imap.fetch import FetchPlan
from postbote.imap.grammar import ImapCommandParser
from postbote.imap.mailboxes import MailboxCommands, MailboxListing
from postbote.imap.messages import MessageCommands
from postbote.imap.notify import SUPPORTED_EVENTS, NotifyState, check
from postbote.imap.searching import SearchCommands
from postbote.imap.selected import RecentClaims, SelectedMailbox
from postbote.imap.selecting import SelectionCommands
from postbote.log import event
from postbote.store.changes import about_mail
from postbote.store import NotFound, Store, StoreError
from postbote.store.types import DELIMITER, Account, Change

if TYPE_CHECKING:
    from postbote.app import App
    from postbote.listener import Connection

log = logging.getLogger("postbote.imap")

NOTIFY_BACKLOG = 256  # changes kept during commands; beyond, NOTIFICATIONOVERFLOW
ENABLEABLE = ("IMAP4REV2", "UTF8=ACCEPT", "CONDSTORE", "QRESYNC")
_SORT_THREAD = ("SORT", "SORT=DISPLAY", "ESORT", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES")


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


class ImapSession(MailboxCommands, SelectionCommands, MessageCommands, SearchCommands, SessionBase):
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
        relevant = [ch for ch in changes if ch.mailbox_id in (sel.mailbox_id, 0) and about_mail(ch)]
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
            if not about_mail(change) and "subscription" not in change.kinds:
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
        batch, parsed = await self._load_batch(sel, uids, plan.needs_parse, plan.parse_keys)
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
