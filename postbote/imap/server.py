"""The IMAP server: ports 143 (STARTTLS) and 993 (implicit TLS) over the store.

This adapter owns what needs the outside world: the socket, TLS, COMPRESS=DEFLATE, timeouts,
the IDLE wait on the store's change feed, and the SASL exchange. The grammar turns bytes
into commands; `session.ImapSession` runs them against the store.

Decisions an operator may want to know:

- Plaintext login (LOGIN, AUTHENTICATE PLAIN) is refused before TLS unless the client
  connects from loopback (127.0.0.0/8, ::1), the same rule as POP3: LOGINDISABLED is
  advertised, and the command answers NO [PRIVACYREQUIRED].
- Bounds: a command line is at most 64 KiB, a literal at most `limits.max_message_size`
  (64 KiB before login), 50 commands before login, `limits.max_errors` BAD answers in a row;
  an unauthenticated client is logged out after `limits.command_timeout` seconds of silence,
  an authenticated one (IDLE included) after `limits.imap_idle_timeout` (RFC 9051 §5.4).
- At shutdown an idle or IDLE-ing session gets `* BYE` at once; a busy one after its command.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
import zlib
from typing import TYPE_CHECKING

from postbote.imap import commands as c
from postbote.imap import encode
from postbote.imap.grammar import (
    DEFAULT_MAX_LINE,
    AuthenticateResponse,
    ContinuationNeeded,
    IdleDone,
    ImapCommandParser,
    ParseError,
)
from postbote.imap.selected import RecentClaims
from postbote.imap.session import Answer, ImapSession, SessionPolicy, State
from postbote.listener import Connection, Listener
from postbote.log import event
from postbote.linesession import plaintext_allowed

if TYPE_CHECKING:
    from postbote.app import App

log = logging.getLogger("postbote.imap")

BUSY_REPLY = b"* BYE [UNAVAILABLE] too many connections\r\n"
CHUNK = 64 * 1024
FLUSH_AT = 256 * 1024  # queued output that makes a long answer wait for the client
MAX_INFLATED = 1 << 20  # COMPRESS: most octets one read may inflate to (no zip bombs)
PREAUTH_MAX_LITERAL = 64 * 1024
MAX_COMMANDS_BEFORE_LOGIN = 50
TLS_HANDSHAKE_TIMEOUT = 30
_SHUTDOWN = encode.bye("server shutting down, try again later", encode.UNAVAILABLE)


def listeners(app: App) -> list[Listener]:
    """One listener with STARTTLS on `listen.imap`, one with implicit TLS on `listen.imaps`."""
    service = ImapService(app)
    found = [Listener("imap", app.settings.listen.imap, service.handle, app.connection_limits, BUSY_REPLY)]
    if app.ssl_context is not None:  # never serve port 993 in clear
        found.append(Listener("imaps", app.settings.listen.imaps, service.handle,
                              app.connection_limits, BUSY_REPLY, ssl_context=app.ssl_context))
    return found


class ImapService:
    """The IMAP side of one App: the live connections, so shutdown can reach them."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.connections: set[ImapConnection] = set()
        self.recent_claims = RecentClaims()
        self.write_lane = asyncio.Semaphore(1)
        self._watcher: asyncio.Task[None] | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     conn: Connection) -> None:
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._stop_all())
        connection = ImapConnection(self.app, reader, writer, conn, self.recent_claims, self.write_lane)
        self.connections.add(connection)
        try:
            await connection.run()
        finally:
            self.connections.discard(connection)

    async def _stop_all(self) -> None:
        await self.app.stopping.wait()
        for connection in list(self.connections):
            connection.request_stop()


class _Closed(Exception):
    """The session ends; `line` is the last thing to say (a BYE), if anything."""

    def __init__(self, reason: str, line: bytes = b"") -> None:
        super().__init__(reason)
        self.reason, self.line = reason, line


class Stream:
    """The connection's bytes, inflated and deflated once COMPRESS=DEFLATE is on (RFC 4978)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self._inflate: zlib._Decompress | None = None
        self._deflate: zlib._Compress | None = None
        self._out: list[bytes] = []
        self._unflushed = False
        self.queued = 0

    def compress(self) -> None:
        self._inflate = zlib.decompressobj(-15)
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, -15)

    @property
    def compressed(self) -> bool:
        return self._inflate is not None

    def inflate(self, data: bytes) -> bytes:
        if self._inflate is None:
            return data
        try:
            return self._inflate.decompress(self._inflate.unconsumed_tail + data, MAX_INFLATED)
        except zlib.error:
            raise _Closed("bad compressed data") from None

    def pending_inflate(self) -> bool:
        return self._inflate is not None and bool(self._inflate.unconsumed_tail)

    async def read(self) -> bytes:
        """Plain bytes from the client; b"" at end of stream."""
        while True:
            if self.pending_inflate():
                out = self.inflate(b"")
                if out:
                    return out
            data = await self.reader.read(CHUNK)
            if not data:
                return b""
            out = self.inflate(data)
            if out:
                return out

    def send(self, data: bytes) -> None:
        if self._deflate is not None and data:
            self._unflushed = True
            data = self._deflate.compress(data)
        if data:
            self._out.append(data)
            self.queued += len(data)

    def write_now(self) -> None:
        """Hand everything queued to the transport (without waiting for the client)."""
        if self._deflate is not None and self._unflushed:
            # Only after real output: an empty sync block alone reads as an empty response to
            # some clients (mbsync).
            self._out.append(self._deflate.flush(zlib.Z_SYNC_FLUSH))
            self._unflushed = False
        if self._out:
            self.writer.write(b"".join(self._out))
            self._out.clear()
            self.queued = 0

    async def flush(self, timeout: float) -> None:
        self.write_now()
        if self.writer.transport.get_write_buffer_size() > 0:
            async with asyncio.timeout(timeout):
                await self.writer.drain()


class _Output:
    """What the session writes through: queued, sent in big writes, waiting when too much."""

    def __init__(self, stream: Stream, timeout: float) -> None:
        self.stream = stream
        self.timeout = timeout

    def send(self, data: bytes) -> None:
        self.stream.send(data)

    async def flush(self) -> None:
        if self.stream.queued >= FLUSH_AT or self.stream.writer.transport.get_write_buffer_size() > FLUSH_AT:
            await self.stream.flush(self.timeout)


class ImapConnection:
    """Drives one grammar parser and one session with an asyncio stream."""

    def __init__(self, app: App, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 conn: Connection, recent_claims: RecentClaims | None = None,
                 write_lane: asyncio.Semaphore | None = None) -> None:
        self.app = app
        self.conn = conn
        self.limits = app.settings.limits
        self.stream = Stream(reader, writer)
        self.parser = ImapCommandParser(max_line=max(DEFAULT_MAX_LINE, self.limits.max_line_length),
                                        max_literal=self.limits.max_message_size)
        policy = SessionPolicy(
            tls_active=conn.implicit_tls,
            tls_available=app.ssl_context is not None,
            plaintext_allowed=plaintext_allowed(conn.peer_ip),
            append_limit=self.limits.max_message_size,
        )
        self.session = ImapSession(app, conn, _Output(self.stream, self.limits.command_timeout), self.parser,
                                   policy, recent_claims, write_lane)
        self.errors = 0
        self.commands_before_login = 0
        self.idle_tag: str | None = None
        self.sasl_tag: str | None = None
        self._read_task: asyncio.Task[bytes] | None = None
        self._waiting = False
        self._stop = False
        self.end = "eof"
        conn.on_stop = self.request_stop

    # -- life ---------------------------------------------------------------------------------

    async def run(self) -> None:
        self.stream.send(encode.greeting(f"{self.app.settings.hostname} postbote IMAP ready",
                                         capabilities=self.session.capabilities()))
        try:
            await self._serve()
        except _Closed as closed:
            self.end = closed.reason
            if closed.line and not self.stream.writer.is_closing():
                self.stream.send(closed.line)
                try:
                    await self.stream.flush(5)
                except (OSError, TimeoutError):
                    pass
        finally:
            if self._read_task is not None and not self._read_task.done():
                self._read_task.cancel()
            self.session.close()
            self._log()

    def request_stop(self) -> None:
        """Shutdown: a session waiting for its client is told and closed now (its pending read
        then ends); a busy one stops after its current command."""
        self._stop = True
        if self._waiting and not self.stream.writer.is_closing():
            self.stream.send(_SHUTDOWN)
            self.stream.write_now()
            self.stream.writer.close()
            self.end = "shutdown"

    async def _serve(self) -> None:
        while True:
            while (ev := self.parser.next_event()) is not None:
                await self._dispatch(ev)
                if self.session.state is State.LOGOUT:
                    await self.stream.flush(self.limits.command_timeout)
                    self.end = "logout"
                    return
            if self._stop:
                raise _Closed("shutdown", _SHUTDOWN)
            await self.stream.flush(self.limits.command_timeout)
            while self.session.has_backlog and self.parser.between_commands:
                # RFC 5465 §3: what NOTIFY learnt during the last command, now that it is done
                await self.session.notifications()
                await self.stream.flush(self.limits.command_timeout)
            data = await self._next_input()
            if not data:
                return
            self.parser.receive(data)

    def _timeout(self) -> float:
        if self.session.state is State.NOT_AUTHENTICATED:
            return self.limits.command_timeout
        return self.limits.imap_idle_timeout

    async def _next_input(self) -> bytes:
        """The next bytes from the client; during IDLE or with NOTIFY on, changes are announced
        meanwhile."""
        if self.stream.pending_inflate():
            return await self.stream.read()
        if self.idle_tag is None and self._read_task is None and not self.session.notifying:
            return await self._read_plain()
        deadline = time.monotonic() + self._timeout()
        while True:
            if self._read_task is None:
                self._read_task = asyncio.ensure_future(self.stream.read())
            waiters: set[asyncio.Future] = {self._read_task}
            change = None
            sub = self.session.subscription
            # RFC 5465 §3: NOTIFY's responses may come at any time, but never inside a command,
            # not even one whose literal is still arriving
            watching = self.idle_tag is not None or self.session.notifying
            if watching and sub is not None and self.parser.between_commands:
                change = asyncio.ensure_future(sub.wait())
                waiters.add(change)
            self._waiting = True
            try:
                done, _ = await asyncio.wait(waiters, timeout=max(0.0, deadline - time.monotonic()),
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._waiting = False
                if change is not None and not change.done():
                    change.cancel()
            if self._read_task in done:
                task, self._read_task = self._read_task, None
                return task.result()
            if change is not None and change in done:
                await self.session.notifications(change.result(), idle=self.idle_tag is not None)
                await self.stream.flush(self.limits.command_timeout)
                continue
            raise _Closed("autologout", encode.bye("autologout: idle too long"))

    async def _read_plain(self) -> bytes:
        """A read outside IDLE: no task to make, just the timeout."""
        self._waiting = True
        try:
            async with asyncio.timeout(self._timeout()):
                return await self.stream.read()
        except TimeoutError:
            raise _Closed("autologout", encode.bye("autologout: idle too long")) from None
        finally:
            self._waiting = False

    # -- events -------------------------------------------------------------------------------

    async def _dispatch(self, ev: object) -> None:
        if isinstance(ev, ContinuationNeeded):
            self._literal(ev)
        elif isinstance(ev, ParseError):
            if ev.tag is not None and ev.tag in (self.idle_tag, self.sasl_tag):
                self.idle_tag = self.sasl_tag = None  # the parser left IDLE / SASL mode too
            code = encode.ResponseCode(ev.code) if ev.code else encode.CLIENTBUG
            self._bad(encode.bad(ev.tag, ev.text, code))
        elif isinstance(ev, IdleDone):
            self.idle_tag = None
            self._send(encode.ok(ev.tag, "IDLE terminated"))
        elif isinstance(ev, AuthenticateResponse):
            await self._sasl_response(ev)
        else:
            await self._command(ev)  # type: ignore[arg-type]

    def _send(self, data: bytes) -> None:
        self.stream.send(data)

    def _bad(self, line: bytes) -> None:
        self._send(line)
        self.errors += 1
        if self.errors >= self.limits.max_errors:
            raise _Closed("too many errors", encode.bye("too many errors, closing connection"))

    def _literal(self, ev: ContinuationNeeded) -> None:
        if self.session.state is State.NOT_AUTHENTICATED and ev.size > PREAUTH_MAX_LITERAL:
            self.parser.reject_literal()
            self._bad(encode.bad(ev.tag, "log in before sending large literals", encode.TOOBIG))
            return
        self.parser.accept_literal()
        self._send(encode.continuation("Ready"))

    async def _command(self, cmd: c.Command) -> None:
        if self.session.state is State.NOT_AUTHENTICATED:
            self.commands_before_login += 1
            if self.commands_before_login > MAX_COMMANDS_BEFORE_LOGIN:
                raise _Closed("too many commands before login", encode.bye("too many commands before login"))
        if isinstance(cmd, c.StartTls):
            await self._starttls(cmd)
        elif isinstance(cmd, c.Compress):
            await self._compress(cmd)
        elif isinstance(cmd, c.Authenticate):
            await self._authenticate(cmd)
        elif isinstance(cmd, c.Idle):
            await self._idle(cmd)
        else:
            before = self.session.tally.auth_failures
            try:
                await self.session.handle(cmd)
            except (OSError, asyncio.CancelledError, TimeoutError, _Closed):
                raise
            except Exception:  # the connection boundary: log, answer, keep serving
                log.exception("imap command failed", extra={"fields": {"session": self.conn.id}})
                self._send(encode.no(cmd.tag, "internal error, try again", encode.SERVERBUG))
                return
            if self.session.tally.auth_failures > before:
                self.errors += 1
            else:
                self.errors = 0

    async def _starttls(self, cmd: c.StartTls) -> None:
        if self.session.state is not State.NOT_AUTHENTICATED:
            self._bad(encode.bad(cmd.tag, "already logged in", encode.CLIENTBUG))
            return
        if self.conn.implicit_tls or self.app.ssl_context is None or self.session.policy.tls_active:
            self._bad(encode.bad(cmd.tag, "TLS is already active or not available", encode.CLIENTBUG))
            return
        self._send(encode.ok(cmd.tag, "begin TLS negotiation now"))
        await self.stream.flush(self.limits.command_timeout)
        # RFC 9051 §6.2.1 / CVE-2011-0411: whatever followed STARTTLS in clear is dropped.
        self.parser.take_buffered()
        self.stream.reader._buffer.clear()  # type: ignore[attr-defined]
        await self.stream.writer.start_tls(self.app.ssl_context, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT)
        self.session.policy = SessionPolicy(True, True, self.session.policy.plaintext_allowed,
                                            self.session.policy.append_limit)

    async def _compress(self, cmd: c.Compress) -> None:
        if self.session.state is State.NOT_AUTHENTICATED:
            self._bad(encode.bad(cmd.tag, "log in first", encode.CLIENTBUG))
            return
        if self.stream.compressed:
            self._send(encode.no(cmd.tag, "compression is already on", encode.COMPRESSIONACTIVE))
            return
        if cmd.mechanism.upper() != "DEFLATE":
            self._send(encode.bad(cmd.tag, f"unknown compression {cmd.mechanism}", encode.CLIENTBUG))
            return
        self._send(encode.ok(cmd.tag, "DEFLATE active"))
        await self.stream.flush(self.limits.command_timeout)
        rest = self.parser.take_buffered()  # RFC 4978 §3: what follows is compressed
        self.stream.compress()
        self.session.compressed = True
        if rest:
            self.parser.receive(self.stream.inflate(rest))

    async def _idle(self, cmd: c.Idle) -> None:
        if self.session.state is State.NOT_AUTHENTICATED:
            self._bad(encode.bad(cmd.tag, "log in first", encode.CLIENTBUG))
            return
        await self.session.notifications((), idle=True)
        self.idle_tag = cmd.tag
        self.parser.start_idle(cmd.tag)
        self._send(encode.continuation("idling"))

    # -- AUTHENTICATE PLAIN (RFC 4616, SASL-IR RFC 4959) ----------------------------------------

    async def _authenticate(self, cmd: c.Authenticate) -> None:
        if self.session.state is not State.NOT_AUTHENTICATED:
            self._bad(encode.bad(cmd.tag, "already logged in", encode.CLIENTBUG))
            return
        if cmd.mechanism.upper() != "PLAIN":
            self._send(encode.no(cmd.tag, f"mechanism {cmd.mechanism} is not supported", encode.CANNOT))
            return
        if not self.session.login_allowed:
            self._send(encode.no(cmd.tag, "authenticate after STARTTLS", encode.PRIVACYREQUIRED))
            return
        if cmd.initial_response is None:
            self.sasl_tag = cmd.tag
            self.parser.expect_authenticate_response(cmd.tag)
            self._send(encode.continuation_data(b""))
            return
        await self._plain(cmd.tag, cmd.initial_response.encode("ascii"))

    async def _sasl_response(self, ev: AuthenticateResponse) -> None:
        self.sasl_tag = None
        if ev.cancelled:
            self._bad(encode.bad(ev.tag, "authentication cancelled", encode.CLIENTBUG))
            return
        await self._plain(ev.tag, ev.data)

    async def _plain(self, tag: str, data: bytes) -> None:
        try:
            decoded = base64.b64decode(data, validate=True) if data not in (b"", b"=") else b""
            authzid, user, password = decoded.decode("utf-8").split("\x00")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            self._bad(encode.bad(tag, "malformed PLAIN response", encode.CLIENTBUG))
            return
        try:
            result = await self.session.authenticate(user, password, authzid)
        except Answer as answer:
            self.errors += 1
            self._send(encode.tagged(tag, answer.status, answer.text, answer.code))
            return
        assert isinstance(result, tuple)
        self.errors = 0
        self._send(encode.tagged(tag, "OK", result[0], result[1]))

    def _log(self) -> None:
        t = self.session.tally
        event(log, "imap session", session=self.conn.id, ip=self.conn.peer_ip, user=t.user,
              tls=self.session.policy.tls_active, commands=t.commands, fetched=t.fetched,
              auth_failures=t.auth_failures, errors=self.errors, end=self.end,
              seconds=round(time.monotonic() - self.conn.started, 3))
