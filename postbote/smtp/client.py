"""The SMTP client core, sans-I/O: commands out as bytes, server replies in as events.

The outbound queue's sender owns the socket; this core formats every command
(EHLO, STARTTLS, AUTH, MAIL with its RFC 1870/6152/6531/3461 parameters, RCPT,
DATA with dot-stuffing, BDAT), parses replies (multiline, any chunking), and
pairs each reply with the command it answers. That pairing is what makes
PIPELINING (RFC 2920) safe: a whole transaction's commands go out at once and
the replies come back in order. The core never raises on what the server
sends: a reply it cannot parse becomes a ``ProtocolError`` event.
"""

from __future__ import annotations

import base64
import re
from collections import deque
from dataclasses import dataclass, field

CRLF = b"\r\n"
# RFC 5321 §4.5.3.1.5 allows 512 octets per reply line; servers send longer ones, so allow more.
MAX_REPLY_LINE = 8192
MAX_REPLY_LINES = 1000
# RFC 3030: the size of one BDAT chunk we send.
BDAT_CHUNK = 1 << 20

_REPLY_LINE = re.compile(rb"([2-5][0-9][0-9])([ -]?)(.*)")
_ENHANCED = re.compile(r"([245]\.\d{1,3}\.\d{1,3})(?:\s|$)")


@dataclass(frozen=True)
class ServerReply:
    """One (possibly multiline) reply of the server. ``status`` is its RFC 3463 code, if any."""

    code: int
    lines: tuple[str, ...]

    @property
    def status(self) -> str | None:
        m = _ENHANCED.match(self.lines[0]) if self.lines else None
        return m.group(1) if m and m.group(1)[0] == str(self.code)[0] else None

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()


@dataclass(frozen=True)
class Answer:
    """The server answered ``command`` (``"greeting"``, ``"EHLO"``, ``"RCPT"`` …) with ``reply``."""

    command: str
    reply: ServerReply


@dataclass(frozen=True)
class ProtocolError:
    """The server sent something that is not an SMTP reply: the connection is unusable."""

    detail: str


ClientEvent = Answer | ProtocolError


@dataclass(frozen=True)
class Extensions:
    """What the server's EHLO reply offered (RFC 5321 §4.1.1.1)."""

    names: frozenset[str] = frozenset()
    size: int = 0  # RFC 1870: 0 means no limit was announced
    auth: tuple[str, ...] = ()

    def has(self, name: str) -> bool:
        return name.upper() in self.names

    @classmethod
    def parse(cls, reply: ServerReply) -> "Extensions":
        names: set[str] = set()
        size = 0
        auth: tuple[str, ...] = ()
        for line in reply.lines[1:]:
            words = line.split()
            if not words:
                continue
            keyword = words[0].upper()
            names.add(keyword)
            if keyword == "SIZE" and len(words) > 1 and words[1].isdigit():
                size = int(words[1])
            elif keyword == "AUTH":
                auth = tuple(w.upper() for w in words[1:])
        return cls(frozenset(names), size, auth)


@dataclass(frozen=True)
class Envelope:
    """What one transaction needs: the reverse-path, the recipients and the RFC 3461/6152 wishes."""

    sender: str
    recipients: tuple[str, ...]
    size: int = 0
    body: str | None = None  # "7BIT", "8BITMIME", "BINARYMIME"
    smtputf8: bool = False
    envid: str | None = None
    ret: str | None = None
    notify: tuple[str | None, ...] = ()  # per recipient, e.g. "FAILURE,DELAY"
    orcpt: tuple[str | None, ...] = ()  # per recipient, "rfc822;addr"


@dataclass
class _Parser:
    buffer: bytearray = field(default_factory=bytearray)
    lines: list[str] = field(default_factory=list)
    code: bytes = b""


class SmtpClientCore:
    """The client side of one SMTP connection; see the module docstring."""

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        self.extensions = Extensions()
        self.broken = False
        self._tls_pending = False  # STARTTLS answered 220: the next bytes must be TLS
        self._pending: deque[str] = deque(["greeting"])
        self._events: list[ClientEvent] = []
        self._parser = _Parser()

    # -- replies in -------------------------------------------------------------
    def receive(self, data: bytes) -> None:
        """Feed whatever the socket gave; complete replies become events."""
        if self.broken:
            return
        if self._tls_pending and data:
            # RFC 3207 §4: nothing may follow the 220 in the clear; bytes that do are an
            # injection attempt (CVE-2011-0411 in reverse) or a broken server.
            self._fail("data after the STARTTLS reply")
            return
        p = self._parser
        p.buffer += data
        while not self.broken:
            end = p.buffer.find(b"\n")
            if end < 0:
                if len(p.buffer) > MAX_REPLY_LINE:
                    self._fail("reply line too long")
                return
            line = bytes(p.buffer[:end]).rstrip(b"\r")
            del p.buffer[:end + 1]
            self._line(line)

    def _line(self, line: bytes) -> None:
        p = self._parser
        m = _REPLY_LINE.fullmatch(line)
        if m is None or (p.code and m.group(1) != p.code) or len(p.lines) >= MAX_REPLY_LINES:
            self._fail(f"not an SMTP reply: {line[:80]!r}")
            return
        p.code = m.group(1)
        p.lines.append(m.group(3).decode("utf-8", "replace").strip())
        if m.group(2) != b"-":
            reply = ServerReply(int(p.code), tuple(p.lines))
            p.code, p.lines = b"", []
            self._answered(reply)

    def _answered(self, reply: ServerReply) -> None:
        if not self._pending:
            self._fail(f"unexpected reply: {reply}")
            return
        command = self._pending.popleft()
        if command == "EHLO" and reply.code == 250:
            self.extensions = Extensions.parse(reply)
        self._events.append(Answer(command, reply))
        if command == "STARTTLS" and reply.code == 220:
            self._tls_pending = True
            if self._parser.buffer:
                self._fail("data after the STARTTLS reply")

    def _fail(self, detail: str) -> None:
        self.broken = True
        self._events.append(ProtocolError(detail))

    def events(self) -> list[ClientEvent]:
        out, self._events = self._events, []
        return out

    @property
    def awaiting(self) -> int:
        """How many replies are still owed; the driver reads until this is 0."""
        return len(self._pending)

    # -- commands out -----------------------------------------------------------
    def _command(self, name: str, line: str) -> bytes:
        self._pending.append(name)
        return line.encode("utf-8") + CRLF

    def ehlo(self) -> bytes:
        return self._command("EHLO", f"EHLO {self.hostname}")

    def helo(self) -> bytes:
        return self._command("HELO", f"HELO {self.hostname}")

    def starttls(self) -> bytes:
        return self._command("STARTTLS", "STARTTLS")

    def tls_established(self) -> None:
        """RFC 3207 §4.2: forget everything learnt before TLS; EHLO must be sent again."""
        self.extensions = Extensions()
        self._parser = _Parser()
        self._tls_pending = False

    def auth_plain(self, user: str, password: str) -> bytes:
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return self._command("AUTH", f"AUTH PLAIN {token}")

    def rset(self) -> bytes:
        return self._command("RSET", "RSET")

    def noop(self) -> bytes:
        return self._command("NOOP", "NOOP")

    def quit(self) -> bytes:
        return self._command("QUIT", "QUIT")

    def mail(self, env: Envelope) -> bytes:
        params = []
        ext = self.extensions
        if ext.has("SIZE") and env.size:
            params.append(f"SIZE={env.size}")
        if env.body and env.body.upper() != "7BIT" and ext.has("8BITMIME"):
            params.append(f"BODY={env.body.upper()}")
        if env.smtputf8 and ext.has("SMTPUTF8"):
            params.append("SMTPUTF8")
        if ext.has("DSN"):
            if env.ret:
                params.append(f"RET={env.ret.upper()}")
            if env.envid:
                params.append(f"ENVID={xtext(env.envid)}")
        return self._command("MAIL", " ".join([f"MAIL FROM:<{env.sender}>", *params]))

    def rcpt(self, env: Envelope, index: int) -> bytes:
        params = []
        if self.extensions.has("DSN"):
            notify = env.notify[index] if index < len(env.notify) else None
            orcpt = env.orcpt[index] if index < len(env.orcpt) else None
            if notify:
                params.append(f"NOTIFY={notify.upper()}")
            if orcpt:
                kind, _, addr = orcpt.partition(";")
                params.append(f"ORCPT={kind};{xtext(addr)}")
        return self._command("RCPT", " ".join([f"RCPT TO:<{env.recipients[index]}>", *params]))

    def envelope(self, env: Envelope) -> bytes:
        """MAIL and every RCPT at once: with PIPELINING they go out together (RFC 2920 §3.1)."""
        return self.mail(env) + b"".join(self.rcpt(env, i) for i in range(len(env.recipients)))

    def data(self) -> bytes:
        return self._command("DATA", "DATA")

    def data_body(self, message: bytes) -> bytes:
        """The message after a 354: dot-stuffed, ending in CRLF . CRLF (RFC 5321 §4.5.2)."""
        self._pending.append("DATA-END")
        return dot_stuff(message) + b".\r\n"

    def bdat(self, message: bytes) -> bytes:
        """RFC 3030 CHUNKING: the message in BDAT chunks, the last one marked LAST."""
        out = []
        chunks = [message[i:i + BDAT_CHUNK] for i in range(0, len(message), BDAT_CHUNK)] or [b""]
        for n, chunk in enumerate(chunks):
            last = n == len(chunks) - 1
            self._pending.append("DATA-END" if last else "BDAT")
            out.append(f"BDAT {len(chunk)}{' LAST' if last else ''}\r\n".encode() + chunk)
        return b"".join(out)


def dot_stuff(message: bytes) -> bytes:
    """RFC 5321 §4.5.2: double a leading dot on every line; make sure the data ends in CRLF."""
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


def xtext(text: str) -> str:
    """RFC 3461 §4: '+', '=' and anything outside printable ASCII as "+HH"."""
    return "".join(c if 33 <= ord(c) <= 126 and c not in "+=" else
                   "".join(f"+{b:02X}" for b in c.encode()) for c in text)
