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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from postbote import sieve
from postbote.accounts.service import AuthFailed
from postbote.config import LimitSettings
from postbote.linesession import EndSession, LineSession, Tally, may_act_as, plaintext_allowed
from postbote.listener import Connection, Listener
from postbote.log import event
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


@dataclass
class _Tally(Tally):
    """What the session's log line reports."""

    uploaded: int = 0


class SieveSession(LineSession[SieveCore]):
    """Drives one ``SieveCore`` with an asyncio stream, from greeting to close."""

    protocol = "managesieve"
    logger = log
    closed_state = SieveState.LOGOUT
    login_state = SieveState.NON_AUTHENTICATED
    max_commands_before_login = MAX_COMMANDS_BEFORE_LOGIN
    shutdown_line = format_response(Bye("server shutting down, try again later", "TRYLATER"))
    tally: _Tally

    def __init__(self, service: SieveService, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, conn: Connection) -> None:
        app = service.app
        core = SieveCore(core_config(app.settings.hostname, conn.peer_ip,
                                     app.ssl_context is not None, app.settings.limits))
        super().__init__(app, reader, writer, conn, core, app.settings.limits.command_timeout, _Tally())
        self.service = service
        self.account: Account | None = None
        conn.on_stop = self.request_stop

    def greeting(self) -> bytes:
        return self.core.greeting()

    def _closing_line(self, text: str) -> bytes:
        return format_response(Bye(text))

    def _idle_end(self) -> EndSession:
        line = format_response(Bye(f"idle for {self.timeout} seconds, closing", "TRYLATER"))
        return EndSession("idle timeout", line)

    def _answer(self, response: Response) -> None:
        if not isinstance(response, Ok):
            self.errors += 1
        self._send(self.core.send(response))

    async def _dispatch(self, ev: Event) -> None:
        match ev:
            case Answered(data=data, ok=ok):
                self._send(data)
                self.errors += not ok
            case Authenticate():
                await self._login(ev)
            case StartTls():
                await self._upgrade_tls(self.core.send(Ok("begin TLS negotiation")))
                self._send(self.core.tls_established())
            case Logout():
                self.tally.end = "logout"
                self._send(self.core.send(Ok("logout completed")))
            case Unauthenticate():
                self.account = None
                self._send(self.core.send(Ok("unauthenticate completed")))
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
        if not may_act_as(ev.authzid, ev.user, account.address):
            self._answer(No(f"not authorized to act as {ev.authzid}"))
            return
        self.account = account
        self.tally.user = account.address
        event(log, "managesieve login", session=self.conn.id, user=account.address,
              app_password=result.app_password, tls=self.core.tls_active)
        self._send(self.core.authenticated(account.address))

    # -- authenticated

    def _account_id(self) -> int:
        assert self.account is not None  # the core sends script commands only once logged in
        return self.account.id

    async def _script_command(self, ev: Event) -> None:
        store, account_id = self.app.store, self._account_id()
        match ev:
            case ListScripts():
                scripts = await store.sieve_list(account_id)
                self._send(self.core.send_listing([(s.name, s.active) for s in scripts]))
            case GetScript(name=name):
                text = await store.sieve_get(account_id, name)
                if text is None:
                    self._answer(No(f"no script named {name}", "NONEXISTENT"))
                else:
                    self._send(self.core.send_script(text))
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

    def _log_fields(self) -> dict[str, Any]:
        return {"tls": self.core.tls_active, "uploaded": self.tally.uploaded}
