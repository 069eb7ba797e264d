"""The asyncio side of a line protocol session, shared by the POP3 and ManageSieve servers.

Both drive a sans-I/O core the same way: feed it what the socket gives, handle its events one
at a time (each may wait on the services), write what it answers, and read again only once
everything is answered and drained. What one session adds around that loop is the same too:
an idle timeout, bounds on errors and on commands before login, a last line when the server
ends the session, the STARTTLS upgrade, and one log line at the end. ``LineSession`` holds
that; a subclass brings its core, its words for those last lines, and its commands.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from postbote.listener import Connection
from postbote.log import event

CHUNK = 64 * 1024  # socket reads
TLS_HANDSHAKE_TIMEOUT = 30


class LineCore(Protocol):
    """What the session needs of a core: its state, TLS, bytes in, events out."""

    @property
    def state(self) -> Enum: ...

    @property
    def tls_active(self) -> bool: ...

    def receive(self, data: bytes) -> None: ...

    def events(self) -> Iterator[Any]: ...


CoreT = TypeVar("CoreT", bound=LineCore)


class EndSession(Exception):
    """Stop serving this connection after a last line (too many errors, idle, shutdown)."""

    def __init__(self, reason: str, line: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line


@dataclass
class Tally:
    """What every session's log line reports; a protocol adds its own counts."""

    user: str | None = None
    auth_failures: int = 0
    end: str = "eof"


class LineSession(Generic[CoreT]):
    """Drives one core with an asyncio stream, from greeting to close.

    A subclass sets the class attributes, implements the abstract hooks, and dispatches the
    core's events in ``_dispatch``."""

    protocol: ClassVar[str]  # the log events' prefix: "pop3 session"
    logger: ClassVar[logging.Logger]
    closed_state: ClassVar[Enum]  # the core's state once the session has ended
    login_state: ClassVar[Enum]  # the core's state before a login: commands there are counted
    max_commands_before_login: ClassVar[int]
    shutdown_line: ClassVar[bytes]

    def __init__(self, app: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 conn: Connection, core: CoreT, timeout: float, tally: Tally) -> None:
        self.app = app
        self.reader, self.writer, self.conn = reader, writer, conn
        self.core = core
        self.timeout = timeout
        self.tally = tally
        self.errors = 0
        self.commands_before_login = 0
        self._idle = False
        self._stop_requested = False

    # -- what a subclass provides

    def greeting(self) -> bytes:
        raise NotImplementedError

    async def _dispatch(self, ev: Any) -> None:
        raise NotImplementedError

    def _closing_line(self, text: str) -> bytes:
        """The protocol's last line before the server closes: ``-ERR text``, ``BYE "text"``."""
        raise NotImplementedError

    def _idle_end(self) -> EndSession:
        """How a session that sat idle for ``timeout`` seconds is ended."""
        raise NotImplementedError

    def _log_fields(self) -> dict[str, Any]:
        """The protocol's own fields of the session's log line, between user and errors."""
        raise NotImplementedError

    async def _after_serve(self) -> None:
        """Runs after every orderly end (logout, EOF, idle, shutdown), before the log line."""

    def _release(self) -> None:
        """Runs however the session ended, before the log line."""

    # -- the loop

    async def run(self) -> None:
        self._send(self.greeting())
        try:
            try:
                await self._serve()
            except EndSession as end:
                await self._say_goodbye(end)
            await self._after_serve()
        except OSError:
            self.tally.end = "connection lost"
            raise
        finally:
            self._release()
            self._log()

    async def _say_goodbye(self, end: EndSession) -> None:
        self.tally.end = end.reason
        if end.line and not self.writer.is_closing():
            self._send(end.line)
            await self._drain()

    def request_stop(self) -> None:
        """Shutdown: an idle session is told and closed now (its pending read then sees EOF and
        the session ends); a busy one stops after its current command."""
        self._stop_requested = True
        if self._idle and not self.writer.is_closing():
            self.writer.write(self.shutdown_line)
            self.writer.close()
            self.tally.end = "shutdown"

    async def _serve(self) -> None:
        while self.core.state is not self.closed_state:
            for ev in self.core.events():
                await self._dispatch(ev)
                self._check_bounds()
            if self.core.state is self.closed_state:
                break
            if self._stop_requested:
                raise EndSession("shutdown", self.shutdown_line)
            await self._drain()
            self.core.receive(await self._read())
        if not self.writer.is_closing():
            await self._drain()

    async def _read(self) -> bytes:
        self._idle = True
        try:
            async with asyncio.timeout(self.timeout):
                return await self.reader.read(CHUNK)
        except TimeoutError:
            raise self._idle_end() from None
        finally:
            self._idle = False

    def _send(self, data: bytes) -> None:
        self.writer.write(data)

    async def _drain(self) -> None:
        if self.writer.transport.get_write_buffer_size() == 0:
            return  # all of it went to the socket at once: nothing to wait for
        async with asyncio.timeout(self.timeout):
            await self.writer.drain()

    def _check_bounds(self) -> None:
        if self.errors >= self.app.settings.limits.max_errors:
            raise EndSession("too many errors", self._closing_line("too many errors, closing connection"))
        if self.core.state is self.login_state:
            self.commands_before_login += 1
            if self.commands_before_login > self.max_commands_before_login:
                raise EndSession("too many commands before login",
                                 self._closing_line("too many commands before login, closing connection"))

    async def _upgrade_tls(self, go_ahead: bytes) -> None:
        """Send the core's go-ahead for STARTTLS (STLS in POP3) and do the handshake; the
        caller then tells its core that TLS is established."""
        assert self.app.ssl_context is not None  # a core offers STARTTLS only with a context
        self._send(go_ahead)
        await self._drain()
        # RFC 2595 §4 / CVE-2011-0411: anything the client sent after the command was
        # plaintext; the core dropped what it had, the stream's buffer may hold more. asyncio
        # has no public call for this, and nothing yields between here and start_tls pausing
        # the socket.
        self.reader._buffer.clear()  # type: ignore[attr-defined]
        await self.writer.start_tls(self.app.ssl_context, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT)

    def _log(self) -> None:
        t = self.tally
        event(self.logger, f"{self.protocol} session", session=self.conn.id, ip=self.conn.peer_ip,
              user=t.user, **self._log_fields(), auth_failures=t.auth_failures, errors=self.errors,
              end=t.end, seconds=round(time.monotonic() - self.conn.started, 3))


def may_act_as(authzid: str, user: str, address: str) -> bool:
    """SASL PLAIN's authorization identity (RFC 4616 §2): empty, or the login itself."""
    return not authzid or authzid.lower() in (user.lower(), address)


def plaintext_allowed(peer_ip: str) -> bool:
    """Whether a password may be sent before TLS: only from loopback, so local tools and the
    dev instance work without TLS and nothing that crosses a network sends one in clear."""
    try:
        ip = ipaddress.ip_address(peer_ip.partition("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback
