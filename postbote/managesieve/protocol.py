"""Sans-I/O ManageSieve server core (RFC 5804).

ManageSieve looks like IMAP without tags: a command is an atom followed by strings (quoted or
literal) and numbers, and every answer ends with ``OK``, ``NO`` or ``BYE``. The core owns the
grammar, the states and every rule it can check alone (script names, sizes, which command is
allowed when); it hands the adapter only what needs the outside world (credentials, the
store, the Sieve parser, a TLS handshake) and waits for the answer before reading the next
pipelined command, because that answer can change the state the next one is read in.

    core = SieveCore(config)
    transport.write(core.greeting())
    core.receive(data)
    for event in core.events():
        match event:
            case Answered(data=data): transport.write(data)
            case GetScript(name=name): transport.write(core.send_script(await load(name)))
            ...

No sockets, no asyncio, no clock, no store: bad input is answered with ``NO`` (or ``BYE``) and
never raises. Misuse by the adapter (answering when nothing is pending) raises
``SieveUsageError``.
"""

from __future__ import annotations

import re
import unicodedata
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable

from postbote.linecore import LineCoreBase, Refusal, check_code, decode_plain, strip_eol

CRLF = b"\r\n"

# RFC 5804 §4: quoted strings are at most 1024 octets between the quotes.
MAX_QUOTED = 1024
# RFC 5804 §4: number = 1*DIGIT, below 2^32.
MAX_NUMBER = 2**32 - 1
# RFC 5804 §1.6: a server must accept script names of at least 128 characters; longer ones
# are refused, which keeps names short enough for every client to show.
MAX_NAME_CHARS = 128

_ATOM = re.compile(rb"[!#-'*-\[\]-z|-~]+")  # RFC 5804 §4 ATOM-CHAR, without "{", SP, DQUOTE
_LITERAL = re.compile(rb"\{(\d{1,10})(\+?)\}")
_LITERAL_TAIL = re.compile(rb"\{(\d{1,10})\+?\}\r?$")
# RFC 5804 §1.6: no control characters (C0, DEL, C1), no line or paragraph separator.
_BAD_NAME_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class SieveUsageError(RuntimeError):
    """The adapter called the core out of turn: a programming error, never bad input."""


class SieveState(Enum):
    """RFC 5804 §1.3 session states, plus LOGOUT once the session has ended."""

    NON_AUTHENTICATED = "non-authenticated"
    AUTHENTICATED = "authenticated"
    LOGOUT = "logout"


@dataclass(frozen=True)
class SieveConfig:
    """What the core needs to know about its listener; every field has a safe default."""

    hostname: str = "localhost"
    tls_available: bool = False  # a certificate is loaded, so STARTTLS can be offered
    tls_active: bool = False  # the session is already encrypted
    # AUTHENTICATE PLAIN without TLS: only for a loopback development listener.
    allow_plaintext_auth: bool = False
    implementation: str = "postbote"
    sieve_extensions: tuple[str, ...] = ()
    max_redirects: int | None = None
    max_script_size: int = 1024 * 1024
    # Non-literal octets of one command, CRLFs included.
    max_line: int = 4096
    # Literals that are not a script (names, SASL responses, NOOP tags).
    max_string: int = 8192

    def __post_init__(self) -> None:
        if self.max_line < 128:
            raise ValueError(f"managesieve line limit must be at least 128, got {self.max_line}")
        if self.max_script_size < 1:
            raise ValueError(f"managesieve script size limit must be positive, got {self.max_script_size}")
        if self.max_string < MAX_QUOTED:
            raise ValueError(f"managesieve string limit must be at least {MAX_QUOTED}, got {self.max_string}")


# --- responses (adapter → core) --------------------------------------------------------------


@dataclass(frozen=True)
class Ok:
    """``OK [(code)] ["text"]``."""

    text: str = ""
    code: str | None = None
    code_arg: str | None = None  # the string after TAG or SASL


@dataclass(frozen=True)
class No:
    """``NO [(code)] ["text"]``: the command failed, the session goes on."""

    text: str = ""
    code: str | None = None
    code_arg: str | None = None


@dataclass(frozen=True)
class Bye:
    """``BYE [(code)] ["text"]``: the server closes the connection."""

    text: str = ""
    code: str | None = None
    code_arg: str | None = None


Response = Ok | No | Bye


def quote(value: str | bytes) -> bytes:
    """RFC 5804 §4 string for the server's side: quoted when it may be, else a literal
    (``{n}`` without "+", the only form a server sends)."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    if len(data) <= MAX_QUOTED and not any(c in data for c in b"\r\n\0"):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(data) + data


def format_response(response: Response) -> bytes:
    """RFC 5804 §4 response-oknobye: ``OK|NO|BYE [SP "(" code ")"] [SP string] CRLF``."""
    head = {Ok: b"OK", No: b"NO", Bye: b"BYE"}[type(response)]
    if response.code is not None:
        code = check_code(response.code, "ManageSieve").encode()
        if response.code_arg is not None:
            code += b" " + quote(response.code_arg)
        head += b" (" + code + b")"
    if response.text:
        head += b" " + quote(response.text)
    return head + CRLF


# --- events (core → adapter) ---------------------------------------------------------------


@dataclass(frozen=True)
class Answered:
    """The core answered a command itself; write ``data`` as it is. ``ok`` lets the adapter
    count errors (to drop a client that only sends garbage); ``close``: end the session."""

    data: bytes
    ok: bool
    close: bool = False


@dataclass(frozen=True)
class Authenticate:
    """AUTHENTICATE PLAIN finished: check the credentials, then answer ``authenticated()``
    or ``send(No(...))``."""

    authzid: str
    user: str
    password: str = field(repr=False)
    mechanism: str = "PLAIN"


@dataclass(frozen=True)
class StartTls:
    """RFC 5804 §2.2: answer ``send(Ok(...))``, do the handshake, write ``tls_established()``."""


@dataclass(frozen=True)
class Logout:
    """RFC 5804 §2.3: answer ``send(Ok(...))``; the core then ends the session."""


@dataclass(frozen=True)
class Unauthenticate:
    """RFC 5804 §2.14: forget the login, answer ``send(Ok())``."""


@dataclass(frozen=True)
class HaveSpace:
    """RFC 5804 §2.5: could a script ``name`` of ``size`` octets be stored? The core already
    refused sizes above the limit."""

    name: str
    size: int


@dataclass(frozen=True)
class PutScript:
    """RFC 5804 §2.6: check ``script`` (UTF-8 text), store it under ``name``, answer."""

    name: str
    script: str


@dataclass(frozen=True)
class CheckScript:
    """RFC 5804 §2.12: check ``script`` without storing it."""

    script: str


@dataclass(frozen=True)
class ListScripts:
    """RFC 5804 §2.7: answer ``send_listing(...)``."""


@dataclass(frozen=True)
class SetActive:
    """RFC 5804 §2.8: ``name`` becomes the active script; None deactivates all."""

    name: str | None


@dataclass(frozen=True)
class GetScript:
    """RFC 5804 §2.9: answer ``send_script(text)`` or ``send(No(code="NONEXISTENT"))``."""

    name: str


@dataclass(frozen=True)
class DeleteScript:
    """RFC 5804 §2.10: remove ``name``; refuse the active one with (ACTIVE)."""

    name: str


@dataclass(frozen=True)
class RenameScript:
    """RFC 5804 §2.11: rename ``old`` to ``new``; activeness moves along."""

    old: str
    new: str


@dataclass(frozen=True)
class ConnectionClosed:
    """The client closed its side without LOGOUT."""


Event = (
    Answered | Authenticate | StartTls | Logout | Unauthenticate | HaveSpace | PutScript
    | CheckScript | ListScripts | SetActive | GetScript | DeleteScript | RenameScript
    | ConnectionClosed
)


# --- the grammar ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Atom:
    """A bare word (command names, numbers)."""

    text: str


Token = Atom | bytes  # bytes: a string, quoted or literal


class _Refuse(Refusal):
    """Raised inside the core to answer NO (or BYE); never leaves the core."""

    def __init__(self, text: str, code: str | None = None, bye: bool = False) -> None:
        super().__init__(text, code)
        self.response: Response = Bye(text, code) if bye else No(text, code)


@dataclass
class _Bad:
    """A command that broke the grammar or a bound; it is answered once it has fully arrived
    (its literals skipped), so the octets after it are read as the next command."""

    text: str
    code: str | None = None


def tokenize(segment: bytes) -> tuple[list[Token], tuple[int, bool] | None]:
    """Split one line (without its line end) into tokens. A literal marker may only come
    last: it is returned as (size, non-synchronizing) and its octets follow the line."""
    tokens: list[Token] = []
    pos, end = 0, len(segment)
    while pos < end:
        if tokens or pos:
            if segment[pos:pos + 1] != b" ":
                raise _Refuse("expected a space between arguments")
            pos += 1
            if pos == end:
                raise _Refuse("trailing space")
        char = segment[pos:pos + 1]
        if char == b'"':
            value, pos = _quoted(segment, pos)
            tokens.append(value)
        elif char == b"{":
            match = _LITERAL.match(segment, pos)
            if match is None or match.end() != end:
                raise _Refuse("a literal is {size} or {size+} at the end of a line")
            return tokens, (int(match[1]), match[2] == b"+")
        else:
            match = _ATOM.match(segment, pos)
            if match is None:
                raise _Refuse("unexpected character in command")
            tokens.append(Atom(match[0].decode("ascii")))
            pos = match.end()
    return tokens, None


def _quoted(segment: bytes, pos: int) -> tuple[bytes, int]:
    """RFC 5804 §4 quoted: DQUOTE *QUOTED-CHAR DQUOTE, where only DQUOTE and backslash may
    be escaped, and no CR, LF or NUL may appear."""
    out = bytearray()
    pos += 1
    while pos < len(segment):
        c = segment[pos]
        if c == 0x22:
            if len(out) > MAX_QUOTED:
                raise _Refuse(f"quoted string longer than {MAX_QUOTED} octets, use a literal")
            return bytes(out), pos + 1
        if c == 0x5C:
            nxt = segment[pos + 1:pos + 2]
            if nxt not in (b'"', b"\\"):
                raise _Refuse('only \\" and \\\\ may be escaped in a quoted string')
            out += nxt
            pos += 2
            continue
        if c in (0x00, 0x0D):
            raise _Refuse("control characters are not allowed in a quoted string")
        out.append(c)
        pos += 1
    raise _Refuse("unterminated quoted string")


# --- the core ------------------------------------------------------------------------------

_Handler = Callable[["SieveCore", list[Token]], Event]
_BEFORE_LOGIN = frozenset({SieveState.NON_AUTHENTICATED})
_AFTER_LOGIN = frozenset({SieveState.AUTHENTICATED})
_ANY_STATE = _BEFORE_LOGIN | _AFTER_LOGIN
# Commands whose literal at this token index (the command name is 0) is a Sieve script.
_SCRIPT_ARGUMENT = {"PUTSCRIPT": 2, "CHECKSCRIPT": 1}


class SieveCore(LineCoreBase[Event]):
    """One ManageSieve session, from greeting to LOGOUT."""

    usage_error = SieveUsageError

    def __init__(self, config: SieveConfig | None = None) -> None:
        self._config = config or SieveConfig()
        super().__init__(self._config.tls_active)
        self._state = SieveState.NON_AUTHENTICATED
        self._owner: str | None = None
        self._in_sasl = False  # after the empty PLAIN challenge: the next line is a response
        self._buf = bytearray()
        self._commands: deque[list[Token] | _Bad] = deque()
        # The command being read: its tokens, the non-literal octets so far, a literal in flight.
        self._tokens: list[Token] = []
        self._line_used = 0
        self._literal_left = 0
        self._literal = bytearray()
        self._bad: _Bad | None = None  # set: the rest of this command is dropped as it arrives
        self._skip_tail = b""  # the end of a dropped line, to see whether a literal follows

    # -- what the adapter may look at

    @property
    def state(self) -> SieveState:
        return self._state

    @property
    def buffered(self) -> int:
        """Octets held but not yet turned into events: for the adapter's flow control."""
        return len(self._buf) + len(self._literal) + sum(
            len(t) for t in self._tokens if isinstance(t, bytes))

    # -- input

    def greeting(self) -> bytes:
        """RFC 5804 §1.7: the server starts by sending its capabilities and OK."""
        return self._capability_lines() + format_response(Ok(f"{self._config.hostname} ManageSieve ready"))

    def _ended(self) -> bool:
        return self._state is SieveState.LOGOUT

    def _take(self, data: bytes) -> None:
        self._buf += data
        self._parse()

    def _parse(self) -> None:
        """Turn buffered octets into whole commands. Literal octets go straight to their
        token; a line or literal over its bound is dropped as it arrives, never held."""
        buf = self._buf
        while buf:
            if self._literal_left:
                take = min(len(buf), self._literal_left)
                if self._bad is None:
                    self._literal += buf[:take]
                del buf[:take]
                self._literal_left -= take
                if not self._literal_left:
                    self._tokens.append(bytes(self._literal))
                    self._literal.clear()
                continue
            nl = buf.find(b"\n")
            if nl == -1:
                if self._bad is not None:
                    self._skip_tail = (self._skip_tail + bytes(buf))[-16:]
                    buf.clear()
                elif self._line_used + len(buf) > self._config.max_line:
                    self._start_skipping(_Bad(f"line too long (at most {self._config.max_line} octets)"))
                return
            segment = bytes(buf[:nl + 1])
            del buf[:nl + 1]
            self._segment(segment)

    def _start_skipping(self, bad: _Bad) -> None:
        self._bad = bad
        self._skip_tail = (self._skip_tail + bytes(self._buf))[-16:]
        self._buf.clear()
        self._tokens = []
        self._literal.clear()

    def _segment(self, segment: bytes) -> None:
        """One line of a command: up to its end, or up to a literal whose octets follow."""
        if self._bad is not None:
            self._skip(segment)
            return
        self._line_used += len(segment)
        if self._line_used > self._config.max_line:
            self._bad = _Bad(f"line too long (at most {self._config.max_line} octets)")
            self._tokens = []
            self._skip(segment)
            return
        line = strip_eol(segment)
        continued = bool(self._tokens) or self._line_used > len(segment)
        if continued:
            if line and not line.startswith(b" "):
                self._fail(_Bad("expected a space after a literal"), segment)
                return
            line = line[1:] if line else line
        try:
            tokens, literal = tokenize(line)
        except _Refuse as refusal:
            self._fail(_Bad(refusal.response.text), segment)
            return
        if continued and line == b"" and segment.startswith(b" "):
            self._fail(_Bad("trailing space"), segment)
            return
        self._tokens += tokens
        if literal is None:
            self._finish(self._tokens)
            return
        self._open_literal(*literal)

    def _open_literal(self, size: int, non_sync: bool) -> None:
        # RFC 5804 §4 lets clients send only "{n+}"; "{n}" is read the same way, since
        # ManageSieve has no continuation request to wait for (as Dovecot and Cyrus do).
        limit, code = self._config.max_string, None
        command = self._tokens[0].text.upper() if self._tokens and isinstance(self._tokens[0], Atom) else ""
        if _SCRIPT_ARGUMENT.get(command) == len(self._tokens) and not self._in_sasl:
            limit, code = self._config.max_script_size, "QUOTA/MAXSIZE"
        if size > limit:
            what = "script" if code else "string"
            self._bad = _Bad(f"{what} too big: {size} octets, at most {limit}", code)
            self._tokens = []
        self._literal_left = size
        if size == 0:
            self._tokens.append(b"")

    def _fail(self, bad: _Bad, segment: bytes) -> None:
        self._bad = bad
        self._tokens = []
        self._skip(segment)

    def _skip(self, segment: bytes) -> None:
        """Drop a line of a bad command; if it ends with a literal marker, drop the literal
        too, so its octets are not read as commands."""
        tail = strip_eol(self._skip_tail + segment)
        self._skip_tail = b""
        match = _LITERAL_TAIL.search(tail)
        if match is not None:
            self._literal_left = int(match[1])
            return
        bad, self._bad = self._bad, None
        assert bad is not None
        self._finish(bad)

    def _finish(self, command: list[Token] | _Bad) -> None:
        self._commands.append(command)
        self._tokens = []
        self._line_used = 0

    # -- output

    def next_event(self) -> Event | None:
        if self._pending is not None or self._tls_wait or self._state is SieveState.LOGOUT:
            return None
        if self._commands:
            return self._handle(self._commands.popleft())
        if self._eof:
            self._close()
            return ConnectionClosed()
        return None

    def send(self, response: Response) -> bytes:
        """Answer the pending event with one response line."""
        event = self._take_pending()
        if isinstance(response, Bye) or isinstance(event, Logout):
            self._close()
        elif isinstance(event, StartTls) and isinstance(response, Ok):
            self._tls_wait = True
            self._reset_input()
        elif isinstance(event, Unauthenticate) and isinstance(response, Ok):
            self._state = SieveState.NON_AUTHENTICATED
            self._owner = None
        return format_response(response)

    def authenticated(self, owner: str, text: str = "logged in") -> bytes:
        """The credentials were good: enter the authenticated state. ``owner`` is the
        account's canonical name (RFC 5804 §1.7 OWNER)."""
        event = self._take_pending()
        if not isinstance(event, Authenticate):
            self._pending = event
            raise SieveUsageError(f"authenticated() answers Authenticate, not {event!r}")
        self._state = SieveState.AUTHENTICATED
        self._owner = owner
        return format_response(Ok(text))

    def send_listing(self, scripts: Sequence[tuple[str, bool]]) -> bytes:
        """RFC 5804 §2.7: one line per script, ``"name" ACTIVE`` for the active one."""
        event = self._take_pending()
        if not isinstance(event, ListScripts):
            self._pending = event
            raise SieveUsageError(f"send_listing() answers ListScripts, not {event!r}")
        lines = [quote(name) + (b" ACTIVE" if active else b"") + CRLF for name, active in scripts]
        return b"".join(lines) + format_response(Ok("listscripts completed"))

    def send_script(self, script: str) -> bytes:
        """RFC 5804 §2.9: the script as a string (a literal unless it is tiny), then OK."""
        event = self._take_pending()
        if not isinstance(event, GetScript):
            self._pending = event
            raise SieveUsageError(f"send_script() answers GetScript, not {event!r}")
        data = script.encode("utf-8")
        return b"{%d}\r\n" % len(data) + data + CRLF + format_response(Ok("getscript completed"))

    def tls_established(self) -> bytes:
        """RFC 5804 §2.2: after the handshake the server sends its capabilities again (now
        with SASL mechanisms) and OK. Whatever came before the handshake is forgotten."""
        if not self._tls_wait:
            raise SieveUsageError("tls_established() without an accepted STARTTLS")
        self._tls_wait = False
        self._tls_active = True
        self._reset_input()
        return self._capability_lines() + format_response(Ok("TLS negotiation successful"))

    def _reset_input(self) -> None:
        self._buf.clear()
        self._commands.clear()
        self._tokens = []
        self._line_used = 0
        self._literal_left = 0
        self._literal.clear()
        self._bad = None
        self._skip_tail = b""

    def _close(self) -> None:
        self._state = SieveState.LOGOUT
        self._reset_input()

    # -- one command in, one event out

    def _handle(self, command: list[Token] | _Bad) -> Event:
        try:
            if isinstance(command, _Bad):
                if self._in_sasl:
                    self._in_sasl = False
                raise _Refuse(command.text, command.code)
            if self._in_sasl:
                self._in_sasl = False
                return self._sasl_response(command)
            return self._command(command)
        except Refusal as refusal:
            response = refusal.response if isinstance(refusal, _Refuse) else No(refusal.text, refusal.code)
            close = isinstance(response, Bye)
            if close:
                self._close()
            return Answered(format_response(response), ok=False, close=close)

    def _command(self, tokens: list[Token]) -> Event:
        if not tokens:
            raise _Refuse("empty command")
        name = tokens[0]
        if not isinstance(name, Atom):
            raise _Refuse("a command starts with its name")
        entry = _COMMANDS.get(name.text.upper())
        if entry is None:
            shown = name.text if name.text.isalpha() and len(name.text) <= 16 else ""
            raise _Refuse(f"unknown command {shown}".rstrip())
        handler, states = entry
        if self._state not in states:
            when = "before" if states is _BEFORE_LOGIN else "after"
            raise _Refuse(f"{name.text.upper()} is only valid {when} authentication")
        return handler(self, tokens[1:])

    def _ok(self, response: Response, body: bytes = b"") -> Answered:
        return Answered(body + format_response(response), ok=isinstance(response, Ok))

    # -- arguments

    def _args(self, args: list[Token], kinds: str, usage: str) -> list[Token]:
        """``kinds``: one letter per argument, "s" a string, "n" a number; "?" after the
        last makes it optional."""
        optional = kinds.endswith("?")
        kinds = kinds.rstrip("?")
        if not (len(kinds) - optional <= len(args) <= len(kinds)):
            raise _Refuse(f"usage: {usage}")
        for arg, kind in zip(args, kinds):
            if (kind == "s") != isinstance(arg, bytes):
                raise _Refuse(f"usage: {usage}")
        return args

    def _text(self, value: Token, what: str) -> str:
        assert isinstance(value, bytes)
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refuse(f"{what} must be UTF-8") from None

    def _name(self, value: Token) -> str:
        """RFC 5804 §1.6 script names: UTF-8 in NFC, no control characters, not empty."""
        name = unicodedata.normalize("NFC", self._text(value, "script name"))
        if not name:
            raise _Refuse("script name must not be empty")
        if _BAD_NAME_CHARS.search(name):
            raise _Refuse("script name must not contain control characters")
        if len(name) > MAX_NAME_CHARS:
            raise _Refuse(f"script name too long (at most {MAX_NAME_CHARS} characters)")
        return name

    def _number(self, value: Token) -> int:
        assert isinstance(value, Atom)
        if not (value.text.isascii() and value.text.isdigit()) or int(value.text) > MAX_NUMBER:
            raise _Refuse(f"expected a number below 2^32, got {value.text[:20]}")
        return int(value.text)

    def _script(self, value: Token) -> str:
        return self._text(value, "a Sieve script")  # RFC 5228 §2.2: scripts are UTF-8

    # -- any state

    def _capability_lines(self) -> bytes:
        caps: list[tuple[str, str | None]] = [("IMPLEMENTATION", self._config.implementation)]
        # RFC 5804 §1.7: with no mechanism usable yet, SASL is sent with an empty string.
        caps.append(("SASL", "PLAIN" if self._plaintext_allowed() else ""))
        caps.append(("SIEVE", " ".join(self._config.sieve_extensions)))
        if self._config.tls_available and not self._tls_active and self._state is SieveState.NON_AUTHENTICATED:
            caps.append(("STARTTLS", None))
        if self._config.max_redirects is not None:
            caps.append(("MAXREDIRECTS", str(self._config.max_redirects)))
        if self._owner is not None:
            caps.append(("OWNER", self._owner))
        caps += [("UNAUTHENTICATE", None), ("VERSION", "1.0")]
        return b"".join(quote(k) + (b" " + quote(v) if v is not None else b"") + CRLF for k, v in caps)

    def _cmd_capability(self, args: list[Token]) -> Event:
        self._args(args, "", "CAPABILITY")
        return self._ok(Ok("capability completed"), self._capability_lines())

    def _cmd_noop(self, args: list[Token]) -> Event:
        # RFC 5804 §2.13: an argument comes back as a TAG response code.
        (tag,) = self._args(args, "s?", "NOOP [tag]") or [None]
        if tag is None:
            return self._ok(Ok("done"))
        return self._ok(Ok("done", "TAG", self._text(tag, "NOOP tag")))

    def _cmd_logout(self, args: list[Token]) -> Event:
        self._args(args, "", "LOGOUT")
        return self._set_pending(Logout())

    # -- non-authenticated

    def _plaintext_allowed(self) -> bool:
        return self._tls_active or self._config.allow_plaintext_auth

    def _cmd_starttls(self, args: list[Token]) -> Event:
        self._args(args, "", "STARTTLS")
        if self._tls_active:
            raise _Refuse("TLS is already active")
        if not self._config.tls_available:
            raise _Refuse("STARTTLS is not available on this server")
        return self._set_pending(StartTls())

    def _cmd_authenticate(self, args: list[Token]) -> Event:
        self._args(args, "ss?", "AUTHENTICATE mechanism [initial-response]")
        mechanism = self._text(args[0], "mechanism").upper()
        if mechanism != "PLAIN":
            raise _Refuse(f"unsupported SASL mechanism {mechanism[:20]}, use PLAIN")
        if not self._plaintext_allowed():
            # RFC 5804 §1.3: ENCRYPT-NEEDED tells the client to use STARTTLS first.
            raise _Refuse("PLAIN needs TLS: use STARTTLS first", "ENCRYPT-NEEDED")
        if len(args) == 1:
            self._in_sasl = True
            return Answered(quote("") + CRLF, ok=True)  # RFC 4616: PLAIN's challenge is empty
        return self._set_pending(_plain(args[1]))

    def _sasl_response(self, tokens: list[Token]) -> Event:
        if len(tokens) != 1 or not isinstance(tokens[0], bytes):
            raise _Refuse("a SASL response is one string")
        if tokens[0] == b"*":
            raise _Refuse("authentication cancelled")  # RFC 5804 §2.1
        return self._set_pending(_plain(tokens[0]))

    # -- authenticated

    def _cmd_unauthenticate(self, args: list[Token]) -> Event:
        self._args(args, "", "UNAUTHENTICATE")
        return self._set_pending(Unauthenticate())

    def _cmd_havespace(self, args: list[Token]) -> Event:
        name, size = self._args(args, "sn", "HAVESPACE name size")
        script_name, octets = self._name(name), self._number(size)
        if octets > self._config.max_script_size:
            raise _Refuse(f"script too big: at most {self._config.max_script_size} octets", "QUOTA/MAXSIZE")
        return self._set_pending(HaveSpace(script_name, octets))

    def _cmd_putscript(self, args: list[Token]) -> Event:
        name, script = self._args(args, "ss", "PUTSCRIPT name script")
        return self._set_pending(PutScript(self._name(name), self._script(script)))

    def _cmd_checkscript(self, args: list[Token]) -> Event:
        (script,) = self._args(args, "s", "CHECKSCRIPT script")
        return self._set_pending(CheckScript(self._script(script)))

    def _cmd_listscripts(self, args: list[Token]) -> Event:
        self._args(args, "", "LISTSCRIPTS")
        return self._set_pending(ListScripts())

    def _cmd_setactive(self, args: list[Token]) -> Event:
        (name,) = self._args(args, "s", "SETACTIVE name")
        # RFC 5804 §2.8: the empty name deactivates every script.
        return self._set_pending(SetActive(self._name(name) if name != b"" else None))

    def _cmd_getscript(self, args: list[Token]) -> Event:
        (name,) = self._args(args, "s", "GETSCRIPT name")
        return self._set_pending(GetScript(self._name(name)))

    def _cmd_deletescript(self, args: list[Token]) -> Event:
        (name,) = self._args(args, "s", "DELETESCRIPT name")
        return self._set_pending(DeleteScript(self._name(name)))

    def _cmd_renamescript(self, args: list[Token]) -> Event:
        old, new = self._args(args, "ss", "RENAMESCRIPT old new")
        return self._set_pending(RenameScript(self._name(old), self._name(new)))


_COMMANDS: dict[str, tuple[_Handler, frozenset[SieveState]]] = {
    "CAPABILITY": (SieveCore._cmd_capability, _ANY_STATE),
    "NOOP": (SieveCore._cmd_noop, _ANY_STATE),
    "LOGOUT": (SieveCore._cmd_logout, _ANY_STATE),
    "STARTTLS": (SieveCore._cmd_starttls, _BEFORE_LOGIN),
    "AUTHENTICATE": (SieveCore._cmd_authenticate, _BEFORE_LOGIN),
    "UNAUTHENTICATE": (SieveCore._cmd_unauthenticate, _AFTER_LOGIN),
    "HAVESPACE": (SieveCore._cmd_havespace, _AFTER_LOGIN),
    "PUTSCRIPT": (SieveCore._cmd_putscript, _AFTER_LOGIN),
    "CHECKSCRIPT": (SieveCore._cmd_checkscript, _AFTER_LOGIN),
    "LISTSCRIPTS": (SieveCore._cmd_listscripts, _AFTER_LOGIN),
    "SETACTIVE": (SieveCore._cmd_setactive, _AFTER_LOGIN),
    "GETSCRIPT": (SieveCore._cmd_getscript, _AFTER_LOGIN),
    "DELETESCRIPT": (SieveCore._cmd_deletescript, _AFTER_LOGIN),
    "RENAMESCRIPT": (SieveCore._cmd_renamescript, _AFTER_LOGIN),
}


def _plain(response: Token) -> Authenticate:
    assert isinstance(response, bytes)  # the grammar checked it is a string
    return Authenticate(*decode_plain(response))
