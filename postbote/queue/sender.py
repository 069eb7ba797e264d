"""The asyncio driver of ``SmtpClientCore``: one connection to one host, several messages.

``Session.open`` connects, reads the greeting, says EHLO, starts TLS as the
host's ``TlsPolicy`` asks (and checks DANE or PKIX), authenticates to a
smarthost; ``Session.send`` runs one transaction, pipelined when the server
offers PIPELINING, and returns each recipient's result. Anything that makes
the host unusable raises ``HostFailure``; the runner then tries the next one.
Timeouts follow RFC 5321 §4.5.3.2.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from postbote.queue.dane import Tlsa, matches
from postbote.smtp.client import Answer, Envelope, ProtocolError, ServerReply, SmtpClientCore
from postbote.store import QueuedEntry, RecipientResult

READ_SIZE = 64 * 1024
# RFC 5321 §4.5.3.2.2-3: DATA initiation 2 minutes, each data block 3 minutes.
DATA_START_TIMEOUT = 120
DATA_BLOCK_TIMEOUT = 180


class HostFailure(Exception):
    """This host cannot take mail now (refused, timed out, TLS required but failed …)."""

    def __init__(self, reason: str, permanent: bool = False, tls_failed: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.tls_failed = tls_failed


@dataclass(frozen=True)
class TlsPolicy:
    """How TLS is used with one host.

    ``opportunistic``: STARTTLS when offered, any certificate (RFC 7435);
    ``verify``: STARTTLS required, certificate valid for ``hostname`` (MTA-STS, smarthost);
    ``dane``: STARTTLS required, certificate matching ``tlsa`` (RFC 7672);
    ``encrypt``: STARTTLS required, not authenticated (DANE with only unusable records);
    ``implicit``: TLS from the first byte, verified (a smarthost on 465);
    ``none``: plain text.
    """

    mode: str = "opportunistic"
    hostname: str = ""
    tlsa: tuple[Tlsa, ...] = ()

    @property
    def required(self) -> bool:
        return self.mode in ("verify", "dane", "encrypt", "implicit")


@dataclass(frozen=True)
class Timeouts:
    connect: float = 30
    command: float = 300
    data_end: float = 600


@dataclass(frozen=True)
class SendResult:
    results: tuple[RecipientResult, ...]
    reply: str  # the reply that decided the message (the last one the server sent)


def client_context(verify: bool, ca_file: str = "") -> ssl.SSLContext:
    if verify:
        ctx = ssl.create_default_context()
        if ca_file:
            ctx.load_verify_locations(ca_file)
        return ctx
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Session:
    def __init__(self, core: SmtpClientCore, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 host: str, timeouts: Timeouts) -> None:
        self.core = core
        self.reader = reader
        self.writer = writer
        self.host = host
        self.timeouts = timeouts
        self.tls = False

    # -- connecting ---------------------------------------------------------------
    @classmethod
    async def open(cls, host: str, address: str, port: int, helo: str, policy: TlsPolicy,
                   timeouts: Timeouts, ca_file: str = "", auth: tuple[str, str] | None = None) -> "Session":
        implicit = policy.mode == "implicit"
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                address, port, ssl=client_context(True, ca_file) if implicit else None,
                server_hostname=(policy.hostname or host) if implicit else None), timeouts.connect)
        except (OSError, asyncio.TimeoutError) as exc:
            raise HostFailure(f"cannot connect to {host}[{address}]:{port}: {exc or 'timeout'}") from None
        session = cls(SmtpClientCore(helo), reader, writer, host, timeouts)
        session.tls = implicit
        try:
            await session._greet(policy, ca_file, auth)
        except BaseException:
            session.abort()
            raise
        return session

    async def _greet(self, policy: TlsPolicy, ca_file: str, auth: tuple[str, str] | None) -> None:
        [greeting] = await self._read(self.timeouts.command)
        if greeting.reply.code != 220:
            raise HostFailure(f"{self.host} greeted with {greeting.reply}", greeting.reply.permanent)
        await self._hello()
        if policy.mode not in ("none", "implicit"):
            if self.core.extensions.has("STARTTLS"):
                await self._starttls(policy, ca_file)
            elif policy.required:
                raise HostFailure(f"{self.host} does not offer STARTTLS, which its TLS policy ({policy.mode}) requires",
                                  tls_failed=True)
        if auth:
            [answer] = await self._exchange(self.core.auth_plain(*auth), self.timeouts.command)
            if answer.reply.code != 235:
                raise HostFailure(f"{self.host} refused authentication: {answer.reply}")

    async def _hello(self) -> None:
        [answer] = await self._exchange(self.core.ehlo(), self.timeouts.command)
        if answer.reply.code != 250:
            [answer] = await self._exchange(self.core.helo(), self.timeouts.command)
            if answer.reply.code != 250:
                raise HostFailure(f"{self.host} refused HELO: {answer.reply}", answer.reply.permanent)

    async def _starttls(self, policy: TlsPolicy, ca_file: str) -> None:
        try:
            [answer] = await self._exchange(self.core.starttls(), self.timeouts.command)
        except HostFailure as exc:
            raise HostFailure(exc.reason, tls_failed=True) from None
        if answer.reply.code != 220:
            if policy.required:
                raise HostFailure(f"{self.host} refused STARTTLS: {answer.reply}", tls_failed=True)
            return
        ctx = client_context(policy.mode == "verify", ca_file)
        try:
            await asyncio.wait_for(self.writer.start_tls(ctx, server_hostname=policy.hostname or self.host),
                                   self.timeouts.command)
        except (ssl.SSLError, OSError, asyncio.TimeoutError) as exc:
            raise HostFailure(f"TLS with {self.host} failed: {exc}", tls_failed=True) from None
        if policy.mode == "dane":
            ssl_object = self.writer.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
            if not der or not matches(policy.tlsa, der):
                raise HostFailure(f"{self.host}: certificate matches no TLSA record (DANE)", tls_failed=True)
        self.tls = True
        self.core.tls_established()
        await self._hello()

    # -- one message ----------------------------------------------------------------
    async def send(self, entry: QueuedEntry, message: bytes) -> SendResult:
        rcpts = entry.pending
        refusal = self._cannot_send(entry, message)
        if refusal is not None:
            return SendResult(tuple(RecipientResult(r.address, "failed", refusal) for r in rcpts), refusal)
        env = Envelope(entry.sender, tuple(r.address for r in rcpts), len(message), entry.body, entry.smtputf8,
                       entry.envid, entry.ret, tuple(r.notify for r in rcpts), tuple(r.orcpt for r in rcpts))
        answers = await self._envelope(env)
        mail, rcpt_answers = answers[0], answers[1:]
        if not mail.reply.positive:
            await self._reset()
            return SendResult(tuple(_result(a, mail.reply) for a in env.recipients), str(mail.reply))
        accepted = [a for a, ans in zip(env.recipients, rcpt_answers) if ans.reply.positive]
        results = {a: _result(a, ans.reply) for a, ans in zip(env.recipients, rcpt_answers)
                   if not ans.reply.positive}
        if not accepted:
            await self._reset()
            return SendResult(tuple(results[a] for a in env.recipients), str(rcpt_answers[-1].reply))
        final = await self._data(message, entry.body)
        for a in accepted:
            results[a] = _result(a, final)
        return SendResult(tuple(results[a] for a in env.recipients), str(final))

    def _cannot_send(self, entry: QueuedEntry, message: bytes) -> str | None:
        """What RFC 6531/6152/1870 forbid sending to this server as is: a permanent failure."""
        ext = self.core.extensions
        if entry.smtputf8 and not ext.has("SMTPUTF8"):
            return "553 5.6.7 The message needs SMTPUTF8, which the receiving server does not support"
        body = (entry.body or "7BIT").upper()
        if body == "8BITMIME" and not ext.has("8BITMIME"):
            return "554 5.6.3 The message has 8-bit content, which the receiving server does not support"
        if body == "BINARYMIME" and not (ext.has("BINARYMIME") and ext.has("CHUNKING")):
            return "554 5.6.3 The message is binary, which the receiving server does not support"
        if ext.size and len(message) > ext.size:
            return f"552 5.3.4 The message is larger than the receiving server's limit ({ext.size} octets)"
        return None

    async def _envelope(self, env: Envelope) -> list[Answer]:
        if self.core.extensions.has("PIPELINING"):
            return await self._exchange(self.core.envelope(env), self.timeouts.command)
        answers = await self._exchange(self.core.mail(env), self.timeouts.command)
        if answers[0].reply.positive:
            for i in range(len(env.recipients)):
                answers += await self._exchange(self.core.rcpt(env, i), self.timeouts.command)
        else:
            answers += [answers[0]] * len(env.recipients)
        return answers

    async def _data(self, message: bytes, body: str | None) -> ServerReply:
        if self.core.extensions.has("CHUNKING"):
            answers = await self._exchange(self.core.bdat(message), self.timeouts.data_end)
            bad = next((a for a in answers if not a.reply.positive), None)
            return (bad or answers[-1]).reply
        [start] = await self._exchange(self.core.data(), min(self.timeouts.command, DATA_START_TIMEOUT))
        if start.reply.code != 354:
            return start.reply
        [end] = await self._exchange(self.core.data_body(message), self.timeouts.data_end)
        return end.reply

    async def _reset(self) -> None:
        [answer] = await self._exchange(self.core.rset(), self.timeouts.command)
        if not answer.reply.positive:
            raise HostFailure(f"{self.host} refused RSET: {answer.reply}")

    # -- closing ----------------------------------------------------------------------
    async def quit(self) -> None:
        try:
            await self._exchange(self.core.quit(), 10)
        except (HostFailure, OSError):
            pass
        self.abort()

    def abort(self) -> None:
        self.writer.close()

    # -- I/O ---------------------------------------------------------------------------
    async def _exchange(self, data: bytes, timeout: float) -> list[Answer]:
        self.writer.write(data)
        try:
            await asyncio.wait_for(self.writer.drain(), max(timeout, DATA_BLOCK_TIMEOUT))
        except (OSError, asyncio.TimeoutError) as exc:
            raise HostFailure(f"connection to {self.host} lost while sending: {exc or 'timeout'}") from None
        return await self._read(timeout)

    async def _read(self, timeout: float) -> list[Answer]:
        answers: list[Answer] = []
        while True:
            for ev in self.core.events():
                if isinstance(ev, ProtocolError):
                    raise HostFailure(f"{self.host}: {ev.detail}")
                answers.append(ev)
                if ev.reply.code == 421:
                    raise HostFailure(f"{self.host} closed the connection: {ev.reply}")
            if not self.core.awaiting:
                return answers
            try:
                data = await asyncio.wait_for(self.reader.read(READ_SIZE), timeout)
            except asyncio.TimeoutError:
                raise HostFailure(f"{self.host} did not answer within {timeout:g} s") from None
            except OSError as exc:
                raise HostFailure(f"connection to {self.host} lost: {exc}") from None
            if not data:
                raise HostFailure(f"{self.host} closed the connection")
            self.core.receive(data)


def _result(address: str, reply: ServerReply) -> RecipientResult:
    status = "sent" if reply.positive else "failed" if reply.permanent else "pending"
    return RecipientResult(address, status, str(reply))
