"""The POP3 server: ports 110 (STLS) and 995 (implicit TLS) over the store.

The wire rules live in ``postbote.pop3.protocol``; this adapter gives the core what needs the
outside world: credentials checked by the account service, the maildrop (the account's INBOX)
snapshotted at login, message bytes streamed from blob files, deletions committed at QUIT.

Decisions an operator may want to know:

- Plaintext authentication (USER/PASS, AUTH PLAIN) is refused before TLS unless the client
  connects from a loopback address (127.0.0.0/8, ::1): local tools and the dev instance work
  without TLS, nothing that crosses a network ever sends a password in clear.
- One POP3 session per account at a time (RFC 1939 §8: the maildrop is locked); a second one
  gets ``-ERR [IN-USE]``. The lock is per process (see ``Pop3Service``).
- LIST sizes are the octets RETR sends before dot-stuffing: bare LFs are sent as CRLF and an
  unterminated last line gets a CRLF, so sizes are computed from the blob at login (once per
  blob per process: blobs are immutable and named by their SHA-256, so a cache is safe).
- UIDL is ``UIDVALIDITY.UID``: stable across sessions, new when the INBOX is recreated.
- A message fully sent by RETR is marked \\Seen (as Dovecot does), in one store call when the
  session ends in order (QUIT, EOF, autologout, shutdown); TOP marks nothing.
- The maildrop lists every INBOX message, including those an IMAP client flagged \\Deleted but
  has not expunged (as Dovecot does by default).
- Deletions happen only after QUIT (RFC 1939 §6 UPDATE state): the marked UIDs get \\Deleted
  and are expunged, so IMAP sessions see ordinary expunges. A dropped connection, an autologout
  or a shutdown deletes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from postbote.accounts.service import AuthFailed
from postbote.config import LimitSettings
from postbote.linesession import CHUNK, EndSession, LineSession, Tally, may_act_as, plaintext_allowed
from postbote.listener import Connection, Listener
from postbote.log import event
from postbote.store import NotFound, StoreError
from postbote.store.types import Account, Flag, FlagMode, Message

from .protocol import (
    Answered,
    ApopCredentials,
    AuthCredentials,
    ConnectionClosed,
    DotStuffer,
    Err,
    Event,
    Ok,
    Pop3Config,
    Pop3Core,
    Pop3State,
    Quit,
    Retr,
    StartTls,
    Top,
    format_reply,
)

if TYPE_CHECKING:
    from postbote.app import App

log = logging.getLogger("postbote.pop3")

BUSY_REPLY = b"-ERR [SYS/TEMP] too many connections\r\n"
# RFC 1939 §3: an inactivity autologout timer MUST be at least 10 minutes.
MIN_IDLE_TIMEOUT = 600
# How much output may queue before waiting on the client: as much as one socket read.
OUTPUT_QUEUE = CHUNK
BLOB_CHUNK = 256 * 1024  # blob file reads: most messages in one executor hop, memory still bounded
# Every input has a bound: a client that never logs in cannot keep a slot with CAPA forever.
MAX_COMMANDS_BEFORE_LOGIN = 50
SIZE_CACHE_ENTRIES = 100_000
# Concurrent blob_path lookups while opening a maildrop: leaves store threads for others.
LOOKUP_BATCH = 32


def listeners(app: App) -> list[Listener]:
    """One listener with STLS on ``listen.pop3``, one with implicit TLS on ``listen.pop3s``."""
    service = Pop3Service(app)
    found = [Listener("pop3", app.settings.listen.pop3, service.handle, app.connection_limits, BUSY_REPLY)]
    if app.ssl_context is not None:  # never serve port 995 in clear
        found.append(Listener("pop3s", app.settings.listen.pop3s, service.handle,
                              app.connection_limits, BUSY_REPLY, ssl_context=app.ssl_context))
    return found


# --- policy, as plain functions so tests can check them without a socket -------------------


def core_config(hostname: str, peer_ip: str, tls_available: bool, implicit_tls: bool) -> Pop3Config:
    """The core's view of one connection."""
    return Pop3Config(
        hostname=hostname,
        tls_available=tls_available,
        tls_active=implicit_tls,
        allow_plaintext_auth=plaintext_allowed(peer_ip),
    )


def idle_timeout(limits: LimitSettings) -> int:
    """The configured command timeout, raised to the RFC 1939 §3 floor of 10 minutes."""
    return max(MIN_IDLE_TIMEOUT, limits.command_timeout)


def unique_id(uidvalidity: int, uid: int) -> str:
    """RFC 1939 §7 unique-id: the IMAP identity of the message, so it never changes."""
    return f"{uidvalidity}.{uid}"


# --- sizes and TOP over chunks ---------------------------------------------------------------


class WireSize:
    """Counts the octets ``DotStuffer`` sends for a body, before stuffing and the terminator:
    every bare LF becomes CRLF, a last line without a line end gets one."""

    def __init__(self) -> None:
        self.size = 0
        self._last = b""

    def feed(self, data: bytes) -> None:
        if not data:
            return
        lf = data.count(b"\n")
        crlf = data.count(b"\r\n") + (self._last == b"\r" and data[:1] == b"\n")
        self.size += len(data) + lf - crlf
        self._last = data[-1:]

    def total(self) -> int:
        if self._last == b"\r":
            return self.size + 1  # the final CR is sent as CRLF
        if self._last and self._last != b"\n":
            return self.size + 2
        return self.size


def wire_size(data: bytes) -> int:
    counter = WireSize()
    counter.feed(data)
    return counter.total()


def file_wire_size(path: Path) -> int:
    """Blocking: read the blob once; run it in an executor."""
    counter = WireSize()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            counter.feed(chunk)
    return counter.total()


class TopCut:
    """RFC 1939 §7 TOP over chunks: the header, its blank line, then ``lines`` body lines
    (the same cut as ``protocol.top_bytes``, without holding the message)."""

    def __init__(self, lines: int) -> None:
        self._left = lines
        self._in_header = True
        self._line = b""  # the header line so far, kept to 2 octets: enough to see a blank one
        self.done = False

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return b""
        start = 0
        if self._in_header:
            start = self._header_end(data)
            if self._in_header:
                return data
        return data[:self._body_end(data, start)]

    def _header_end(self, data: bytes) -> int:
        pos = 0
        while (nl := data.find(b"\n", pos)) != -1:
            line = (self._line + data[pos:nl])[:2]
            self._line = b""
            pos = nl + 1
            if line in (b"", b"\r"):
                self._in_header = False
                return pos
        self._line = (self._line + data[pos:])[:2]
        return pos

    def _body_end(self, data: bytes, pos: int) -> int:
        if self._left == 0:
            self.done = True
            return pos
        if data.count(b"\n", pos) < self._left:
            self._left -= data.count(b"\n", pos)
            return len(data)
        for _ in range(self._left):
            pos = data.index(b"\n", pos) + 1
        self._left = 0
        self.done = True
        return pos


# --- the maildrop --------------------------------------------------------------------------


class MaildropError(Exception):
    """The maildrop cannot be opened; ``code`` is the RFC 3206 response code to answer."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


@dataclass(frozen=True)
class Maildrop:
    """The INBOX as it was at login: RFC 1939 numbers messages 1..n for the whole session."""

    mailbox_id: int
    uidvalidity: int
    messages: tuple[Message, ...]
    paths: tuple[Path | None, ...]  # None: the backend keeps the blob off disk
    sizes: tuple[int, ...]

    @property
    def uids(self) -> list[str]:
        return [unique_id(self.uidvalidity, m.uid) for m in self.messages]

    def store_uids(self, numbers: Sequence[int] | set[int] | frozenset[int]) -> list[int]:
        return sorted(self.messages[n - 1].uid for n in numbers)


class SizeCache:
    """Wire sizes by blob SHA-256 (the blob file's name): valid forever, bounded in count."""

    def __init__(self, limit: int = SIZE_CACHE_ENTRIES) -> None:
        self._limit = limit
        self._sizes: dict[str, int] = {}

    def get(self, path: Path) -> int | None:
        return self._sizes.get(path.name)

    def put(self, path: Path, size: int) -> None:
        if len(self._sizes) >= self._limit:
            del self._sizes[next(iter(self._sizes))]
        self._sizes[path.name] = size


# --- what all sessions of one App share ------------------------------------------------------


class Pop3Service:
    """The POP3 side of one App: maildrop locks, the size cache, the live sessions.

    A maildrop lock (RFC 1939 §8) is an ``flock`` on ``DATA/run/pop3/ACCOUNT.lock``: it holds
    across the processes of ``serve --workers N`` on one machine, and the kernel drops it when
    its process dies, so a crash never leaves a maildrop locked."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.sizes = SizeCache()
        self._locks: dict[int, int] = {}  # account id -> the open, flocked file
        self._lock_dir = app.settings.data_path / "run" / "pop3"
        self._sessions: set[Pop3Session] = set()
        self._watcher: asyncio.Task[None] | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     conn: Connection) -> None:
        self._watch_shutdown()
        session = Pop3Session(self, reader, writer, conn)
        self._sessions.add(session)
        try:
            await session.run()
        finally:
            self._sessions.discard(session)

    def lock(self, account_id: int) -> bool:
        if account_id in self._locks:
            return False
        self._lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_dir / f"{account_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._locks[account_id] = fd
        return True

    def unlock(self, account_id: int) -> None:
        fd = self._locks.pop(account_id, None)
        if fd is not None:
            os.close(fd)  # closing the file releases the flock

    def _watch_shutdown(self) -> None:
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._stop_sessions())

    async def _stop_sessions(self) -> None:
        """At shutdown, idle sessions end at once (without UPDATE), busy ones after their
        command, so draining does not wait out clients that just sit there."""
        await self.app.stopping.wait()
        for session in list(self._sessions):
            session.request_stop()

    async def open_maildrop(self, account: Account) -> Maildrop:
        store = self.app.store
        mailbox = await store.get_mailbox(account.id, "INBOX")
        if mailbox is None:
            raise MaildropError("SYS/PERM", "the account has no INBOX")
        messages = tuple([m async for batch in store.iter_messages(mailbox.id) for m in batch])
        paths: list[Path | None] = []
        for i in range(0, len(messages), LOOKUP_BATCH):
            batch = messages[i:i + LOOKUP_BATCH]
            paths += await asyncio.gather(*(store.blob_path(m.blob_id) for m in batch))
        sizes = await self._wire_sizes(messages, paths)
        return Maildrop(mailbox.id, mailbox.uidvalidity, messages, tuple(paths), tuple(sizes))

    async def _wire_sizes(self, messages: Sequence[Message], paths: Sequence[Path | None]) -> list[int]:
        unknown = [p for p in paths if p is not None and self.sizes.get(p) is None]
        if unknown:
            loop = asyncio.get_running_loop()
            scanned = await loop.run_in_executor(self.app.executor, _scan, unknown)
            for path, size in zip(unknown, scanned):
                self.sizes.put(path, size)
        sizes = []
        for message, path in zip(messages, paths):
            known = self.sizes.get(path) if path is not None else None
            if known is None:
                known = wire_size(await self.app.store.read_blob(message.blob_id))
            sizes.append(known)
        return sizes


def _scan(paths: Sequence[Path]) -> list[int]:
    return [file_wire_size(p) for p in paths]


# --- one connection ------------------------------------------------------------------------


@dataclass
class _Tally(Tally):
    """What the session's log line reports."""

    mechanism: str | None = None
    messages: int = 0
    retrieved: set[int] = field(default_factory=set)
    octets: int = 0
    deleted: int = 0


class Pop3Session(LineSession[Pop3Core]):
    """Drives one ``Pop3Core`` with an asyncio stream, from greeting to close."""

    protocol = "pop3"
    logger = log
    closed_state = Pop3State.CLOSED
    login_state = Pop3State.AUTHORIZATION
    max_commands_before_login = MAX_COMMANDS_BEFORE_LOGIN
    shutdown_line = format_reply(Err("server shutting down, try again later", "SYS/TEMP"))
    tally: _Tally

    def __init__(self, service: Pop3Service, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, conn: Connection) -> None:
        app = service.app
        core = Pop3Core(core_config(app.settings.hostname, conn.peer_ip,
                                    app.ssl_context is not None, conn.implicit_tls))
        super().__init__(app, reader, writer, conn, core, idle_timeout(app.settings.limits), _Tally())
        self.service = service
        self.account: Account | None = None
        self.maildrop: Maildrop | None = None
        self._out: list[bytes] = []
        self._queued = 0
        self._marked: set[int] = set()  # message numbers already marked \Seen

    def greeting(self) -> bytes:
        return self.core.greeting()

    async def _after_serve(self) -> None:
        # Every orderly end (QUIT, EOF, autologout, shutdown): what RETR sent was read.
        await self._mark_seen(self.tally.retrieved - self._marked)

    def _release(self) -> None:
        if self.account is not None:
            self.service.unlock(self.account.id)

    def _closing_line(self, text: str) -> bytes:
        return format_reply(Err(text))

    def _idle_end(self) -> EndSession:
        return EndSession("autologout", self._closing_line(f"autologout: idle for {self.timeout} seconds"))

    def _send(self, data: bytes) -> None:
        """Queue output; ``_drain`` writes it in one go, so a small RETR or a pipelined batch of
        replies costs one system call instead of one per line."""
        self._out.append(data)
        self._queued += len(data)

    async def _drain(self) -> None:
        if self._out:
            self.writer.write(b"".join(self._out))
            self._out.clear()
            self._queued = 0
        await super()._drain()

    async def _dispatch(self, ev: Event) -> None:
        match ev:
            case Answered(data=data, ok=ok):
                self._send(data)
                if not ok:
                    self.errors += 1
            case AuthCredentials():
                await self._login(ev)
            case ApopCredentials():
                self._send(self.core.auth_failed("AUTH", "APOP is not supported"))
            case StartTls():
                await self._upgrade_tls(self.core.send(Ok("begin TLS negotiation")))
                self.core.tls_established()
            case Retr(n=n):
                await self._send_message(n, None)
            case Top(n=n, lines=lines):
                await self._send_message(n, lines)
            case Quit():
                await self._quit(ev)
            case ConnectionClosed():
                pass  # RFC 1939 §6: no UPDATE state, nothing is deleted

    # -- authorization

    async def _login(self, ev: AuthCredentials) -> None:
        self.tally.user, self.tally.mechanism = ev.user, ev.mechanism
        try:
            result = await self.app.accounts.authenticate(ev.user, ev.password, self.conn.peer_ip)
        except StoreError as exc:
            self._maildrop_failed(exc)
            return
        if isinstance(result, AuthFailed):
            self._auth_failed(result)
            return
        account = result.account
        if not may_act_as(ev.authzid, ev.user, account.address):
            self.errors += 1
            self._send(self.core.auth_failed("AUTH", f"not authorized to act as {ev.authzid}"))
            return
        await self._open_maildrop(account)

    async def _open_maildrop(self, account: Account) -> None:
        """RFC 1939 §8: lock, then snapshot. ``self.account`` is set as soon as the lock is
        held, so the session's ``finally`` releases it even if it is cancelled meanwhile."""
        if not self.service.lock(account.id):
            self._send(self.core.auth_failed("IN-USE"))
            return
        self.account = account
        try:
            maildrop = await self.service.open_maildrop(account)
        except (MaildropError, StoreError, OSError) as exc:
            self.account = None
            self.service.unlock(account.id)
            self._maildrop_failed(exc)
            return
        self.maildrop = maildrop
        self.tally.user, self.tally.messages = account.address, len(maildrop.messages)
        self._send(self.core.maildrop_opened(maildrop.sizes, maildrop.uids))

    def _auth_failed(self, result: AuthFailed) -> None:
        self.errors += 1
        self.tally.auth_failures += 1
        if result.locked:
            # RFC 2449 §8.1.1: [LOGIN-DELAY] tells the client to retry later without treating the
            # password as wrong, which is what a throttled client should do.
            reply = self.core.auth_failed("LOGIN-DELAY", "too many failed logins, try again later")
        else:
            reply = self.core.auth_failed("AUTH", "invalid user name or password")
        self._send(reply)

    def _maildrop_failed(self, exc: Exception) -> None:
        if isinstance(exc, MaildropError):
            code, text = exc.code, exc.text
        else:
            code, text = "SYS/TEMP", "cannot open the maildrop now, try again later"
        event(log, "pop3 maildrop unavailable", level=logging.WARNING, session=self.conn.id,
              user=self.tally.user, error=str(exc))
        self._send(self.core.auth_failed(code, text))

    # -- transaction

    async def _send_message(self, n: int, lines: int | None) -> None:
        maildrop = self._opened()
        try:
            chunks = await self._open_blob(n)
        except (FileNotFoundError, NotFound):
            # Expunged by IMAP and collected since login: nothing was sent, say so.
            self._send(self.core.send(Err(f"message {n} was removed by another session")))
            return
        except (OSError, StoreError) as exc:
            event(log, "pop3 cannot read message", level=logging.ERROR, session=self.conn.id,
                  user=self.tally.user, n=n, error=str(exc))
            self._send(self.core.send(Err(f"cannot read message {n} now, try again later", "SYS/TEMP")))
            return
        text = f"{maildrop.sizes[n - 1]} octets" if lines is None else "top of message follows"
        self._send(self.core.send(Ok(text)))
        stuffer, cut = DotStuffer(), (TopCut(lines) if lines is not None else None)
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                if cut is not None:
                    chunk = cut.feed(chunk)
                self._send(stuffer.feed(chunk))
                if cut is not None and cut.done:
                    break
                if self._queued >= OUTPUT_QUEUE:
                    await self._drain()
        self._send(stuffer.end())
        if lines is None:
            self.tally.retrieved.add(n)
            self.tally.octets += maildrop.sizes[n - 1]

    async def _open_blob(self, n: int) -> AsyncGenerator[bytes, None]:
        """The message's bytes in chunks; opening happens now, so a missing blob is an error
        before any reply line is written."""
        maildrop = self._opened()
        path = maildrop.paths[n - 1]
        if path is None:
            data = await self.app.store.read_blob(maildrop.messages[n - 1].blob_id)
            return _slices(data)
        loop = asyncio.get_running_loop()
        f, first = await loop.run_in_executor(self.app.executor, _open_and_read, path)
        return self._file_chunks(f, first)

    async def _file_chunks(self, f: BinaryIO, first: bytes) -> AsyncGenerator[bytes, None]:
        loop = asyncio.get_running_loop()
        try:
            chunk = first
            while chunk:
                yield chunk
                if len(chunk) < BLOB_CHUNK:
                    return
                chunk = await loop.run_in_executor(self.app.executor, f.read, BLOB_CHUNK)
        finally:
            f.close()

    async def _quit(self, ev: Quit) -> None:
        if not ev.update:
            self.tally.end = "quit"
            self._send(self.core.send(Ok(f"{self.app.settings.hostname} POP3 server signing off")))
            return
        await self._mark_seen(self.tally.retrieved - ev.deleted)
        self._marked |= self.tally.retrieved  # a deleted message needs no \Seen
        try:
            deleted = await self._expunge(ev.deleted)
        except (StoreError, OSError) as exc:
            event(log, "pop3 update failed", level=logging.ERROR, session=self.conn.id,
                  user=self.tally.user, error=str(exc))
            self.tally.end = "update failed"
            self._send(self.core.send(Err("could not remove deleted messages, try again", "SYS/TEMP")))
            return
        self.tally.deleted, self.tally.end = deleted, "quit"
        self._send(self.core.send(Ok(f"{self.app.settings.hostname} POP3 server signing off "
                                            f"({deleted} messages deleted)")))

    async def _expunge(self, numbers: frozenset[int]) -> int:
        """RFC 1939 §6 UPDATE: remove exactly the messages marked with DELE, in one
        transaction, whatever their flags."""
        if not numbers:
            return 0
        maildrop = self._opened()
        uids = maildrop.store_uids(numbers)
        return len(await self.app.store.remove_messages(maildrop.mailbox_id, uids))

    async def _mark_seen(self, numbers: set[int] | frozenset[int]) -> None:
        if not numbers or self.maildrop is None:
            return
        self._marked |= numbers
        uids = self.maildrop.store_uids(numbers)
        try:
            await self.app.store.store_flags(self.maildrop.mailbox_id, uids, FlagMode.ADD, Flag.SEEN)
        except StoreError as exc:  # a lost \Seen must not fail the session
            event(log, "pop3 could not mark messages seen", level=logging.WARNING,
                  session=self.conn.id, error=str(exc))

    def _opened(self) -> Maildrop:
        assert self.maildrop is not None  # the core sends these events only in TRANSACTION
        return self.maildrop

    def _log_fields(self) -> dict[str, Any]:
        t = self.tally
        return {"mechanism": t.mechanism, "tls": self.core.tls_active, "messages": t.messages,
                "retrieved": len(t.retrieved), "octets": t.octets, "deleted": t.deleted}


def _open_and_read(path: Path) -> tuple[BinaryIO, bytes]:
    """Blocking: open and read the first chunk in one executor hop (most messages fit)."""
    f = open(path, "rb")
    try:
        return f, f.read(BLOB_CHUNK)
    except OSError:
        f.close()
        raise


async def _slices(data: bytes) -> AsyncGenerator[bytes, None]:
    view = memoryview(data)
    for i in range(0, len(data), BLOB_CHUNK):
        yield bytes(view[i:i + BLOB_CHUNK])
