"""The delivery service: commit one accepted message for all its recipients.

Every way mail comes in (SMTP, LMTP, submission, the queue's local
recipients, imports) ends here, so quota, copies and the outbound queue are
decided once. The result is one outcome per envelope recipient, in the
service's own terms; each protocol maps them to its reply codes.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from postbote.log import event
from postbote import metrics
from postbote.mail.headers import scan_header
from postbote.store.cache import FeedCache
from postbote.store import (
    FLAG_NAMES,
    Delivered,
    DeliveryTarget,
    Flag,
    OutboundMessage,
    OutboundRecipient,
    Store,
    StoreError,
)
from postbote import sieve
from postbote.sieve import interpreter as si
from postbote.sieve.replies import reject_notice, vacation_reply

log = logging.getLogger("postbote.delivery")


def new_queue_id() -> str:
    """Sortable by time, unique by chance: 8 hex digits of seconds, 8 random."""
    return f"{int(time.time()):08X}{secrets.token_hex(4).upper()}"


@dataclass(frozen=True)
class Recipient:
    """One envelope recipient and what it resolved to at RCPT time."""

    address: str
    accounts: tuple[int, ...] = ()  # local accounts that get a copy
    remote: tuple[str, ...] = ()  # outside addresses: relayed or alias-forwarded
    notify: str | None = None
    orcpt: str | None = None


@dataclass(frozen=True)
class Envelope:
    sender: str  # "" for the null reverse-path
    recipients: tuple[Recipient, ...]
    queue_id: str
    envid: str | None = None
    ret: str | None = None
    smtputf8: bool = False
    body: str | None = None


@dataclass(frozen=True)
class Accepted:
    address: str


@dataclass(frozen=True)
class TempFailure:
    address: str
    reason: str
    quota: bool = False


@dataclass(frozen=True)
class PermFailure:
    address: str
    reason: str
    by_filter: bool = False  # refused by the recipient's own filter (a Sieve reject), not unknown


RecipientOutcome = Accepted | TempFailure | PermFailure


# A redirected copy carries this field once per redirect; past MAX_REDIRECT_HOPS of them the
# script's redirect is refused (and the message kept), which ends redirect loops between
# accounts that never pass through SMTP, where a Received count would not grow.
REDIRECT_MARK = b"X-Postbote-Sieve-Redirected"
MAX_REDIRECT_HOPS = 3
SCRIPT_CACHE_SIZE = 256
_KEYWORD_SPECIALS = set('(){%*"\\]')


@dataclass
class _SievePlan:
    """What one account's script decided: local copies, and the mail it sends."""

    targets: list[DeliveryTarget] = field(default_factory=list)
    redirects: list[str] = field(default_factory=list)
    replies: list[tuple[str, bytes]] = field(default_factory=list)  # (recipient, message)
    handled: bool = False  # discarded, rejected or redirected: accepted without a local copy
    # reject/ereject where the protocol can refuse this recipient alone: the reason for the
    # SMTP/LMTP reply, and the notice to send instead should the recipient be accepted after all.
    refusal: str | None = None
    refusal_notice: tuple[str, bytes] | None = None


class DeliveryService:
    def __init__(self, store: Store, hostname: str | None = None) -> None:
        self.store = store
        self.hostname = hostname or socket.gethostname()
        # Called after remote recipients were queued (the queue runner's poke),
        # so new outbound mail leaves at once instead of at the next poll.
        self.on_queued: Callable[[], None] | None = None
        self.sieve_limits = si.Limits()
        self._scripts: OrderedDict[str, sieve.Script | sieve.SieveError] = OrderedDict()
        # Each account's active script (or None): most deliveries then need no store read.
        self._active: FeedCache[int, tuple[str, str] | None] = FeedCache(
            "sieve", lambda change: change.account_id)

    def watch_scripts(self) -> None:
        """Keep active scripts in memory from now on (call on the event loop, at start)."""
        self._active.watch(self.store.changes)

    async def _active_script(self, account_id: int) -> tuple[str, str] | None:
        return await self._active.get(account_id, lambda: self.store.sieve_active(account_id))

    async def deliver(self, envelope: Envelope, source: bytes | Path, enforce_quota: bool = True,
                      mailbox: str = "INBOX", can_refuse: bool = False) -> list[RecipientOutcome]:
        """Durably store the message for every recipient, then say how each fared.

        SMTP checks quotas at RCPT and passes ``enforce_quota=False``: a message
        accepted there is not refused after its data arrived, it may take the
        mailbox past its quota, and the next one is refused at RCPT.
        ``can_refuse``: the caller can answer each recipient on its own (LMTP, or
        SMTP with one recipient), so a Sieve reject refuses in the protocol instead
        of mailing a notice to a sender address that may be forged (RFC 5429 §2.1).
        """
        account_ids = list(dict.fromkeys(a for r in envelope.recipients for a in r.accounts))
        outbound = self._outbound(envelope)
        started = time.monotonic()
        try:
            plans = await self._plans(envelope, source, account_ids, mailbox, enforce_quota, can_refuse)
            targets = [t for a in account_ids for t in plans[a].targets]
            redirects = list(dict.fromkeys(x for a in account_ids for x in plans[a].redirects))
            if redirects:  # first: if this fails, nothing is stored and a retry starts clean
                await self._queue_redirects(envelope, source, redirects)
            outcomes = await self.store.deliver(source, targets, outbound) \
                if targets or outbound is not None else []
        except StoreError as exc:
            event(log, "delivery failed", logging.WARNING, queue_id=envelope.queue_id, error=str(exc))
            return [TempFailure(r.address, str(exc)) for r in envelope.recipients]
        by_account: dict[int, list] = {a: [] for a in account_ids}
        for target, outcome in zip(targets, outcomes):
            by_account[target.account_id].append(outcome)
        handled = {a for a in account_ids if plans[a].handled}
        refused = {a: p.refusal for a, p in plans.items() if p.refusal is not None}
        results = [self._outcome(r, by_account, handled, refused) for r in envelope.recipients]
        for a in _refusals_not_given(envelope.recipients, results, refused):
            notice = plans[a].refusal_notice
            if notice is not None:  # accepted after all (another copy was stored): tell by mail
                plans[a].replies.append(notice)
        for a in account_ids:
            for to, message in plans[a].replies:
                try:
                    await self._send_generated(envelope.queue_id, to, message)
                except Exception:  # the message itself is safe; a lost reply is only logged
                    log.exception("sieve reply failed", extra={"fields": {
                        "queue_id": envelope.queue_id, "to": to}})
        event(log, "delivered", queue_id=envelope.queue_id, sender=envelope.sender,
              local=sum(isinstance(o, Delivered) for o in outcomes),
              queued=len(outbound.recipients) if outbound else 0,
              failed=sum(not isinstance(r, Accepted) for r in results),
              ms=round((time.monotonic() - started) * 1000, 1))
        metrics.record_delivery(time.monotonic() - started, sum(isinstance(o, Delivered) for o in outcomes),
                                len(outbound.recipients) if outbound else 0)
        if (outbound is not None or redirects) and self.on_queued is not None:
            self.on_queued()
        return results

    @staticmethod
    def _outbound(envelope: Envelope) -> OutboundMessage | None:
        remote = {}
        for r in envelope.recipients:
            for address in r.remote:
                remote.setdefault(address, OutboundRecipient(address, r.notify, r.orcpt))
        if not remote:
            return None
        return OutboundMessage(envelope.queue_id, envelope.sender, tuple(remote.values()), envelope.envid,
                               envelope.ret, envelope.smtputf8, envelope.body)

    @staticmethod
    def _outcome(r: Recipient, by_account: dict, handled: frozenset[int] | set[int] = frozenset(),
                 refused: dict[int, str] | None = None) -> RecipientOutcome:
        """A recipient is accepted when any copy of it is stored or queued, or when its
        Sieve script discarded, rejected or redirected it: an alias that reaches several
        mailboxes must not be retried (and so duplicated) because one of them is full.
        It is refused when every account it reaches refused it with a Sieve reject."""
        if refused and r.accounts and not r.remote and all(a in refused for a in r.accounts):
            return PermFailure(r.address, refused[r.accounts[0]], by_filter=True)
        if r.remote or any(a in handled for a in r.accounts):
            return Accepted(r.address)
        mine = [o for a in r.accounts for o in by_account.get(a, [])]
        if any(isinstance(o, Delivered) for o in mine):
            return Accepted(r.address)
        if any(getattr(o, "quota", False) for o in mine):
            return TempFailure(r.address, "mailbox full", quota=True)
        if not mine:
            return PermFailure(r.address, "no mailbox for this recipient")
        return TempFailure(r.address, mine[0].reason)

    # -- Sieve (RFC 5228) -------------------------------------------------------------------

    async def _plans(self, envelope: Envelope, source: bytes | Path, account_ids: list[int],
                     mailbox: str, enforce_quota: bool, can_refuse: bool = False) -> dict[int, _SievePlan]:
        """Each account's copies: the default one, or what its active script decides."""
        plans: dict[int, _SievePlan] = {}
        raw: bytes | None = None
        for a in account_ids:
            default = _SievePlan([DeliveryTarget(a, mailbox, enforce_quota=enforce_quota)])
            active = await self._active_script(a)
            if active is None:
                plans[a] = default
                continue
            if raw is None:
                raw = source if isinstance(source, bytes) else await asyncio.to_thread(source.read_bytes)
            try:
                plans[a] = await self._run_script(envelope, raw, a, active, mailbox, enforce_quota, can_refuse)
            except Exception:  # RFC 5228 §2.10.6: whatever goes wrong, the message is kept
                log.exception("sieve failed", extra={"fields": {"queue_id": envelope.queue_id,
                                                                "account": a}})
                plans[a] = default
        return plans

    def _script(self, text: str) -> sieve.Script | sieve.SieveError:
        """Parsed scripts by text, least recently used dropped first."""
        cached = self._scripts.get(text)
        if cached is not None:
            self._scripts.move_to_end(text)
            return cached
        try:
            parsed: sieve.Script | sieve.SieveError = sieve.parse(text)
        except sieve.SieveError as err:
            parsed = err
        self._scripts[text] = parsed
        if len(self._scripts) > SCRIPT_CACHE_SIZE:
            self._scripts.popitem(last=False)
        return parsed

    async def _run_script(self, envelope: Envelope, raw: bytes, account_id: int,
                          active: tuple[str, str], mailbox: str, enforce_quota: bool,
                          can_refuse: bool = False) -> _SievePlan:
        name, text = active
        script = self._script(text)
        if isinstance(script, sieve.SieveError):
            event(log, "sieve script invalid, implicit keep", logging.WARNING,
                  queue_id=envelope.queue_id, account=account_id, script=name, error=str(script))
            return _SievePlan([DeliveryTarget(account_id, mailbox, enforce_quota=enforce_quota)])
        message = await self._sieve_message(envelope, raw, account_id, script)
        # Tests such as body :matches cost time in proportion to the message: not on the loop.
        outcome = await asyncio.to_thread(si.run, script, message, self.sieve_limits)
        if outcome.error is None and any(isinstance(x, si.Redirect) for x in outcome.actions) \
                and raw.count(REDIRECT_MARK + b":") >= MAX_REDIRECT_HOPS:
            outcome = si.Outcome([si.Keep()], f"message already redirected {MAX_REDIRECT_HOPS}"
                                              " times, redirect refused")
        if outcome.error is not None:
            event(log, "sieve runtime error", logging.WARNING, queue_id=envelope.queue_id,
                  account=account_id, script=name, error=outcome.error)
        event(log, "sieve", queue_id=envelope.queue_id, account=account_id, script=name,
              actions=" ".join(type(x).__name__.lower() for x in outcome.actions))
        return await self._apply(envelope, raw, account_id, outcome.actions, mailbox,
                                 enforce_quota, message.rcpt_to, can_refuse)

    async def _sieve_message(self, envelope: Envelope, raw: bytes, account_id: int,
                             script: sieve.Script) -> si.Message:
        fields, _ = scan_header(raw, 0, len(raw))
        account = await self.store.get_account_by_id(account_id)
        address = account.address if account else ""
        rcpt = next((r.orcpt_address or r.address for r in _with_orcpt(envelope.recipients)
                     if account_id in r.accounts), address)
        mine: tuple[str, ...] = (address,)
        if "vacation" in script.requires and account is not None:
            domain = address.rpartition("@")[2]
            aliases = await self.store.list_aliases(domain)
            mine += tuple(al.source for al in aliases if al.target.lower() == address.lower()
                          and not al.source.startswith("@"))
        mailboxes: frozenset[str] = frozenset()
        if "mailbox" in script.requires:
            mailboxes = frozenset(m.name for m in await self.store.list_mailboxes(account_id))
        return si.Message(fields, len(raw), envelope.sender, rcpt, raw, mine, mailboxes)

    async def _apply(self, envelope: Envelope, raw: bytes, account_id: int,
                     actions: list[si.Action], mailbox: str, enforce_quota: bool,
                     rcpt: str, can_refuse: bool = False) -> _SievePlan:
        """Turn actions into copies and messages to send (RFC 5228 §4, the extensions)."""
        plan = _SievePlan()
        for action in actions:
            if isinstance(action, si.Keep):
                plan.targets.append(_target(account_id, mailbox, action.flags, enforce_quota))
            elif isinstance(action, si.FileInto):
                box = await self._mailbox_for(envelope, account_id, action, mailbox)
                plan.targets.append(_target(account_id, box, action.flags, enforce_quota))
            elif isinstance(action, si.Redirect):
                plan.redirects.append(action.address)
            elif isinstance(action, si.Reject):
                notice = None
                if envelope.sender:  # never a refusal to the null sender (RFC 5429 §2.1)
                    notice = (envelope.sender, reject_notice(action.reason, _strip_trace(raw), envelope.sender,
                                                             rcpt, self.hostname, time.time()))
                if can_refuse:  # RFC 5429 §2.1: refuse in the protocol where it can be done
                    plan.refusal, plan.refusal_notice = _reply_text(action.reason), notice
                elif notice is not None:
                    plan.replies.append(notice)
            elif isinstance(action, si.Vacation):
                await self._vacation(account_id, action, rcpt, plan)
        # several actions may name the same mailbox (keep and fileinto "INBOX"): one copy each
        unique: dict[str, DeliveryTarget] = {}
        for t in plan.targets:
            unique.setdefault(t.mailbox, t)
        plan.targets = list(unique.values())
        plan.handled = not plan.targets
        return plan

    async def _mailbox_for(self, envelope: Envelope, account_id: int, action: si.FileInto,
                           default: str) -> str:
        """The mailbox fileinto names; a missing one is created with :create (RFC 5490 §3.2),
        otherwise the copy goes to the default mailbox, and the log says why."""
        name = "INBOX" if action.mailbox.upper() == "INBOX" else action.mailbox
        if await self.store.get_mailbox(account_id, name) is not None:
            return name
        if action.create:
            try:
                await self.store.create_mailbox(account_id, name)
                return name
            except StoreError as exc:
                if await self.store.get_mailbox(account_id, name) is not None:
                    return name
                reason = str(exc)
        else:
            reason = "no such mailbox"
        event(log, "sieve fileinto fell back to keep", logging.WARNING,
              queue_id=envelope.queue_id, account=account_id, mailbox=name, reason=reason)
        return default

    async def _vacation(self, account_id: int, action: si.Vacation, rcpt: str,
                        plan: _SievePlan) -> None:
        """RFC 5230 §4.2: one reply per sender and handle within :days."""
        now = int(time.time())
        key = f"{action.recipient.lower()}\n{action.handle}"
        if not await self.store.sieve_vacation_check(account_id, key, now, now + action.days * 86400):
            return
        plan.replies.append((action.recipient, vacation_reply(action, rcpt, self.hostname, now)))

    async def _queue_redirects(self, envelope: Envelope, source: bytes | Path,
                               addresses: list[str]) -> None:
        """RFC 5228 §4.2: the message goes on unchanged with its original envelope sender; it
        gets our mark so that a loop of redirects ends (see MAX_REDIRECT_HOPS)."""
        raw = source if isinstance(source, bytes) else await asyncio.to_thread(source.read_bytes)
        marked = _insert_field(raw, REDIRECT_MARK + b": " + self.hostname.encode() + b"\r\n")
        outbound = OutboundMessage(new_queue_id(), envelope.sender,
                                   tuple(OutboundRecipient(a) for a in addresses),
                                   smtputf8=envelope.smtputf8, body=envelope.body)
        await self.store.deliver(marked, [], outbound)
        event(log, "sieve redirect", queue_id=envelope.queue_id, redirect_queue_id=outbound.queue_id,
              to=",".join(addresses))

    async def _send_generated(self, queue_id: str, to: str, message: bytes) -> None:
        """Send a reply Sieve made (vacation, reject) from the null sender, so that it can
        never cause another bounce or auto-reply loop (RFC 3834 §3.3, RFC 5321 §4.5.5)."""
        from postbote.delivery.recipients import NotLocal, Resolved, resolve

        found = await resolve(self.store, to)
        if isinstance(found, Resolved):
            rcpt = Recipient(to, tuple(a.id for a in found.accounts), found.remote)
        elif isinstance(found, NotLocal):
            rcpt = Recipient(to, remote=(to,))
        else:
            event(log, "sieve reply dropped: unknown local recipient", queue_id=queue_id, to=to)
            return
        reply_id = new_queue_id()
        outcomes = await self.deliver(Envelope("", (rcpt,), reply_id),
                                      b"Return-Path: <>\r\n" + message, enforce_quota=False)
        event(log, "sieve reply", queue_id=queue_id, reply_queue_id=reply_id, to=to,
              ok=all(isinstance(o, Accepted) for o in outcomes))


@dataclass(frozen=True)
class _Rcpt:
    address: str
    orcpt_address: str | None
    accounts: tuple[int, ...]


def _with_orcpt(recipients: tuple[Recipient, ...]) -> list[_Rcpt]:
    """The recipient as the sender wrote it: ORCPT (RFC 3461 §4.2) when given as rfc822."""
    out = []
    for r in recipients:
        kind, _, value = (r.orcpt or "").partition(";")
        out.append(_Rcpt(r.address, value.strip() if kind.strip().lower() == "rfc822" and value
                         else None, r.accounts))
    return out


def _target(account_id: int, mailbox: str, names: frozenset[str], enforce_quota: bool) -> DeliveryTarget:
    """RFC 5232 §5: system flags become flag bits, anything else an IMAP keyword."""
    flags = Flag(0)
    keywords = set()
    for name in names:
        bit = FLAG_NAMES.get(name.lower())
        if bit is not None:
            flags |= bit
        elif not name.startswith("\\") and name.isascii() and name.isprintable() \
                and not (_KEYWORD_SPECIALS & set(name)):
            keywords.add(name)
    return DeliveryTarget(account_id, mailbox, flags, frozenset(keywords), enforce_quota=enforce_quota)


def _insert_field(raw: bytes, line: bytes) -> bytes:
    """Add a header field after our leading Return-Path line (which must stay first)."""
    if raw[:12].lower() == b"return-path:":
        end = raw.find(b"\n")
        if end >= 0:
            return raw[:end + 1] + line + raw[end + 1:]
    return line + raw


def _strip_trace(raw: bytes) -> bytes:
    if raw[:12].lower() == b"return-path:":
        end = raw.find(b"\n")
        return raw[end + 1:] if end >= 0 else b""
    return raw


def _reply_text(reason: str) -> str:
    """A Sieve reject reason as SMTP reply text: one line of printable ASCII, bounded."""
    text = " ".join(reason.split())
    text = "".join(c if " " <= c <= "~" else "?" for c in text)[:200]
    return text or "message refused by the recipient's filter"


def _refusals_not_given(recipients: tuple[Recipient, ...], results: list[RecipientOutcome],
                        refused: dict[int, str]) -> list[int]:
    """Accounts whose script rejected the message but whose recipient was accepted anyway
    (another account of an alias stored a copy): their refusal must go by mail."""
    given = {a for r, o in zip(recipients, results) if isinstance(o, PermFailure) for a in r.accounts}
    return [a for a in refused if a not in given]
