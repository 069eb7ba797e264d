"""Sans-I/O POP3 server core (RFC 1939, 2449, 2595, 3206, 5034).

POP3 has to be exact to the octet, and its state machine is small enough to own entirely
here: the core parses every command line, keeps the maildrop's sizes, unique ids and
deleted-marks, and answers everything it can by itself. It hands the adapter only what needs
the outside world (credentials to check, a message to read, deletions to commit, a TLS
handshake) and waits for the answer before reading the next pipelined command, because that
answer decides how the next one is understood.

    core = Pop3Core(config)
    transport.write(core.greeting())
    core.receive(data)
    for event in core.events():
        match event:
            case Answered(data=data): transport.write(data)
            case Retr(n=n): transport.write(core.send_message(await load(n)))
            ...

No sockets, no asyncio, no clock, no store: bad input is answered with ``-ERR`` and never
raises. Misuse by the adapter (answering when nothing is pending) raises ``Pop3UsageError``.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable

from postbote.linecore import LineCoreBase, Refusal, check_code, decode_plain, strip_eol

CRLF = b"\r\n"
TERMINATOR = b".\r\n"

# RFC 2449 §8 response codes known to clients; others are allowed if well-formed.
RESPONSE_CODES = frozenset({"IN-USE", "LOGIN-DELAY", "SYS/TEMP", "SYS/PERM", "AUTH"})
# RFC 1939 §7: a unique-id is 1 to 70 characters from 0x21 to 0x7E.
_UID_SYNTAX = re.compile(r"[\x21-\x7e]{1,70}")
# RFC 1939 §7: the APOP timestamp is a msg-id, "<...>".
_CHALLENGE_SYNTAX = re.compile(r"<[\x21-\x3d\x3f-\x7e]+>")
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{32}")
_CONTROLS = bytes(range(0x20)) + b"\x7f"

_AUTH_FAILURE_TEXT = {
    None: "authentication failed",
    "AUTH": "authentication failed",
    "IN-USE": "maildrop is locked by another session, try again later",
    "LOGIN-DELAY": "logged in too recently, try again later",
    "SYS/TEMP": "temporary server failure, try again later",
    "SYS/PERM": "permanent server failure, contact the administrator",
}


class Pop3UsageError(RuntimeError):
    """The adapter called the core out of turn: a programming error, never bad input."""


class Pop3State(Enum):
    """RFC 1939 §3 session states, plus CLOSED once the session has ended."""

    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"
    CLOSED = "CLOSED"


@dataclass(frozen=True)
class Pop3Config:
    """What the core needs to know about its listener; every field has a safe default."""

    hostname: str = "localhost"
    tls_available: bool = False  # a certificate is loaded, so STLS can be offered
    tls_active: bool = False  # implicit TLS (port 995): the session starts encrypted
    # USER/PASS and SASL PLAIN without TLS: only for a loopback development listener.
    allow_plaintext_auth: bool = False
    apop: bool = False  # RFC 1939 §7 APOP needs the clear password on the server: off by default
    implementation: str | None = "postbote"
    expire: str | None = None  # RFC 2449 §6.7: "NEVER" or a number of days
    login_delay: int | None = None  # RFC 2449 §6.5: seconds
    # RFC 2449 §4: a command line is at most 255 octets including CRLF.
    max_command_line: int = 255
    # RFC 4616: PLAIN carries three strings of up to 255 octets, about 1 KB in base64, so
    # AUTH lines and SASL responses get their own bound (RFC 5034 §4 leaves them open).
    max_sasl_line: int = 2048
    # RFC 1939 §3: arguments are at most 40 characters. Applied to message numbers, line
    # counts and mechanism names; user names and passwords are held only to the line bound,
    # since real addresses and passphrases are longer than 40 characters.
    max_argument: int = 40

    def __post_init__(self) -> None:
        if self.max_command_line < 47:
            raise ValueError(
                f"pop3.max_command_line must be at least 47 (RFC 1939 §3), "
                f"got {self.max_command_line}"
            )
        if self.max_sasl_line < self.max_command_line:
            raise ValueError(
                f"pop3.max_sasl_line must be at least pop3.max_command_line "
                f"({self.max_command_line}), got {self.max_sasl_line}"
            )
        if self.max_argument < 1:
            raise ValueError(f"pop3.max_argument must be positive, got {self.max_argument}")
        if self.expire is not None and not (self.expire == "NEVER" or self.expire.isdigit()):
            raise ValueError(
                f'pop3.expire must be "NEVER" or a number of days, got {self.expire!r}'
            )
        if self.login_delay is not None and self.login_delay < 0:
            raise ValueError(f"pop3.login_delay must be 0 or more seconds, got {self.login_delay}")


# --- replies (adapter → core) --------------------------------------------------------------


@dataclass(frozen=True)
class Ok:
    """A positive single-line reply: ``+OK text``."""

    text: str = ""


@dataclass(frozen=True)
class Err:
    """A negative reply, optionally with an RFC 2449 / RFC 3206 response code."""

    text: str = ""
    code: str | None = None


Reply = Ok | Err


def format_reply(reply: Reply) -> bytes:
    """One status line. Control characters in the text become spaces, so no reply text
    (which may carry a user name or a store error) can inject a second line."""
    if isinstance(reply, Ok):
        head = "+OK"
    else:
        head = "-ERR"
        if reply.code is not None:
            head += f" [{check_code(reply.code, 'POP3')}]"
    text = reply.text.translate(_TEXT_SANITIZER)
    line = f"{head} {text}" if text else head
    return line.encode("utf-8") + CRLF


_TEXT_SANITIZER = {c: " " for c in list(range(0x20)) + [0x7F]}


# --- events (core → adapter) ---------------------------------------------------------------


@dataclass(frozen=True)
class Answered:
    """The core answered a command itself; write ``data`` as it is. ``ok`` lets the adapter
    count errors (e.g. to drop a client that only sends garbage)."""

    data: bytes
    ok: bool


@dataclass(frozen=True)
class AuthCredentials:
    """USER/PASS or AUTH PLAIN finished: check them, open the maildrop, then answer with
    ``maildrop_opened()`` or ``auth_failed()``. One event for both ways in, so the adapter
    has one path. ``mechanism`` is "USER" or "PLAIN", for logs."""

    authzid: str
    user: str
    password: str = field(repr=False)
    mechanism: str = "PLAIN"


@dataclass(frozen=True)
class ApopCredentials:
    """RFC 1939 §7 APOP: ``digest`` is MD5(challenge + password) in lowercase hex."""

    user: str
    digest: str
    challenge: str


@dataclass(frozen=True)
class StartTls:
    """RFC 2595 §4 STLS: answer ``send(Ok(...))``, do the handshake, call ``tls_established()``."""


@dataclass(frozen=True)
class Retr:
    """Send message ``n`` (1-based, not deleted, ``size`` octets): ``send_message(data)``."""

    n: int
    size: int


@dataclass(frozen=True)
class Top:
    """RFC 1939 §7 TOP: send the header and the first ``lines`` body lines of message ``n``."""

    n: int
    lines: int


@dataclass(frozen=True)
class Quit:
    """QUIT. With ``update`` (RFC 1939 §6, from TRANSACTION) expunge ``deleted`` atomically,
    then answer ``Ok`` or ``Err(code="SYS/TEMP")``; without, just answer and close."""

    deleted: frozenset[int]
    update: bool


@dataclass(frozen=True)
class ConnectionClosed:
    """The client closed its side without QUIT: RFC 1939 §6, no UPDATE, delete nothing."""


Event = (
    Answered | AuthCredentials | ApopCredentials | StartTls | Retr | Top | Quit | ConnectionClosed
)


# --- multi-line bodies ---------------------------------------------------------------------


class DotStuffer:
    """RFC 1939 §3 byte-stuffing for a multi-line body that arrives in chunks of any size.

    Lines starting with "." get one more "."; the body is made to end with CRLF before the
    terminating ".\\r\\n". The store keeps CRLF; a bare LF is still sent as CRLF so no client
    can mistake it for a line end we did not stuff. A CR at the end of a chunk is held back
    until the next one shows whether it starts a CRLF split by the chunking."""

    def __init__(self) -> None:
        self._line_start = True
        self._held_cr = False

    def feed(self, data: bytes) -> bytes:
        if self._held_cr:
            data = b"\r" + data
            self._held_cr = False
        if data.endswith(b"\r"):
            data = data[:-1]
            self._held_cr = True
        if not data:
            return b""
        if b"\n" in data:
            data = data.replace(CRLF, b"\n").replace(b"\n", CRLF).replace(b"\n.", b"\n..")
        if self._line_start and data.startswith(b"."):
            data = b"." + data
        self._line_start = data.endswith(b"\n")
        return data

    def end(self) -> bytes:
        """The terminator, preceded by a CRLF if the body did not end with one."""
        unfinished = self._held_cr or not self._line_start
        self._held_cr = False
        self._line_start = True
        return (CRLF if unfinished else b"") + TERMINATOR


def stuff(data: bytes) -> bytes:
    """A whole multi-line body, stuffed and terminated."""
    stuffer = DotStuffer()
    return stuffer.feed(data) + stuffer.end()


def top_bytes(message: bytes, lines: int) -> bytes:
    """RFC 1939 §7 TOP: the header, the blank line after it, and ``lines`` body lines.
    A message without a blank line is all header."""
    pos = 0
    while True:
        nl = message.find(b"\n", pos)
        if nl == -1:
            return message
        blank = nl == pos or (nl == pos + 1 and message[pos] == 0x0D)
        pos = nl + 1
        if blank:
            break
    if lines >= message.count(b"\n", pos) + 1:
        return message
    for _ in range(lines):
        pos = message.index(b"\n", pos) + 1
    return message[:pos]


# --- the core ------------------------------------------------------------------------------


_Refuse = Refusal  # raised inside a command handler to answer -ERR; never leaves the core
_OVERLONG = None  # a queued line that broke the length bound while arriving
_Handler = Callable[["Pop3Core", bytes], Event]
_BEFORE_LOGIN = frozenset({Pop3State.AUTHORIZATION})
_AFTER_LOGIN = frozenset({Pop3State.TRANSACTION})
_ANY_STATE = _BEFORE_LOGIN | _AFTER_LOGIN


class Pop3Core(LineCoreBase[Event]):
    """One POP3 session, from greeting to QUIT."""

    usage_error = Pop3UsageError

    def __init__(self, config: Pop3Config | None = None) -> None:
        self._config = config or Pop3Config()
        super().__init__(self._config.tls_active)
        self._state = Pop3State.AUTHORIZATION
        self._challenge: str | None = None
        self._user: str | None = None  # after USER, before PASS
        self._in_sasl = False  # after "AUTH PLAIN" and "+ ": the next line is a SASL response
        self._sizes: tuple[int, ...] = ()
        self._uids: tuple[str, ...] = ()
        self._deleted: set[int] = set()
        self._lines: deque[bytes | None] = deque()
        self._tail = bytearray()
        self._skipping = False  # inside an overlong line, dropping bytes up to its LF
        self._hard_limit = max(self._config.max_command_line, self._config.max_sasl_line)

    # -- what the adapter may look at

    @property
    def state(self) -> Pop3State:
        return self._state

    @property
    def buffered(self) -> int:
        """Octets received but not yet turned into events: for the adapter's flow control."""
        return len(self._tail) + sum(len(line) for line in self._lines if line is not None)

    # -- input

    def greeting(self, challenge: str | None = None) -> bytes:
        """The banner. ``challenge`` is the APOP timestamp ("<pid.clock@host>"): the adapter
        makes it, since the core has no clock; without one APOP is refused."""
        if challenge is not None and not _CHALLENGE_SYNTAX.fullmatch(challenge):
            raise ValueError(f'APOP challenge must look like "<unique@host>", got {challenge!r}')
        text = f"{self._config.hostname} POP3 server ready"
        if self._config.apop and challenge is not None:
            self._challenge = challenge
            text += f" {challenge}"
        return format_reply(Ok(text))

    def _ended(self) -> bool:
        return self._state is Pop3State.CLOSED

    def _take(self, data: bytes) -> None:
        self._tail += data
        self._split_lines()

    def _split_lines(self) -> None:
        """Queue complete lines; an overlong line is refused as soon as it breaks the bound
        and the rest of it is dropped as it arrives, so it is never held in memory."""
        tail = self._tail
        while tail:
            nl = tail.find(b"\n")
            if self._skipping:
                if nl == -1:
                    tail.clear()
                    return
                del tail[: nl + 1]
                self._skipping = False
                continue
            if nl == -1:
                if len(tail) >= self._hard_limit:
                    self._lines.append(_OVERLONG)
                    tail.clear()
                    self._skipping = True
                return
            self._lines.append(bytes(tail[: nl + 1]) if nl < self._hard_limit else _OVERLONG)
            del tail[: nl + 1]

    # -- output

    def next_event(self) -> Event | None:
        if self._pending is not None or self._state is Pop3State.CLOSED:
            return None
        if self._tls_wait and not self._eof:
            return None
        if self._lines and not self._tls_wait:
            return self._handle(self._lines.popleft())
        if self._eof:
            self._close()
            return ConnectionClosed()
        return None

    def send(self, reply: Reply) -> bytes:
        """Answer the pending StartTls, Retr, Top or Quit (or refuse credentials)."""
        event = self._take_pending()
        if isinstance(event, (AuthCredentials, ApopCredentials)):
            if isinstance(reply, Ok):
                self._pending = event
                raise Pop3UsageError("answer credentials with maildrop_opened() or auth_failed()")
            return format_reply(reply)
        if isinstance(event, StartTls) and isinstance(reply, Ok):
            self._tls_wait = True
        if isinstance(event, Quit):
            self._close()
        return format_reply(reply)

    def send_message(self, message: bytes, text: str | None = None) -> bytes:
        """Answer the pending Retr or Top with the whole message (cut for TOP), stuffed and
        terminated. For a large message use ``send(Ok(...))`` and a ``DotStuffer`` instead."""
        event = self._take_pending()
        if isinstance(event, Retr):
            body = message
            status = Ok(f"{event.size} octets" if text is None else text)
        elif isinstance(event, Top):
            body = top_bytes(message, event.lines)
            status = Ok("top of message follows" if text is None else text)
        else:
            self._pending = event
            raise Pop3UsageError(f"send_message() answers Retr or Top, not {event!r}")
        return format_reply(status) + stuff(body)

    def maildrop_opened(
        self, sizes: Sequence[int], uids: Sequence[str], text: str | None = None
    ) -> bytes:
        """Credentials accepted and the maildrop locked: enter TRANSACTION. ``sizes`` are the
        octet sizes of messages 1..n and ``uids`` their RFC 1939 §7 unique ids."""
        event = self._pending
        if not isinstance(event, (AuthCredentials, ApopCredentials)):
            raise Pop3UsageError(f"maildrop_opened() answers credentials, not {event!r}")
        self._sizes, self._uids = _checked_maildrop(sizes, uids)
        self._pending = None
        self._deleted = set()
        self._state = Pop3State.TRANSACTION
        return format_reply(Ok(self._summary() if text is None else text))

    def auth_failed(self, code: str | None = "AUTH", text: str | None = None) -> bytes:
        """Refuse credentials, with a response code (RFC 2449 §8, RFC 3206) the client can
        act on: "AUTH", "IN-USE", "LOGIN-DELAY", "SYS/TEMP", "SYS/PERM"."""
        event = self._pending
        if not isinstance(event, (AuthCredentials, ApopCredentials)):
            raise Pop3UsageError(f"auth_failed() answers credentials, not {event!r}")
        self._pending = None
        default = _AUTH_FAILURE_TEXT.get(code, "authentication failed")
        return format_reply(Err(default if text is None else text, code))

    def tls_established(self) -> None:
        """The handshake after STLS succeeded. Whatever arrived after the STLS line was sent
        in plaintext and is discarded (RFC 2595 §4), and so is a USER given before it."""
        if not self._tls_wait:
            raise Pop3UsageError("tls_established() without an accepted STLS")
        self._tls_wait = False
        self._tls_active = True
        self._lines.clear()
        self._tail.clear()
        self._skipping = False
        self._user = None

    def _close(self) -> None:
        self._state = Pop3State.CLOSED
        self._lines.clear()
        self._tail.clear()

    # -- one line in, one event out

    def _handle(self, raw: bytes | None) -> Event:
        try:
            if self._in_sasl:
                self._in_sasl = False
                return self._sasl_response(raw)
            return self._command(raw)
        except Refusal as refusal:
            return Answered(format_reply(Err(refusal.text, refusal.code)), ok=False)

    def _command(self, raw: bytes | None) -> Event:
        limit = self._config.max_command_line
        if raw is None:
            raise _Refuse(f"line too long (at most {limit} octets)")
        line = strip_eol(raw)
        keyword, _, rest = line.partition(b" ")
        name = keyword.upper()
        if len(raw) > limit and not (name == b"AUTH" and len(raw) <= self._config.max_sasl_line):
            raise _Refuse(f"line too long (at most {limit} octets)")
        if not line:
            raise _Refuse("empty command")
        entry = _COMMANDS.get(name)
        if entry is None:
            shown = name.decode() if name.isalpha() and len(name) <= 10 else ""
            raise _Refuse(f"unknown command {shown}".rstrip())
        handler, states = entry
        if self._state not in states:
            when = "before" if states is _BEFORE_LOGIN else "after"
            raise _Refuse(f"{name.decode()} is only valid {when} login")
        return handler(self, rest)

    def _answer(self, text: str = "", body: Sequence[str] | None = None) -> Answered:
        data = format_reply(Ok(text))
        if body is not None:
            data += b"".join(line.encode() + CRLF for line in body) + TERMINATOR
        return Answered(data, ok=True)

    # -- argument parsing

    def _args(self, rest: bytes, low: int, high: int, usage: str) -> list[str]:
        if rest.translate(None, _CONTROLS) != rest:
            raise _Refuse("control characters are not allowed in arguments")
        parts = [part for part in rest.split(b" ") if part]
        if not low <= len(parts) <= high:
            raise _Refuse(f"usage: {usage}")
        try:
            return [part.decode("utf-8") for part in parts]
        except UnicodeDecodeError:
            raise _Refuse("arguments must be UTF-8") from None

    def _short(self, arg: str) -> str:
        if len(arg) > self._config.max_argument:
            raise _Refuse(f"argument too long (at most {self._config.max_argument} characters)")
        return arg

    def _number(self, arg: str, what: str) -> int:
        if not (self._short(arg).isascii() and arg.isdigit()):
            raise _Refuse(f'{what} must be a number, got "{arg}"')
        return int(arg)

    def _message(self, arg: str) -> int:
        n = self._number(arg, "message number")
        if not 1 <= n <= len(self._sizes):
            raise _Refuse(f"no such message, only {len(self._sizes)} messages in maildrop")
        if n in self._deleted:
            raise _Refuse(f"message {n} already deleted")
        return n

    def _live(self) -> list[int]:
        return [n for n in range(1, len(self._sizes) + 1) if n not in self._deleted]

    def _summary(self) -> str:
        live = self._live()
        octets = sum(self._sizes[n - 1] for n in live)
        return f"maildrop has {len(live)} messages ({octets} octets)"

    # -- AUTHORIZATION

    def _plaintext_allowed(self) -> bool:
        return self._tls_active or self._config.allow_plaintext_auth

    def _require_plaintext(self) -> None:
        if self._plaintext_allowed():
            return
        if self._config.tls_available:
            raise _Refuse("plaintext authentication needs TLS: use STLS first")
        raise _Refuse("plaintext authentication is disabled on this connection")

    def _cmd_user(self, rest: bytes) -> Event:
        (user,) = self._args(rest, 1, 1, "USER name")
        self._require_plaintext()
        self._user = user
        return self._answer("send PASS")

    def _cmd_pass(self, rest: bytes) -> Event:
        # RFC 1939 §7: the rest of the line is the password, spaces included.
        if self._user is None:
            raise _Refuse("send USER first")
        self._require_plaintext()
        try:
            password = rest.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refuse("password must be UTF-8") from None
        if not password or any(c in password for c in "\0\r\n"):
            raise _Refuse("usage: PASS password")
        user, self._user = self._user, None
        return self._set_pending(AuthCredentials("", user, password, "USER"))

    def _cmd_apop(self, rest: bytes) -> Event:
        if self._challenge is None:
            raise _Refuse("APOP is not available, use USER/PASS or AUTH")
        user, digest = self._args(rest, 2, 2, "APOP name digest")
        if not _HEX_DIGEST.fullmatch(digest):
            raise _Refuse("APOP digest must be 32 hexadecimal digits")
        self._user = None
        return self._set_pending(ApopCredentials(user, digest.lower(), self._challenge))

    def _mechanisms(self) -> list[str]:
        return ["PLAIN"] if self._plaintext_allowed() else []

    def _cmd_auth(self, rest: bytes) -> Event:
        args = self._args(rest, 0, 2, "AUTH [mechanism [initial-response]]")
        if not args:
            return self._answer("SASL mechanisms follow", self._mechanisms())
        mechanism = self._short(args[0]).upper()
        if mechanism != "PLAIN":
            raise _Refuse(f"unsupported SASL mechanism {mechanism}, use PLAIN")
        self._require_plaintext()
        self._user = None
        if len(args) == 1:
            self._in_sasl = True
            return Answered(b"+ " + CRLF, ok=True)  # RFC 5034 §4: empty PLAIN challenge
        # RFC 5034 §4: "=" is a zero-length initial response.
        initial = "" if args[1] == "=" else args[1]
        return self._set_pending(_plain(initial.encode("ascii", "replace")))

    def _sasl_response(self, raw: bytes | None) -> Event:
        if raw is None:
            raise _Refuse(f"SASL response too long (at most {self._config.max_sasl_line} octets)")
        line = strip_eol(raw)
        if line == b"*":
            raise _Refuse("authentication cancelled")  # RFC 5034 §4
        return self._set_pending(_plain(line))

    def _cmd_stls(self, rest: bytes) -> Event:
        self._args(rest, 0, 0, "STLS")
        if self._tls_active:
            raise _Refuse("TLS is already active")
        if not self._config.tls_available:
            raise _Refuse("STLS is not available on this server")
        return self._set_pending(StartTls())

    def _cmd_capa(self, rest: bytes) -> Event:
        self._args(rest, 0, 0, "CAPA")
        return self._answer("capability list follows", self._capabilities())

    def _capabilities(self) -> list[str]:
        # RFC 2449 §5: the same list in both states, so a client can cache it until STLS.
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self._plaintext_allowed():
            caps += ["USER", "SASL " + " ".join(self._mechanisms())]
        if self._config.tls_available and not self._tls_active:
            caps.append("STLS")
        if self._config.expire is not None:
            caps.append(f"EXPIRE {self._config.expire}")
        if self._config.login_delay is not None:
            caps.append(f"LOGIN-DELAY {self._config.login_delay}")
        if self._config.implementation:
            caps.append(f"IMPLEMENTATION {self._config.implementation}")
        return caps

    def _cmd_quit(self, rest: bytes) -> Event:
        self._args(rest, 0, 0, "QUIT")
        if self._state is Pop3State.TRANSACTION:
            self._state = Pop3State.UPDATE
            return self._set_pending(Quit(frozenset(self._deleted), update=True))
        return self._set_pending(Quit(frozenset(), update=False))

    # -- TRANSACTION

    def _cmd_stat(self, rest: bytes) -> Event:
        self._args(rest, 0, 0, "STAT")
        live = self._live()
        return self._answer(f"{len(live)} {sum(self._sizes[n - 1] for n in live)}")

    def _cmd_list(self, rest: bytes) -> Event:
        args = self._args(rest, 0, 1, "LIST [message]")
        if args:
            n = self._message(args[0])
            return self._answer(f"{n} {self._sizes[n - 1]}")
        return self._answer(self._summary(), [f"{n} {self._sizes[n - 1]}" for n in self._live()])

    def _cmd_uidl(self, rest: bytes) -> Event:
        args = self._args(rest, 0, 1, "UIDL [message]")
        if args:
            n = self._message(args[0])
            return self._answer(f"{n} {self._uids[n - 1]}")
        listing = [f"{n} {self._uids[n - 1]}" for n in self._live()]
        return self._answer("unique-id listing follows", listing)

    def _cmd_retr(self, rest: bytes) -> Event:
        (arg,) = self._args(rest, 1, 1, "RETR message")
        n = self._message(arg)
        return self._set_pending(Retr(n, self._sizes[n - 1]))

    def _cmd_top(self, rest: bytes) -> Event:
        message, lines = self._args(rest, 2, 2, "TOP message lines")
        n = self._message(message)
        return self._set_pending(Top(n, self._number(lines, "line count")))

    def _cmd_dele(self, rest: bytes) -> Event:
        (arg,) = self._args(rest, 1, 1, "DELE message")
        n = self._message(arg)
        self._deleted.add(n)
        return self._answer(f"message {n} deleted")

    def _cmd_noop(self, rest: bytes) -> Event:
        self._args(rest, 0, 0, "NOOP")
        return self._answer()

    def _cmd_rset(self, rest: bytes) -> Event:
        self._args(rest, 0, 0, "RSET")
        self._deleted.clear()
        return self._answer(self._summary())


_COMMANDS: dict[bytes, tuple[_Handler, frozenset[Pop3State]]] = {
    b"USER": (Pop3Core._cmd_user, _BEFORE_LOGIN),
    b"PASS": (Pop3Core._cmd_pass, _BEFORE_LOGIN),
    b"APOP": (Pop3Core._cmd_apop, _BEFORE_LOGIN),
    b"AUTH": (Pop3Core._cmd_auth, _BEFORE_LOGIN),
    b"STLS": (Pop3Core._cmd_stls, _BEFORE_LOGIN),
    b"CAPA": (Pop3Core._cmd_capa, _ANY_STATE),
    b"QUIT": (Pop3Core._cmd_quit, _ANY_STATE),
    b"STAT": (Pop3Core._cmd_stat, _AFTER_LOGIN),
    b"LIST": (Pop3Core._cmd_list, _AFTER_LOGIN),
    b"UIDL": (Pop3Core._cmd_uidl, _AFTER_LOGIN),
    b"RETR": (Pop3Core._cmd_retr, _AFTER_LOGIN),
    b"TOP": (Pop3Core._cmd_top, _AFTER_LOGIN),
    b"DELE": (Pop3Core._cmd_dele, _AFTER_LOGIN),
    b"NOOP": (Pop3Core._cmd_noop, _AFTER_LOGIN),
    b"RSET": (Pop3Core._cmd_rset, _AFTER_LOGIN),
}


def _plain(response: bytes) -> AuthCredentials:
    return AuthCredentials(*decode_plain(response), "PLAIN")


def _checked_maildrop(
    sizes: Sequence[int], uids: Sequence[str]
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    if len(sizes) != len(uids):
        raise ValueError(f"maildrop has {len(sizes)} sizes but {len(uids)} unique ids")
    if any(size < 0 for size in sizes):
        raise ValueError("message sizes must not be negative")
    bad = next((uid for uid in uids if not _UID_SYNTAX.fullmatch(uid)), None)
    if bad is not None:
        raise ValueError(f"unique id must be 1-70 characters 0x21-0x7E (RFC 1939 §7), got {bad!r}")
    if len(set(uids)) != len(uids):
        raise ValueError("unique ids must be unique within the maildrop")
    return tuple(sizes), tuple(uids)
