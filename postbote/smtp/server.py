"""The SMTP, submission and LMTP servers: asyncio adapters around ``SmtpServerCore``.

One ``SmtpSession`` per connection reads bytes, feeds the core, and answers
each event by asking the services: recipients are resolved at RCPT (so
unknown users and relaying are refused before any data), the message is
streamed to a spool file in the data folder with bounded memory, and "250"
is written only after ``DeliveryService.deliver`` returned, when every copy
is durable. The listeners differ only in their ``Policy``.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from postbote.accounts.service import AuthOk
from postbote.delivery.recipients import NotLocal, Resolved, Unknown, resolve
from postbote.delivery.service import (
    Accepted,
    Envelope,
    PermFailure,
    Recipient,
    RecipientOutcome,
    TempFailure,
    new_queue_id,
)
from postbote.filters.pipeline import (
    Action,
    MessageContext,
    PipelineResult,
    insert_headers,
    rewrite_header,
    run_filters,
)
from postbote.listener import Connection, Listener
from postbote.log import event
from postbote import metrics
from postbote.mail.address import AddressError, parse_address
from postbote.smtp import replies as R
from postbote.smtp.events import (
    Answered,
    AuthCredentials,
    BdatChunk,
    BdatEnd,
    ConnectionClosed,
    DataChunk,
    DataEnd,
    DataStart,
    Event,
    Expn,
    Helo,
    Help,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    Rset,
    StartTls,
    Vrfy,
)
from postbote.smtp.protocol import SmtpConfig, SmtpServerCore
from postbote.smtp.replies import Reply
from postbote.tls import describe

if TYPE_CHECKING:
    from postbote.app import App

log = logging.getLogger("postbote.smtp")

READ_SIZE = 64 * 1024
# Messages up to this size stay in memory between DATA and the commit; larger
# ones spill into a spool file, so memory per session stays bounded.
SPOOL_MEMORY = 256 * 1024

RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied")
UNKNOWN_USER = Reply(550, "5.1.1", "No such user here")
MAILBOX_FULL = Reply(452, "4.2.2", "Mailbox full, try again later")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
SENDER_NOT_OWNED = Reply(553, "5.7.1", "Sender address not owned by the authenticated user")
AUTH_LOCKED = Reply(454, "4.7.0", "Too many authentication failures, try again later")
AUTHZID_REFUSED = Reply(535, "5.7.8", "Authorization identity must be the authentication identity")
TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors, closing connection")
TIMEOUT = Reply(421, "4.4.2", "Timeout, closing connection")
CANNOT_EXPN = Reply(252, "2.5.0", "Cannot EXPN, but will accept message and attempt delivery")


@dataclass(frozen=True)
class Policy:
    """What distinguishes the listeners of one SMTP server."""

    service: str  # "smtp", "submission", "submissions", "lmtp"
    submission: bool = False  # AUTH required, sender checked, remote recipients allowed
    lmtp: bool = False
    implicit_tls: bool = False


POLICIES = {
    "smtp": Policy("smtp"),
    "submission": Policy("submission", submission=True),
    "submissions": Policy("submissions", submission=True, implicit_tls=True),
    "lmtp": Policy("lmtp", lmtp=True),
}


def listeners(app: "App") -> list[Listener]:
    if app.shared_store:  # serve --workers: the parent cleaned it; others' files are in flight
        (app.settings.data_path / "spool").mkdir(parents=True, exist_ok=True)
    else:
        prepare_spool(app.settings.data_path / "spool")
    out = []
    for name, policy in POLICIES.items():
        addresses = getattr(app.settings.listen, name)

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection,
                          policy: Policy = policy) -> None:
            await SmtpSession(app, policy, reader, writer, conn).run()

        out.append(Listener(name, addresses, handler, app.connection_limits,
                            busy_reply=b"421 4.7.0 Too many connections, try again later\r\n",
                            ssl_context=app.ssl_context if policy.implicit_tls else None))
    return out


def prepare_spool(folder: Path) -> None:
    """Create the spool folder; files left in it by a crash never got a 250,
    so they are removed."""
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.iterdir():
        leftover.unlink(missing_ok=True)


@dataclass
class _Transaction:
    """One mail transaction. Its message is kept in memory up to
    ``SPOOL_MEMORY`` octets (most mail: no file to create, copy and remove)
    and spills into a spool file in the data folder beyond that."""

    queue_id: str
    sender: MailFrom
    recipients: list[Recipient] = field(default_factory=list)
    trace: bytes = b""  # our Return-Path and Received fields, once written
    started: bool = False  # DATA or a first BDAT began the message
    buffer: bytearray = field(default_factory=bytearray)
    spool_path: Path | None = None
    spool: IO[bytes] | None = None
    failed: bool = False  # the spool file could not be written


class SmtpSession:
    def __init__(self, app: "App", policy: Policy, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, conn: Connection) -> None:
        self.app = app
        self.settings = app.settings
        self.policy = policy
        self.reader = reader
        self.writer = writer
        self.conn = conn
        limits = app.settings.limits
        self.core = SmtpServerCore(SmtpConfig(
            hostname=app.settings.hostname,
            lmtp=policy.lmtp,
            max_line=max(limits.max_line_length, 512),
            max_message_size=limits.max_message_size,
            tls_available=app.ssl_context is not None and not policy.lmtp,
            tls_active=policy.implicit_tls,
            auth_mechanisms=() if policy.lmtp else ("PLAIN", "LOGIN"),
            auth_required=policy.submission,
            starttls=not policy.lmtp,
        ))
        self.account: AuthOk | None = None
        self.tx: _Transaction | None = None
        self.stop_requested = False
        self.idle = True
        self.messages = 0
        conn.on_stop = self._on_stop

    # -- the read loop ---------------------------------------------------------
    async def run(self) -> None:
        self.writer.write(self.core.greeting())
        try:
            while not self.core.closed:
                timeout = self.settings.limits.data_timeout if self.tx and self.tx.started else \
                    self.settings.limits.command_timeout
                self.idle = self.tx is None
                if self.stop_requested and self.idle:
                    self.writer.write(_raw(R.CLOSING))
                    break
                try:
                    async with asyncio.timeout(timeout):  # no extra task per read, unlike wait_for
                        data = await self.reader.read(READ_SIZE)
                except TimeoutError:
                    self.writer.write(_raw(TIMEOUT))
                    break
                if not data and self.stop_requested:
                    self.writer.write(_raw(R.CLOSING))  # woken by _on_stop
                    break
                self.idle = False
                self.core.receive(data)
                await self._handle_events()
                if self.core.error_count >= self.settings.limits.max_errors and not self.core.closed:
                    event(log, "too many errors", session=self.conn.id, ip=self.conn.peer_ip)
                    self.writer.write(_raw(TOO_MANY_ERRORS))
                    break
                await self.writer.drain()
            await self.writer.drain()
        finally:
            self._discard_spool()
            event(log, "smtp session end", session=self.conn.id, service=self.policy.service,
                  messages=self.messages, user=self.account.account.address if self.account else None)

    def _on_stop(self) -> None:
        self.stop_requested = True
        if self.idle:
            # Wake the read with end-of-file; the loop then says 421 and leaves.
            self.reader.feed_eof()

    async def _handle_events(self) -> None:
        """Answer what one read brought; the replies go out together, in one write,
        before the next read (RFC 2920 §3.1: a pipelining client waits for them)."""
        replies = bytearray()
        for ev in self.core.events():
            if isinstance(ev, Answered):
                replies += ev.data
            elif isinstance(ev, (DataChunk, BdatChunk)):
                self._spool_write(ev.data)
            elif isinstance(ev, ConnectionClosed):
                self._discard_spool()
            else:
                reply = await self._answer(ev)
                replies += self.core.send(reply)
                if isinstance(ev, StartTls) and reply.code == 220:
                    self.writer.write(bytes(replies))  # the 220 must precede the handshake
                    replies.clear()
                    await self._start_tls()
        if replies:
            self.writer.write(bytes(replies))

    async def _answer(self, ev: Event) -> Reply | list[Reply]:
        match ev:
            case Helo():
                self._end_transaction()
                return Reply(250, None, f"Hello {ev.name}")
            case MailFrom():
                return await self._mail(ev)
            case RcptTo():
                return await self._rcpt(ev)
            case DataStart():
                return self._data_start()
            case DataEnd(size=_, oversized=oversized, bare_newline=bare):
                return await self._data_end(oversized, bare)
            case BdatEnd():
                return await self._bdat_end(ev)
            case Rset():
                self._end_transaction()
                return R.OK
            case Noop():
                return R.OK
            case Quit():
                return R.BYE
            case StartTls():
                return R.READY_TLS if self.app.ssl_context else R.TLS_UNAVAILABLE
            case AuthCredentials():
                return await self._auth(ev)
            case Vrfy():
                return R.CANNOT_VRFY
            case Expn():
                return CANNOT_EXPN
            case Help():
                return R.HELP
        return R.TEMPORARY_FAILURE

    async def _start_tls(self) -> None:
        await self.writer.drain()
        assert self.app.ssl_context is not None
        await self.writer.start_tls(self.app.ssl_context)
        self.core.tls_established()
        self._end_transaction()  # RFC 3207 §4.2: the session starts over
        event(log, "starttls", session=self.conn.id, tls=describe(self.writer.get_extra_info("ssl_object")))

    # -- commands --------------------------------------------------------------
    async def _auth(self, ev: AuthCredentials) -> Reply:
        if ev.authzid and ev.authzid.lower() != ev.authcid.lower():
            return AUTHZID_REFUSED
        result = await self.app.accounts.authenticate(ev.authcid, ev.password, self.conn.peer_ip)
        if isinstance(result, AuthOk):
            self.account = result
            self.core.auth_succeeded(result.account.address)
            event(log, "auth ok", session=self.conn.id, user=result.account.address, mechanism=ev.mechanism)
            return R.AUTH_SUCCEEDED
        return AUTH_LOCKED if result.locked else R.AUTH_FAILED

    async def _mail(self, ev: MailFrom) -> Reply:
        limit = self.settings.limits.max_message_size
        if ev.params.size is not None and ev.params.size > limit:
            return R.SIZE_EXCEEDED
        if self.account is not None and self.policy.submission:
            # RFC 6409 §6.1: the submission server may check the sender is the user's.
            allowed = await self.app.accounts.sender_addresses(self.account.account)
            try:
                sender = str(parse_address(ev.address)) if ev.address else ""
            except AddressError:
                return R.BAD_SENDER
            if sender not in allowed:
                return SENDER_NOT_OWNED
        self.tx = _Transaction(new_queue_id(), ev)
        return R.SENDER_OK

    async def _rcpt(self, ev: RcptTo) -> Reply:
        assert self.tx is not None
        if len(self.tx.recipients) >= self.settings.limits.max_recipients:
            return TOO_MANY_RECIPIENTS
        address = ev.address if ev.domain else f"postmaster@{self.settings.hostname}"
        resolved = await resolve(self.app.store, address)
        notify = ",".join(ev.params.notify) if ev.params.notify else None
        orcpt = f"{ev.params.orcpt_type};{ev.params.orcpt}" if ev.params.orcpt else None
        if isinstance(resolved, Unknown):
            event(log, "rcpt refused: unknown", session=self.conn.id, queue_id=self.tx.queue_id, rcpt=address)
            metrics.MESSAGES_REFUSED.labels("unknown_recipient").inc()
            return UNKNOWN_USER
        if isinstance(resolved, NotLocal):
            if self.account is None:
                event(log, "rcpt refused: relay", session=self.conn.id, queue_id=self.tx.queue_id, rcpt=address,
                      ip=self.conn.peer_ip)
                metrics.MESSAGES_REFUSED.labels("relay_denied").inc()
                return RELAY_DENIED
            self.tx.recipients.append(Recipient(resolved.address, remote=(resolved.address,), notify=notify,
                                                orcpt=orcpt))
            return R.RECIPIENT_OK
        assert isinstance(resolved, Resolved)
        if resolved.accounts and not resolved.remote and all(
                a.quota and a.used >= a.quota for a in resolved.accounts):
            return MAILBOX_FULL
        self.tx.recipients.append(Recipient(str(parse_address(address)), tuple(a.id for a in resolved.accounts),
                                            resolved.remote, notify, orcpt))
        return R.RECIPIENT_OK

    # -- message data ----------------------------------------------------------
    def _begin_message(self, tx: _Transaction) -> None:
        """Our trace fields go first, once, when the recipients are known."""
        if not tx.started:
            tx.started = True
            tx.trace = self._trace_headers()

    def _data_start(self) -> Reply:
        if self.tx is None:
            return R.TEMPORARY_FAILURE
        self._begin_message(self.tx)
        return R.START_DATA

    def _spool_write(self, data: bytes) -> None:
        tx = self.tx
        if tx is None or tx.failed:
            return  # nothing to keep: the end of data answers a temporary failure
        self._begin_message(tx)  # BDAT has no DATA command: the first chunk begins it
        try:
            if tx.spool is None and len(tx.buffer) + len(data) <= SPOOL_MEMORY:
                tx.buffer += data
                return
            if tx.spool is None:
                self._spill(tx)
            assert tx.spool is not None
            tx.spool.write(data)
        except OSError as exc:
            event(log, "spool write failed", logging.ERROR, session=self.conn.id, error=str(exc))
            self._discard_spool(tx)
            tx.failed = True

    def _spill(self, tx: _Transaction) -> None:
        """A large message moves from memory to a spool file (a blocking open, on
        the loop; only messages past SPOOL_MEMORY pay it)."""
        tx.spool_path = self.settings.data_path / "spool" / f"{tx.queue_id}.{self.conn.id}"
        tx.spool = open(tx.spool_path, "wb")
        tx.spool.write(tx.trace)
        tx.spool.write(tx.buffer)
        tx.buffer = bytearray()

    async def _bdat_end(self, ev: BdatEnd) -> Reply | list[Reply]:
        if self.tx is not None:
            self._begin_message(self.tx)  # BDAT 0 LAST: a message with no octets
        if not ev.last:
            return R.CHUNK_OK
        return await self._data_end(ev.oversized, ev.bare_newline)

    async def _data_end(self, oversized: bool, bare_newline: bool) -> Reply | list[Reply]:
        tx, self.tx = self.tx, None
        if tx is None:
            return R.TEMPORARY_FAILURE
        try:
            if oversized:
                return R.SIZE_EXCEEDED
            if bare_newline:
                # Bare CR or LF could be read as a line end by the next hop and so
                # smuggle a second message; CRLF only (RFC 5321 §2.3.8).
                return R.BARE_NEWLINE
            if tx.failed or not tx.started:
                return R.TEMPORARY_FAILURE
            if tx.spool is not None:
                tx.spool.close()
                tx.spool = None
            try:
                verdict, source = await self._filter(tx)
            except Exception:  # a filter's bug must not lose the session or the message
                log.exception("filter failed", extra={"fields": {"session": self.conn.id, "queue_id": tx.queue_id}})
                return R.TEMPORARY_FAILURE
            metrics.FILTER_VERDICTS.labels(verdict.action.value).inc()
            if verdict.refusal is not None:
                r = verdict.refusal
                metrics.MESSAGES_REFUSED.labels("filter").inc()
                event(log, "message refused by filter", session=self.conn.id, queue_id=tx.queue_id,
                      code=r.code, reason=r.text)
                return Reply(r.code, r.status, r.text)
            mailbox = "Junk" if verdict.action is Action.JUNK else "INBOX"
            # LMTP answers each recipient, and SMTP can refuse a message of one recipient:
            # then a Sieve reject becomes the reply, not a mailed notice (RFC 5429 §2.1).
            can_refuse = self.policy.lmtp or len(tx.recipients) == 1
            outcomes = await self.app.delivery.deliver(self._envelope(tx), source, enforce_quota=False,
                                                       mailbox=mailbox, can_refuse=can_refuse)
        finally:
            self._discard_spool(tx)
        if any(isinstance(o, Accepted) for o in outcomes):
            await verdict.delivered()
        self.messages += sum(isinstance(o, Accepted) for o in outcomes)
        event(log, "message", session=self.conn.id, queue_id=tx.queue_id, sender=tx.sender.address,
              rcpts=len(tx.recipients), accepted=sum(isinstance(o, Accepted) for o in outcomes))
        metrics.MESSAGES_RECEIVED.labels(self.conn.service).inc()
        if self.policy.lmtp:
            return [_outcome_reply(o, tx.queue_id) for o in outcomes]
        return _combined_reply(outcomes, tx.queue_id)

    def _envelope(self, tx: _Transaction) -> Envelope:
        params = tx.sender.params
        sender = tx.sender.address
        if sender:
            try:
                sender = str(parse_address(sender))
            except AddressError:
                pass
        return Envelope(sender, tuple(tx.recipients), tx.queue_id, params.envid, params.ret,
                        params.smtputf8, params.body)

    async def _filter(self, tx: _Transaction) -> tuple[PipelineResult, bytes | Path]:
        """Run the filter pipeline; returns its verdict and the final message
        (bytes, or the spool file with the filters' fields written in)."""
        in_memory = tx.spool_path is None
        ctx = MessageContext(
            queue_id=tx.queue_id, service=self.policy.service, peer_ip=self.conn.peer_ip,
            helo=self.core.helo.name if self.core.helo else "", sender=tx.sender.address,
            recipients=tuple(r.address for r in tx.recipients), spool_path=tx.spool_path,
            forwarded=tuple(a for r in tx.recipients for a in r.remote if a != r.address),
            recipient_accounts=tuple(r.accounts for r in tx.recipients),
            authenticated_user=self.account.account.address if self.account else None,
            tls=describe(self.writer.get_extra_info("ssl_object")), trace_length=len(tx.trace),
            message=bytes(tx.buffer) if in_memory else None)
        verdict = await run_filters(self.app.filters, ctx)
        if verdict.refusal is not None:
            return verdict, b""
        if in_memory:
            assert ctx.message is not None
            return verdict, tx.trace + rewrite_header(ctx.message, verdict.prepended, verdict.removed)
        assert tx.spool_path is not None
        if verdict.prepended or verdict.removed:
            await asyncio.get_running_loop().run_in_executor(
                self.app.executor, insert_headers, tx.spool_path, len(tx.trace), verdict.prepended,
                verdict.removed)
        return verdict, tx.spool_path

    def _trace_headers(self) -> bytes:
        """Return-Path (RFC 5321 §4.4, added at final delivery) and Received."""
        assert self.tx is not None
        helo = self.core.helo
        tls = describe(self.writer.get_extra_info("ssl_object"))
        protocol = "LMTP" if self.policy.lmtp else "ESMTP" if helo and helo.extended else "SMTP"
        if not self.policy.lmtp:
            # RFC 3848: ESMTPS (TLS), ESMTPA (AUTH), ESMTPSA (both).
            protocol += ("S" if tls else "") + ("A" if self.account else "")
        sender = self.tx.sender.address
        recipients = self.tx.recipients
        lines = [
            f"from {helo.name if helo else 'unknown'} ([{self.conn.peer_ip}])",
            f"by {self.settings.hostname} (postbote) with {protocol} id {self.tx.queue_id}",
        ]
        if tls:
            version, _, cipher = tls.partition(" ")
            lines.append(f"(using {version} with cipher {cipher})")
        if len(recipients) == 1:
            lines.append(f"for <{recipients[0].address}>")
        received = "Received: " + "\r\n\t".join(lines) + f";\r\n\t{email.utils.formatdate(localtime=True)}\r\n"
        return f"Return-Path: <{sender}>\r\n{received}".encode("utf-8", "replace")

    def _end_transaction(self) -> None:
        self._discard_spool()
        self.tx = None

    def _discard_spool(self, tx: _Transaction | None = None) -> None:
        tx = tx or self.tx
        if tx is None:
            return
        if tx.spool is not None:
            tx.spool.close()
            tx.spool = None
        if tx.spool_path is not None:
            tx.spool_path.unlink(missing_ok=True)
            tx.spool_path = None


def _raw(reply: Reply) -> bytes:
    return R.format_reply(reply)


def _outcome_reply(outcome: RecipientOutcome, queue_id: str) -> Reply:
    if isinstance(outcome, Accepted):
        return Reply(250, "2.0.0", f"OK queued as {queue_id}")
    if isinstance(outcome, TempFailure):
        return MAILBOX_FULL if outcome.quota else R.TEMPORARY_FAILURE
    assert isinstance(outcome, PermFailure)
    return Reply(550, "5.7.1" if outcome.by_filter else "5.1.1", outcome.reason)  # RFC 3463


def _combined_reply(outcomes: list[RecipientOutcome], queue_id: str) -> Reply:
    """SMTP has one reply for all recipients. Quota was checked at RCPT and the
    store commits all copies in one transaction, so a mix is rare; if it
    happens, the copies that were stored stand and the reply says so."""
    if all(isinstance(o, Accepted) for o in outcomes):
        return Reply(250, "2.0.0", f"OK queued as {queue_id}")
    if any(isinstance(o, Accepted) for o in outcomes):
        for o in outcomes:
            if not isinstance(o, Accepted):
                event(log, "recipient failed after acceptance", logging.WARNING, queue_id=queue_id,
                      rcpt=o.address, reason=o.reason)
        return Reply(250, "2.0.0", f"OK queued as {queue_id} (some recipients failed)")
    first = outcomes[0]
    return _outcome_reply(first, queue_id)

