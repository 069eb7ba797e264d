"""Mailbox-level commands: the account's mailboxes as a whole, not the messages in them.

CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, NAMESPACE, STATUS (RFC 9051 §6.3), LIST with
LIST-EXTENDED and LIST-STATUS (RFC 5258, RFC 5819) and LSUB, QUOTA (RFC 9208) and METADATA
(RFC 5464), as the `MailboxCommands` mixin of `ImapSession`. `MailboxListing` holds LIST's
matching rules, which NOTIFY and SELECT use too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from postbote.imap import commands as c
from postbote.imap import encode
from postbote.imap.base import SessionBase, _bad, _no
from postbote.imap.encode import ResponseCode
from postbote.store import AlreadyExists, NotFound, QuotaExceeded, StoreError
from postbote.store.types import DELIMITER, Account, Mailbox

METADATA_MAXSIZE = 64 * 1024  # RFC 5464: octets of one value
METADATA_MAX_ENTRIES = 1000  # per account
SPECIAL_USES = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")


class MailboxCommands(SessionBase):
    """The `do_*` handlers of mailbox-level commands (see the module doc)."""

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
        await self._mailbox(cmd.mailbox)
        await self.store.subscribe(self._account().id, cmd.mailbox)

    async def do_unsubscribe(self, cmd: c.Unsubscribe) -> None:
        await self.store.unsubscribe(self._account().id, cmd.mailbox)

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
