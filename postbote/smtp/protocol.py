"""Sans-I/O SMTP and LMTP server core.

RFC 5321 (SMTP), 2033 (LMTP), 1870 (SIZE), 2920 (PIPELINING), 3030 (CHUNKING, BINARYMIME),
3207 (STARTTLS), 3461 (DSN), 4954 (AUTH), 6152 (8BITMIME), 6531 (SMTPUTF8), 2034 and 3463
(enhanced status codes).

This module holds the listener's configuration and the state machine; the pieces it drives
each have a module of their own: ``events`` (what the core tells the adapter), ``replies``
(what the adapter answers, and their wire form), ``addresses`` (path syntax), ``parameters``
(the ESMTP parameters of MAIL and RCPT), ``data`` (DATA transparency, bare CR/LF, size
counting) and ``sasl`` (the AUTH exchanges).

The core owns the state machine and every syntax rule; the adapter owns sockets, TLS, time
and the services. Bytes go in, typed events come out, and the core waits for the adapter's
answer to a command before it looks at the next pipelined one, because that answer decides
how the next bytes are read (a 354 turns them into message data, a 220 to STARTTLS throws
them away, a refused RCPT makes a later DATA a sequence error)::

    core = SmtpServerCore(SmtpConfig(hostname="mx.example"))
    transport.write(core.greeting())
    core.receive(data)                      # whatever the socket gave; b"" when it closed
    for event in core.events():
        match event:
            case Answered(data=data): transport.write(data)
            case DataChunk(data=data) | BdatChunk(data=data): spool.write(data)
            case ConnectionClosed(): spool.discard()
            case _: transport.write(core.send(await decide(event)))

Every valid command becomes an event the adapter answers with ``send(Reply)``; the core
answers by itself (as ``Answered``) only syntax, sequence and limit errors and the SASL
challenges. Drain ``events()`` after each ``receive()``: the core holds what it was given
until it is read, and ``buffered`` tells how much that is.

Decisions worth knowing:

- Only ``<CRLF>.<CRLF>`` ends DATA (RFC 5321 §4.1.1.4); a "line" starts only after CRLF, so
  ``\\n.\\n``, ``\\r.\\r``, ``\\n.\\r\\n`` and friends are message data (no SMTP smuggling).
  Bare CR and LF are passed through untouched and reported as ``DataEnd.bare_newline`` so the
  adapter can refuse the message (``replies.BARE_NEWLINE``) before relaying it anywhere.
- Command lines may end in a bare LF (many hand-typed and old clients do it); a trailing CR is
  dropped. This leniency never applies to message data.
- A command line is at most ``max_line`` octets including CRLF (AUTH lines and SASL answers
  ``max_auth_line``, RFC 4954 §4); a longer one is dropped as it arrives and answered
  ``500 5.5.6``. Message data counts against ``max_message_size`` as it arrives; beyond it the
  rest is read and dropped, and the end event says ``oversized``.
- Nothing read after an accepted STARTTLS and before ``tls_established()`` is ever parsed
  (RFC 3207 §4.2), and the session restarts from scratch after the handshake.
- A BDAT whose size can be parsed is always read to its last octet, even when it is refused,
  so its payload can never be taken for commands (RFC 3030 §2).

Misuse by the adapter (answering when nothing is pending, a wrong kind of answer) raises
``SmtpUsageError``; bad input from the client never raises.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum

from postbote.smtp import replies as R
from postbote.smtp.addresses import Mailbox, parse_mailbox, split_path
from postbote.smtp.data import DotReader, MessageBody
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
from postbote.smtp.parameters import mail_params, rcpt_params
from postbote.smtp.replies import Refusal, Reply, encode_lines, format_reply
from postbote.smtp.sasl import SASL_MECHANISMS, SaslExchange, client_response, initial_response

# RFC 5321 §4.5.3.1.4: servers must accept command lines of at least 512 octets.
MIN_LINE = 512
# RFC 4954 §4: an AUTH command line, initial response included, may be 12288 octets.
AUTH_LINE = 12288


class SmtpUsageError(RuntimeError):
    """The adapter called the core out of turn: a programming error, never bad input."""


@dataclass(frozen=True)
class SmtpConfig:
    """What the core needs to know about its listener; every field has a safe default."""

    hostname: str = "localhost"
    lmtp: bool = False  # RFC 2033: LHLO, and one reply per recipient after the message
    max_line: int = 2048  # octets, CRLF included; ESMTP parameters make lines longer than 512
    max_auth_line: int = AUTH_LINE
    max_message_size: int = 25 * 1024 * 1024  # octets; 0 means no limit
    tls_available: bool = False  # a certificate is loaded, so STARTTLS can be offered
    tls_active: bool = False  # implicit TLS (port 465): the session starts encrypted
    tls_required: bool = False  # nothing but EHLO, STARTTLS, RSET, NOOP, HELP, QUIT before TLS
    auth_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")  # empty: no AUTH at all
    auth_requires_tls: bool = True  # no passwords over plaintext
    auth_required: bool = False  # submission: MAIL, RCPT, DATA, BDAT, VRFY, EXPN need AUTH
    pipelining: bool = True
    size: bool = True
    eightbitmime: bool = True
    binarymime: bool = True  # only offered together with CHUNKING
    chunking: bool = True
    smtputf8: bool = True
    dsn: bool = True
    enhancedstatuscodes: bool = True
    starttls: bool = True

    def __post_init__(self) -> None:
        name = self.hostname
        if not name or not name.isascii() or any(c.isspace() or c < " " for c in name):
            raise ValueError(f"smtp.hostname must be a domain name, got {self.hostname!r}")
        if self.max_line < MIN_LINE:
            raise ValueError(
                f"smtp.max_line must be at least {MIN_LINE} (RFC 5321 §4.5.3.1.4), "
                f"got {self.max_line}"
            )
        if self.max_auth_line < self.max_line:
            raise ValueError(
                f"smtp.max_auth_line must be at least smtp.max_line ({self.max_line}), "
                f"got {self.max_auth_line}"
            )
        if self.max_message_size < 0:
            raise ValueError(
                f"smtp.max_message_size must be 0 (no limit) or more, got {self.max_message_size}"
            )
        unknown = set(self.auth_mechanisms) - SASL_MECHANISMS
        if unknown:
            raise ValueError(
                f"smtp.auth_mechanisms may hold only PLAIN and LOGIN, got {sorted(unknown)}"
            )
        if self.tls_required and not (self.tls_active or (self.tls_available and self.starttls)):
            raise ValueError("smtp.tls_required needs implicit TLS or an offered STARTTLS")


_BDAT_ARGS = re.compile(r"([0-9]{1,18})(?: +(LAST))? *", re.IGNORECASE)
_CONTROLS = bytes([*range(0x09), *range(0x0A, 0x20), 0x7F])  # TAB is tolerated


# --- the session -----------------------------------------------------------------------------


class _Mode(Enum):
    COMMAND = "command"
    SASL = "sasl"  # the next line answers a 334 challenge
    DATA = "data"
    BDAT = "bdat"
    TLS_WAIT = "tls-wait"  # STARTTLS answered 220: everything is dropped until the handshake
    CLOSED = "closed"


@dataclass
class _Chunk:
    """The BDAT being read: octets still due, and the refusal to give once it is read."""

    remaining: int
    size: int
    last: bool
    refusal: Reply | None



_OVERLONG = object()  # a command line that broke its bound while arriving
_NEED_INPUT = object()  # nothing more can be done with what has arrived
_PROGRESS = object()  # input was consumed without anything to tell the adapter

_BEFORE_TLS = frozenset({"EHLO", "HELO", "LHLO", "STARTTLS", "NOOP", "RSET", "QUIT", "HELP"})
_BEFORE_AUTH = _BEFORE_TLS | {"AUTH"}


class SmtpServerCore:
    """One SMTP or LMTP session, from greeting to QUIT."""

    def __init__(self, config: SmtpConfig | None = None) -> None:
        self._config = config or SmtpConfig()
        self.allow_auth = True  # the adapter may withdraw AUTH, e.g. where it has no accounts
        self._buf = bytearray()
        self._mode = _Mode.COMMAND
        self._pending: Event | None = None
        self._eof = False
        self._skipping = False  # inside an overlong line, dropping octets up to its LF
        self._refused = False  # RFC 5321 §3.1: after a 554 greeting only QUIT is served
        self._tls_active = self._config.tls_active
        self._helo: Helo | None = None
        self._authenticated = False
        self._auth_user: str | None = None
        self._sasl: SaslExchange | None = None
        self._error_count = 0
        self._dot: DotReader | None = None
        self._chunk: _Chunk | None = None
        self._reset_transaction()

    # -- what the adapter may look at

    @property
    def config(self) -> SmtpConfig:
        return self._config

    @property
    def tls_active(self) -> bool:
        return self._tls_active

    @property
    def helo(self) -> Helo | None:
        """The accepted HELO/EHLO/LHLO of this session (forgotten after STARTTLS)."""
        return self._helo

    @property
    def authenticated(self) -> bool:
        return self._authenticated

    @property
    def authenticated_user(self) -> str | None:
        return self._auth_user

    @property
    def sender(self) -> MailFrom | None:
        """The accepted MAIL FROM of the open transaction."""
        return self._mail

    @property
    def recipients(self) -> tuple[RcptTo, ...]:
        """Accepted recipients in RCPT order: the order of LMTP's per-recipient replies."""
        return tuple(self._recipients)

    @property
    def pending(self) -> Event | None:
        """The event waiting for ``send()``."""
        return self._pending

    @property
    def error_count(self) -> int:
        """4xx/5xx replies so far, the core's own and the adapter's, to cut off abusers."""
        return self._error_count

    @property
    def closed(self) -> bool:
        return self._mode is _Mode.CLOSED

    @property
    def buffered(self) -> int:
        """Octets received but not yet turned into events: for the adapter's flow control."""
        return len(self._buf)

    @property
    def auth_offered(self) -> bool:
        cfg = self._config
        return (
            bool(cfg.auth_mechanisms)
            and self.allow_auth
            and not self._authenticated
            and (self._tls_active or not cfg.auth_requires_tls)
        )

    # -- input

    def greeting(self, reply: Reply | None = None) -> bytes:
        """The banner: ``220 hostname text``. A 554 instead refuses service politely (RFC 5321
        §3.1: every command but QUIT then gets 503); a 421 closes the session."""
        if reply is None:
            reply = Reply(220, None, "LMTP ready" if self._config.lmtp else "ESMTP ready")
        if reply.code == 554:
            self._refused = True
        if reply.closes:
            self._mode = _Mode.CLOSED
        lines = reply.lines
        lines[0] = f"{self._config.hostname} {lines[0]}".rstrip()
        return encode_lines(reply.code, lines)

    def receive(self, data: bytes) -> None:
        """Feed what the socket gave, in any chunking; ``b""`` means the client closed."""
        if self._mode is _Mode.CLOSED or self._eof:
            return
        if not data:
            self._eof = True
            return
        if self._mode is _Mode.TLS_WAIT:
            return  # RFC 3207 §4.2: plaintext sent before the handshake must not count
        self._buf += data

    # -- output

    def events(self) -> Iterator[Event]:
        """Events in order. Stops at an event the adapter must answer, and goes on (even in
        the same loop) once it has been answered: pipelined commands wait for that answer."""
        while (event := self.next_event()) is not None:
            yield event

    def next_event(self) -> Event | None:
        if self._pending is not None or self._mode is _Mode.CLOSED:
            return None
        while True:
            if self._mode is _Mode.TLS_WAIT:
                outcome: object = _NEED_INPUT
            else:
                outcome = self._step()
            if outcome is _NEED_INPUT:
                if not self._eof:
                    return None
                self._mode = _Mode.CLOSED
                return ConnectionClosed()
            if outcome is not _PROGRESS:
                event: Event = outcome  # type: ignore[assignment]
                if event.needs_reply:
                    self._pending = event
                return event

    def send(self, reply: Reply | Sequence[Reply]) -> bytes:
        """Answer the pending event; returns the bytes to write. LMTP's end of data takes a
        sequence of replies, one per accepted recipient."""
        event = self._pending
        if event is None:
            raise SmtpUsageError("nothing to answer: the core answered that command itself")
        answers = self._check_answer(event, reply)
        self._pending = None
        self._error_count += sum(1 for answer in answers if answer.code >= 400)
        data = self._apply(event, answers)
        if any(answer.closes for answer in answers):
            self._mode = _Mode.CLOSED
        return data

    def tls_established(self) -> None:
        """The handshake after STARTTLS succeeded: RFC 3207 §4.2, the session starts over
        (no EHLO, no AUTH, no transaction), and nothing sent before it is kept."""
        if self._mode is not _Mode.TLS_WAIT:
            raise SmtpUsageError("tls_established() without an accepted STARTTLS")
        self._mode = _Mode.COMMAND
        self._tls_active = True
        self._buf.clear()
        self._skipping = False
        self._helo = None
        self._authenticated = False
        self._auth_user = None
        self._sasl = None
        self._reset_transaction()

    def auth_succeeded(self, user: str) -> None:
        """Name the authenticated identity (e.g. the canonical account after a 235), or
        authenticate by other means (a TLS client certificate)."""
        self._authenticated = True
        self._auth_user = user

    # -- answers

    def _check_answer(self, event: Event, reply: Reply | Sequence[Reply]) -> list[Reply]:
        ends_lmtp = self._config.lmtp and (
            isinstance(event, DataEnd) or (isinstance(event, BdatEnd) and event.last)
        )
        if isinstance(reply, Reply):
            if isinstance(event, DataStart) and reply.positive:
                raise SmtpUsageError("answer DataStart with 354 or a 4xx/5xx, not 2xx")
            return [reply] * max(1, len(self._recipients)) if ends_lmtp else [reply]
        answers = list(reply)
        if not ends_lmtp:
            raise SmtpUsageError(f"answer {type(event).__name__} with one Reply")
        if len(answers) != len(self._recipients) or not all(
            isinstance(answer, Reply) for answer in answers
        ):
            raise SmtpUsageError(
                f"LMTP needs one Reply per accepted recipient ({len(self._recipients)}), "
                f"got {len(answers)}"
            )
        return answers

    def _apply(self, event: Event, answers: list[Reply]) -> bytes:
        reply = answers[0]
        match event:
            case Helo():
                return self._answer_helo(event, reply)
            case MailFrom() if reply.positive:
                self._mail = event
            case RcptTo() if reply.positive:
                self._recipients.append(event)
            case DataStart() if reply.code == 354:
                self._mode = _Mode.DATA
                self._dot = DotReader()
            case DataEnd() | Rset():
                self._reset_transaction()
            case BdatEnd() if event.last or not reply.positive:
                self._reset_transaction()  # RFC 3030 §2: a refused chunk fails the transaction
            case StartTls() if reply.positive:
                self._mode = _Mode.TLS_WAIT
                self._buf.clear()
                self._skipping = False
            case AuthCredentials() if reply.positive:
                self._authenticated = True
                self._auth_user = self._auth_user or event.authcid
            case Quit():
                self._mode = _Mode.CLOSED
        return b"".join(self._format(answer) for answer in answers)

    def _answer_helo(self, event: Helo, reply: Reply) -> bytes:
        if not reply.positive:
            return self._format(reply)
        self._helo = event
        self._reset_transaction()
        greet = reply.lines[0]
        lines = [f"{self._config.hostname} {greet}".rstrip()]
        if event.extended:
            lines += self._extensions()
        return encode_lines(reply.code, lines)

    def _extensions(self) -> list[str]:
        cfg = self._config
        offered = [
            (cfg.pipelining, "PIPELINING"),
            (cfg.size, f"SIZE {cfg.max_message_size}" if cfg.max_message_size else "SIZE"),
            (cfg.eightbitmime, "8BITMIME"),
            (cfg.binarymime and cfg.chunking, "BINARYMIME"),
            (cfg.chunking, "CHUNKING"),
            (cfg.smtputf8, "SMTPUTF8"),
            (cfg.dsn, "DSN"),
            (cfg.enhancedstatuscodes, "ENHANCEDSTATUSCODES"),
            (self._starttls_offered(), "STARTTLS"),
            (self.auth_offered, "AUTH " + " ".join(cfg.auth_mechanisms)),
        ]
        return [line for wanted, line in offered if wanted]

    def _starttls_offered(self) -> bool:
        cfg = self._config
        return cfg.starttls and cfg.tls_available and not self._tls_active

    def _format(self, reply: Reply) -> bytes:
        return format_reply(reply, enhanced=self._config.enhancedstatuscodes)

    def _refuse(self, reply: Reply) -> Answered:
        self._error_count += 1
        return Answered(self._format(reply), ok=False)

    def _reset_transaction(self) -> None:
        self._mail: MailFrom | None = None
        self._recipients: list[RcptTo] = []
        self._bdat_started = False
        self._message = MessageBody(self._config.max_message_size)

    # -- reading

    def _step(self) -> object:
        """One unit of work: an event, _PROGRESS, or _NEED_INPUT."""
        if self._mode is _Mode.DATA:
            return self._read_data()
        if self._mode is _Mode.BDAT:
            return self._read_chunk()
        line = self._next_line()
        if line is None:
            return _NEED_INPUT
        try:
            if self._mode is _Mode.SASL:
                return self._sasl_response(line)
            if line is _OVERLONG:
                return self._refuse(R.LINE_TOO_LONG)
            assert isinstance(line, bytes)
            return self._command(line)
        except Refusal as refusal:
            return self._refuse(refusal.reply)

    def _line_limit(self) -> int:
        if self._mode is _Mode.SASL or self._buf[:5].upper() == b"AUTH ":
            return self._config.max_auth_line
        return self._config.max_line

    def _next_line(self) -> bytes | object | None:
        """The next command line without its line end, _OVERLONG, or None (need more).
        An overlong line is dropped as it arrives, so it is never held in memory."""
        buf = self._buf
        newline = buf.find(b"\n")
        if self._skipping:
            if newline < 0:
                buf.clear()
                return None
            del buf[: newline + 1]
            self._skipping = False
            return _OVERLONG
        limit = self._line_limit()
        if newline < 0:
            if len(buf) > limit:
                buf.clear()
                self._skipping = True
            return None
        line = bytes(buf[:newline])
        del buf[: newline + 1]
        if newline + 1 > limit:
            return _OVERLONG
        return line.removesuffix(b"\r")

    def _read_data(self) -> object:
        assert self._dot is not None
        data, consumed, ended = self._dot.read(self._buf)
        del self._buf[:consumed]
        if ended:
            self._mode = _Mode.COMMAND
            self._dot = None
            body = self._message
            return DataEnd(body.size, body.oversized, body.bare_newline)
        if not data:
            return _PROGRESS if consumed else _NEED_INPUT
        return self._body(data, DataChunk)

    def _read_chunk(self) -> object:
        chunk = self._chunk
        assert chunk is not None
        if chunk.remaining == 0:
            self._mode = _Mode.COMMAND
            self._chunk = None
            if chunk.refusal is not None:
                return self._refuse(chunk.refusal)
            body = self._message
            return BdatEnd(chunk.size, chunk.last, body.size, body.oversized, body.bare_newline)
        take = min(chunk.remaining, len(self._buf))
        if take == 0:
            return _NEED_INPUT
        data = bytes(self._buf[:take])
        del self._buf[:take]
        chunk.remaining -= take
        if chunk.refusal is not None:
            return _PROGRESS
        return self._body(data, BdatChunk)

    def _body(self, data: bytes, kind: type[DataChunk] | type[BdatChunk]) -> object:
        return kind(data) if self._message.feed(data) else _PROGRESS

    # -- commands

    def _command(self, line: bytes) -> object:
        if line.translate(None, _CONTROLS) != line:
            raise Refusal(R.CONTROL_CHARACTERS)
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise Refusal(R.BAD_UTF8) from None
        verb, _, argument = text.rstrip(" \t").partition(" ")
        verb = verb.upper()
        argument = argument.strip(" ")
        if self._refused and verb != "QUIT":
            raise Refusal(R.GREETING_REFUSED)
        handler = _COMMANDS.get(verb)
        if handler is None or verb in (_SMTP_ONLY if self._config.lmtp else _LMTP_ONLY):
            raise Refusal(R.UNRECOGNIZED)
        if verb != "BDAT":  # BDAT is refused only after its octets are read
            gate = self._gate(verb)
            if gate is not None:
                raise Refusal(gate)
        return handler(self, argument)

    def _gate(self, verb: str) -> Reply | None:
        """RFC 3207 §4 / RFC 4954 §6: what the listener's policy forbids for now."""
        cfg = self._config
        if cfg.tls_required and not self._tls_active and verb not in _BEFORE_TLS:
            return R.MUST_STARTTLS
        if cfg.auth_required and not self._authenticated and verb not in _BEFORE_AUTH:
            return R.AUTH_REQUIRED
        return None

    def _sequence(self, need_recipients: bool) -> Reply | None:
        """RFC 5321 §3.3: MAIL after HELO, RCPT after MAIL, data after an accepted RCPT."""
        if self._helo is None:
            return R.SEND_LHLO_FIRST if self._config.lmtp else R.SEND_HELO_FIRST
        if self._mail is None:
            return R.NEED_MAIL
        if need_recipients and not self._recipients:
            return R.NO_VALID_RECIPIENTS
        return None

    def _cmd_helo(self, argument: str) -> Event:
        return self._hello(argument, extended=False)

    def _cmd_ehlo(self, argument: str) -> Event:
        return self._hello(argument, extended=True)

    def _cmd_lhlo(self, argument: str) -> Event:
        return self._hello(argument, extended=True)

    def _hello(self, argument: str, extended: bool) -> Event:
        # RFC 5321 §4.1.4: the name is not checked against the peer; the services decide.
        name = argument.split(" ")[0]
        if not name:
            raise Refusal(R.LHLO_SYNTAX if self._config.lmtp else R.HELO_SYNTAX)
        return Helo(name, extended, self._config.lmtp)

    def _cmd_mail(self, argument: str) -> Event:
        if self._helo is None:
            raise Refusal(R.SEND_LHLO_FIRST if self._config.lmtp else R.SEND_HELO_FIRST)
        if self._mail is not None:
            raise Refusal(R.NESTED_MAIL)
        inner, tokens = self._path_argument(argument, "FROM:", R.MAIL_SYNTAX)
        params = mail_params(tokens, self._config)
        if inner == "":
            return MailFrom("", "", "", params)
        path = parse_mailbox(inner)
        if path is None:
            raise Refusal(R.BAD_SENDER)
        if not path.ascii and not params.smtputf8:
            raise Refusal(R.NON_ASCII_SENDER)  # RFC 6531 §3.5
        return MailFrom(path.address, path.local_part, path.domain, params)

    def _cmd_rcpt(self, argument: str) -> Event:
        refusal = self._sequence(False)
        if refusal is not None:
            raise Refusal(refusal)
        if self._bdat_started:
            raise Refusal(R.BDAT_IN_PROGRESS)
        inner, tokens = self._path_argument(argument, "TO:", R.RCPT_SYNTAX)
        params = rcpt_params(tokens, self._config)
        if inner.lower() == "postmaster":
            path: Mailbox | None = Mailbox(inner, "")  # RFC 5321 §4.5.1
        else:
            path = parse_mailbox(inner)
        if path is None:
            raise Refusal(R.BAD_RECIPIENT)
        assert self._mail is not None
        if not path.ascii and not self._mail.params.smtputf8:
            raise Refusal(R.NON_ASCII_RECIPIENT)  # RFC 6531 §3.5
        return RcptTo(path.address, path.local_part, path.domain, params)

    def _path_argument(self, argument: str, prefix: str, usage: Reply) -> tuple[str, list[str]]:
        """``FROM:<path> params``; a space after the colon is tolerated, as clients send it."""
        if argument[: len(prefix)].upper() != prefix:
            raise Refusal(usage)
        split = split_path(argument[len(prefix) :].lstrip(" "))
        if split is None:
            raise Refusal(usage)
        inner, rest = split
        return inner, [token for token in rest.split(" ") if token]

    def _cmd_data(self, argument: str) -> Event:
        if argument:
            raise Refusal(R.NO_PARAMETERS)
        refusal = self._sequence(True)
        if refusal is not None:
            raise Refusal(refusal)
        if self._bdat_started:
            raise Refusal(R.DATA_AFTER_BDAT)  # RFC 3030 §2: no mixing in one transaction
        assert self._mail is not None
        if self._mail.params.body == "BINARYMIME":
            raise Refusal(R.BINARYMIME_NEEDS_BDAT)  # RFC 3030 §3
        return DataStart()

    def _cmd_bdat(self, argument: str) -> object:
        match = _BDAT_ARGS.fullmatch(argument)
        if match is None:
            raise Refusal(R.BDAT_SYNTAX)
        size = int(match.group(1))
        refusal = (
            (None if self._config.chunking else R.NOT_IMPLEMENTED)
            or self._gate("BDAT")
            or self._sequence(True)
        )
        if refusal is None:
            self._bdat_started = True
        self._chunk = _Chunk(size, size, match.group(2) is not None, refusal)
        self._mode = _Mode.BDAT
        return _PROGRESS

    def _cmd_rset(self, argument: str) -> Event:
        if argument:
            raise Refusal(R.NO_PARAMETERS)
        return Rset()

    def _cmd_noop(self, argument: str) -> Event:
        return Noop(argument)

    def _cmd_quit(self, argument: str) -> Event:
        if argument:
            raise Refusal(R.NO_PARAMETERS)
        return Quit()

    def _cmd_vrfy(self, argument: str) -> Event:
        if not argument:
            raise Refusal(R.ARGUMENT_REQUIRED)
        return Vrfy(argument)

    def _cmd_expn(self, argument: str) -> Event:
        if not argument:
            raise Refusal(R.ARGUMENT_REQUIRED)
        return Expn(argument)

    def _cmd_help(self, argument: str) -> Event:
        return Help(argument)

    def _cmd_starttls(self, argument: str) -> Event:
        if argument:
            raise Refusal(R.NO_PARAMETERS)  # RFC 3207 §4
        if self._tls_active:
            raise Refusal(R.TLS_ALREADY_ACTIVE)
        if not self._starttls_offered():
            raise Refusal(R.NOT_IMPLEMENTED)
        return StartTls()

    # -- AUTH (RFC 4954) and the SASL exchange

    def _cmd_auth(self, argument: str) -> object:
        cfg = self._config
        if not cfg.auth_mechanisms or not self.allow_auth:
            raise Refusal(R.NOT_IMPLEMENTED)
        if self._helo is None or not self._helo.extended:
            raise Refusal(R.SEND_LHLO_FIRST if cfg.lmtp else R.SEND_EHLO_FIRST)
        if self._authenticated:
            raise Refusal(R.ALREADY_AUTHENTICATED)
        if self._mail is not None:
            raise Refusal(R.AUTH_IN_TRANSACTION)
        if cfg.auth_requires_tls and not self._tls_active:
            raise Refusal(R.ENCRYPTION_REQUIRED)
        words = argument.split(" ")
        if not words[0] or len(words) > 2:
            raise Refusal(R.AUTH_SYNTAX)
        mechanism = words[0].upper()
        if mechanism not in cfg.auth_mechanisms:
            raise Refusal(R.UNKNOWN_MECHANISM)
        if len(words) == 1:
            return self._challenge(SaslExchange(mechanism))
        return self._sasl_step(SaslExchange(mechanism), initial_response(words[1]))

    def _sasl_response(self, line: object) -> object:
        sasl = self._sasl
        assert sasl is not None
        self._sasl = None
        self._mode = _Mode.COMMAND
        if line is _OVERLONG:
            raise Refusal(R.LINE_TOO_LONG)
        assert isinstance(line, bytes)
        return self._sasl_step(sasl, client_response(line))

    def _sasl_step(self, sasl: SaslExchange, response: bytes) -> object:
        credentials = sasl.step(response)
        return credentials if credentials is not None else self._challenge(sasl)

    def _challenge(self, sasl: SaslExchange) -> Answered:
        self._sasl = sasl
        self._mode = _Mode.SASL
        return Answered(b"334 " + sasl.challenge() + b"\r\n", ok=True)


_COMMANDS = {
    "HELO": SmtpServerCore._cmd_helo,
    "EHLO": SmtpServerCore._cmd_ehlo,
    "LHLO": SmtpServerCore._cmd_lhlo,
    "MAIL": SmtpServerCore._cmd_mail,
    "RCPT": SmtpServerCore._cmd_rcpt,
    "DATA": SmtpServerCore._cmd_data,
    "BDAT": SmtpServerCore._cmd_bdat,
    "RSET": SmtpServerCore._cmd_rset,
    "NOOP": SmtpServerCore._cmd_noop,
    "QUIT": SmtpServerCore._cmd_quit,
    "VRFY": SmtpServerCore._cmd_vrfy,
    "EXPN": SmtpServerCore._cmd_expn,
    "HELP": SmtpServerCore._cmd_help,
    "STARTTLS": SmtpServerCore._cmd_starttls,
    "AUTH": SmtpServerCore._cmd_auth,
}
_SMTP_ONLY = frozenset({"HELO", "EHLO"})
_LMTP_ONLY = frozenset({"LHLO"})
