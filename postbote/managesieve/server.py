"""The ManageSieve server (RFC 5804): port 4190, where mail clients upload Sieve scripts.

The wire rules live in ``postbote.managesieve.protocol``; this adapter gives the core what
needs the outside world: credentials checked by the account service (so the brute-force
throttle and app passwords apply as on IMAP and POP3), the account's scripts in the store, the
Sieve parser to check a script before it is stored, and the STARTTLS handshake.

Decisions an operator may want to know:

- AUTHENTICATE PLAIN is refused before TLS (``NO (ENCRYPT-NEEDED)``) unless the client
  connects from loopback, exactly as POP3 decides it: the dev instance and local tools work
  without TLS, nothing that crosses a network sends a password in clear.
- A script is parsed before it is stored (PUTSCRIPT) or instead of being stored (CHECKSCRIPT);
  an error answers ``NO "line N: ..."``, so a client can point at the line.
- At most ``MAX_SCRIPTS`` scripts per account, each at most ``sieve.MAX_SCRIPT_SIZE``
  octets: beyond, ``NO (QUOTA/MAXSCRIPTS)`` or ``NO (QUOTA/MAXSIZE)``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from postbote import sieve
from postbote.accounts.service import AuthFailed
from postbote.config import LimitSettings
from postbote.listener import Connection, Listener
from postbote.log import event
from postbote.pop3.server import plaintext_allowed
from postbote.store import AlreadyExists, NotFound, StoreError
from postbote.store.types import Account

from .protocol import (
    Answered,
    Authenticate,
    Bye,
    CheckScript,
    ConnectionClosed,
    DeleteScript,
    Event,
    GetScript,
    HaveSpace,
    ListScripts,
    Logout,
    No,
    Ok,
    PutScript,
    RenameScript,
    Response,
    SetActive,
    SieveConfig,
    SieveCore,
    SieveState,
    StartTls,
    Unauthenticate,
    format_response,
)

if TYPE_CHECKING:
    from postbote.app import App

log = logging.getLogger("postbote.managesieve")

BUSY_REPLY = format_response(Bye("too many connections, try again later", "TRYLATER"))
CHUNK = 64 * 1024
TLS_HANDSHAKE_TIMEOUT = 30
# Every input has a bound: a client that never logs in cannot keep a slot with NOOP forever.
MAX_COMMANDS_BEFORE_LOGIN = 50
# Scripts per account: far more than any client's filter editor makes.
MAX_SCRIPTS = 100
_STORE_TROUBLE = No("cannot reach the script store now, try again later", "TRYLATER")


def listeners(app: App) -> list[Listener]:
    """One listener with STARTTLS on ``listen.managesieve`` (RFC 5804 §1.8: no implicit TLS)."""
    service = SieveService(app)
    return [Listener("managesieve", app.settings.listen.managesieve, service.handle,
                     app.connection_limits, BUSY_REPLY)]


def core_config(hostname: str, peer_ip: str, tls_available: bool, limits: LimitSettings) -> SieveConfig:
    """The core's view of one connection."""
    return SieveConfig(
        hostname=hostname,
        tls_available=tls_available,
        allow_plaintext_auth=plaintext_allowed(peer_ip),
        sieve_extensions=sieve.EXTENSIONS,
        max_script_size=sieve.MAX_SCRIPT_SIZE,
        max_line=limits.max_line_length,
    )


def check_script(text: str) -> str | None:
    """Blocking (run it in the executor): None if the script is valid Sieve, else the
    error as a client can show it, ``line N: message``."""
    try:
        sieve.parse(text)
    except sieve.SieveError as exc:
        return f"line {exc.line}: {exc.message}"
    return None


class SieveService:
    """The ManageSieve side of one App."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     conn: Connection) -> None:
        await SieveSession(self, reader, writer, conn).run()


class _EndSession(Exception):
    """Stop serving this connection after a last BYE (too many errors, idle, shutdown)."""

    def __init__(self, reason: str, line: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line


@dataclass
class _Tally:
    """What the session's log line reports."""

    user: str | None = None
    uploaded: int = 0
    auth_failures: int = 0
    end: str = "eof"


class SieveSession:
    """Drives one ``SieveCore`` with an asyncio stream, from greeting to close."""

    def __init__(self, service: SieveService, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, conn: Connection) -> None:
        self.service = service
        self.app = service.app
        self.reader, self.writer, self.conn = reader, writer, conn
        self.core = SieveCore(core_config(self.app.settings.hostname, conn.peer_ip,
                                          self.app.ssl_context is not None, self.app.settings.limits))
        self.timeout = self.app.settings.limits.command_timeout
        self.account: Account | None = None
        self.errors = 0
        self.commands_before_login = 0
        self.tally = _Tally()
        self._idle = False
        self._stop_requested = False
        conn.on_stop = self.request_stop

    async def run(self) -> None:
        self.writer.write(self.core.greeting())
        try:
            await self._serve()
        except _EndSession as end:
            self.tally.end = end.reason
            if end.line and not self.writer.is_closing():
                self.writer.write(end.line)
                await self._drain()
        except OSError:
            self.tally.end = "connection lost"
            raise
        finally:
            self._log()

    def request_stop(self) -> None:
        """Shutdown: an idle session says BYE now; a busy one after its current command."""
        self._stop_requested = True
        if self._idle and not self.writer.is_closing():
            self.writer.write(_SHUTDOWN_LINE)
            self.writer.close()
            self.tally.end = "shutdown"

    async def _serve(self) -> None:
        while self.core.state is not SieveState.LOGOUT:
            for ev in self.core.events():
                await self._dispatch(ev)
                self._check_bounds()
            if self.core.state is SieveState.LOGOUT:
                break
            if self._stop_requested:
                raise _EndSession("shutdown", _SHUTDOWN_LINE)
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
            line = format_response(Bye(f"idle for {self.timeout} seconds, closing", "TRYLATER"))
            raise _EndSession("idle timeout", line) from None
        finally:
            self._idle = False

    async def _drain(self) -> None:
        if self.writer.transport.get_write_buffer_size() == 0:
            return
        async with asyncio.timeout(self.timeout):
            await self.writer.drain()

    def _check_bounds(self) -> None:
        if self.errors >= self.app.settings.limits.max_errors:
            raise _EndSession("too many errors", format_response(Bye("too many errors, closing connection")))
        if self.core.state is SieveState.NON_AUTHENTICATED:
            self.commands_before_login += 1
            if self.commands_before_login > MAX_COMMANDS_BEFORE_LOGIN:
                raise _EndSession("too many commands before login",
                                  format_response(Bye("too many commands before login, closing connection")))

    def _answer(self, response: Response) -> None:
        if not isinstance(response, Ok):
            self.errors += 1
        self.writer.write(self.core.send(response))

    async def _dispatch(self, ev: Event) -> None:
        match ev:
            case Answered(data=data, ok=ok):
                self.writer.write(data)
                self.errors += not ok
            case Authenticate():
                await self._login(ev)
            case StartTls():
                await self._start_tls()
            case Logout():
                self.tally.end = "logout"
                self.writer.write(self.core.send(Ok("logout completed")))
            case Unauthenticate():
                self.account = None
                self.writer.write(self.core.send(Ok("unauthenticate completed")))
            case ConnectionClosed():
                pass
            case _:
                try:
                    await self._script_command(ev)
                except StoreError as exc:
                    event(log, "managesieve store error", level=logging.WARNING, session=self.conn.id,
                          user=self.tally.user, error=str(exc))
                    self._answer(_STORE_TROUBLE)

    # -- non-authenticated

    async def _login(self, ev: Authenticate) -> None:
        self.tally.user = ev.user
        try:
            result = await self.app.accounts.authenticate(ev.user, ev.password, self.conn.peer_ip)
        except StoreError:
            self._answer(_STORE_TROUBLE)
            return
        if isinstance(result, AuthFailed):
            self.tally.auth_failures += 1
            if result.locked:
                # RFC 5804 §1.3: TRYLATER tells the client the failure is temporary.
                self._answer(No("too many failed logins, try again later", "TRYLATER"))
            else:
                self._answer(No("invalid user name or password"))
            return
        account = result.account
        if ev.authzid and ev.authzid.lower() not in (ev.user.lower(), account.address):
            self._answer(No(f"not authorized to act as {ev.authzid}"))
            return
        self.account = account
        self.tally.user = account.address
        event(log, "managesieve login", session=self.conn.id, user=account.address,
              app_password=result.app_password, tls=self.core.tls_active)
        self.writer.write(self.core.authenticated(account.address))

    async def _start_tls(self) -> None:
        assert self.app.ssl_context is not None  # the core offers STARTTLS only with a context
        self.writer.write(self.core.send(Ok("begin TLS negotiation")))
        await self._drain()
        # CVE-2011-0411: bytes the client sent behind STARTTLS were plaintext; the core dropped
        # what it had, the stream's buffer may hold more. asyncio has no public call for this.
        self.reader._buffer.clear()  # type: ignore[attr-defined]
        await self.writer.start_tls(self.app.ssl_context, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT)
        self.writer.write(self.core.tls_established())

    # -- authenticated

    def _account_id(self) -> int:
        assert self.account is not None  # the core sends script commands only once logged in
        return self.account.id

    async def _script_command(self, ev: Event) -> None:
        store, account_id = self.app.store, self._account_id()
        match ev:
            case ListScripts():
                scripts = await store.sieve_list(account_id)
                self.writer.write(self.core.send_listing([(s.name, s.active) for s in scripts]))
            case GetScript(name=name):
                text = await store.sieve_get(account_id, name)
                if text is None:
                    self._answer(No(f"no script named {name}", "NONEXISTENT"))
                else:
                    self.writer.write(self.core.send_script(text))
            case HaveSpace(name=name):
                self._answer(await self._room_for(name) or Ok("putscript would succeed"))
            case PutScript(name=name, script=script):
                self._answer(await self._put(name, script))
            case CheckScript(script=script):
                problem = await self._check(script)
                self._answer(No(problem) if problem else Ok("script is valid"))
            case SetActive(name=name):
                self._answer(await self._set_active(name))
            case DeleteScript(name=name):
                self._answer(await self._delete(name))
            case RenameScript(old=old, new=new):
                self._answer(await self._rename(old, new))

    async def _room_for(self, name: str) -> No | None:
        """RFC 5804 §2.5: a refusal if one more script may not be stored, else None."""
        scripts = await self.app.store.sieve_list(self._account_id())
        if len(scripts) >= MAX_SCRIPTS and all(s.name != name for s in scripts):
            return No(f"at most {MAX_SCRIPTS} scripts per account", "QUOTA/MAXSCRIPTS")
        return None

    async def _check(self, script: str) -> str | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.app.executor, check_script, script)

    async def _put(self, name: str, script: str) -> Response:
        # RFC 5804 §2.6: a script that does not parse is not stored.
        problem = await self._check(script)
        if problem:
            return No(problem)
        refusal = await self._room_for(name)
        if refusal is not None:
            return refusal
        await self.app.store.sieve_put(self._account_id(), name, script)
        self.tally.uploaded += 1
        event(log, "managesieve script stored", session=self.conn.id, user=self.tally.user,
              script=name, octets=len(script.encode()))
        return Ok("putscript completed")

    async def _set_active(self, name: str | None) -> Response:
        try:
            await self.app.store.sieve_activate(self._account_id(), name)
        except NotFound:
            return No(f"no script named {name}", "NONEXISTENT")
        event(log, "managesieve script activated", session=self.conn.id, user=self.tally.user, script=name)
        return Ok("setactive completed")

    async def _delete(self, name: str) -> Response:
        scripts = await self.app.store.sieve_list(self._account_id())
        found = next((s for s in scripts if s.name == name), None)
        if found is None:
            return No(f"no script named {name}", "NONEXISTENT")
        if found.active:
            # RFC 5804 §2.10: the active script cannot be deleted; deactivate it first.
            return No("the active script cannot be deleted, deactivate it first", "ACTIVE")
        try:
            await self.app.store.sieve_delete(self._account_id(), name)
        except NotFound:
            return No(f"no script named {name}", "NONEXISTENT")
        return Ok("deletescript completed")

    async def _rename(self, old: str, new: str) -> Response:
        try:
            await self.app.store.sieve_rename(self._account_id(), old, new)
        except NotFound:
            return No(f"no script named {old}", "NONEXISTENT")
        except AlreadyExists:
            return No(f"a script named {new} already exists", "ALREADYEXISTS")
        return Ok("renamescript completed")

    def _log(self) -> None:
        t = self.tally
        event(log, "managesieve session", session=self.conn.id, ip=self.conn.peer_ip, user=t.user,
              tls=self.core.tls_active, uploaded=t.uploaded, auth_failures=t.auth_failures,
              errors=self.errors, end=t.end, seconds=round(time.monotonic() - self.conn.started, 3))


_SHUTDOWN_LINE = format_response(Bye("server shutting down, try again later", "TRYLATER"))
