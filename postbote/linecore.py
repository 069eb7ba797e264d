"""Sans-I/O pieces shared by the line protocol cores (POP3 and ManageSieve).

Both cores take bytes in any chunking, hand the adapter one event at a time and wait for its
answer before reading the next pipelined command, drop what arrives between an accepted
STARTTLS and the handshake, and read SASL PLAIN the same way. ``LineCoreBase`` holds the
event and input plumbing; the grammar, the states and the answers stay in each core.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator
from typing import ClassVar, Generic, TypeVar

# RFC 2449 §8 (POP3) and RFC 5804 §4 (ManageSieve) response codes: atoms joined by "/".
RESPONSE_CODE = re.compile(r"[A-Z0-9-]+(/[A-Z0-9-]+)*")

EventT = TypeVar("EventT")


class Refusal(Exception):
    """Raised inside a core to refuse a command with ``text`` (and a response code); the
    core turns it into its protocol's error answer, so it never leaves the core."""

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


class LineCoreBase(Generic[EventT]):
    """The event plumbing of a core: at most one event waits for the adapter's answer, and
    input stops counting from an accepted STARTTLS until the handshake."""

    usage_error: ClassVar[type[RuntimeError]] = RuntimeError

    def __init__(self, tls_active: bool) -> None:
        self._tls_active = tls_active
        self._pending: EventT | None = None  # the event the adapter has yet to answer
        self._tls_wait = False  # STARTTLS answered OK: nothing counts until the handshake
        self._eof = False

    @property
    def tls_active(self) -> bool:
        return self._tls_active

    def receive(self, data: bytes) -> None:
        """Feed what the socket gave, in any chunking; ``b""`` means the client closed."""
        if self._ended() or self._eof:
            return
        if not data:
            self._eof = True
            return
        if self._tls_wait:
            # RFC 2595 §4, CVE-2011-0411: plaintext sent behind STARTTLS must never count as
            # encrypted, so it is dropped.
            return
        self._take(data)

    def events(self) -> Iterator[EventT]:
        """Events in order. Stops at an event the adapter must answer, and goes on (even in
        the same loop) once it has been answered: pipelined commands wait for that answer."""
        while (event := self.next_event()) is not None:
            yield event

    def next_event(self) -> EventT | None:
        raise NotImplementedError

    def _ended(self) -> bool:
        raise NotImplementedError

    def _take(self, data: bytes) -> None:
        """Buffer and parse octets that count."""
        raise NotImplementedError

    def _take_pending(self) -> EventT:
        event = self._pending
        if event is None:
            raise self.usage_error("nothing to answer: the core answered that command itself")
        self._pending = None
        return event

    def _set_pending(self, event: EventT) -> EventT:
        self._pending = event
        return event


def strip_eol(raw: bytes) -> bytes:
    """Commands end with CRLF; a bare LF is accepted too, as most servers do."""
    line = raw[:-1] if raw.endswith(b"\n") else raw
    return line[:-1] if line.endswith(b"\r") else line


def check_code(code: str, protocol: str) -> str:
    """A response code as the adapter gave it, refused if it would break the reply line."""
    if not RESPONSE_CODE.fullmatch(code):
        raise ValueError(f"not a {protocol} response code: {code!r}")
    return code


def decode_plain(data: bytes) -> tuple[str, str, str]:
    """A base64 SASL PLAIN response (RFC 4616) as (authzid, user, password)."""
    return _plain(_base64(data))


def _base64(data: bytes) -> bytes:
    """RFC 4648 base64, canonical only: the decoder alone lets stray "=" and non-zero
    padding bits through, so the result must encode back to exactly what was sent."""
    try:
        decoded = binascii.a2b_base64(data, strict_mode=True)
    except binascii.Error:
        decoded = None
    if decoded is None or binascii.b2a_base64(decoded, newline=False) != data:
        raise Refusal("invalid base64 in SASL response")
    return decoded


def _plain(message: bytes) -> tuple[str, str, str]:
    """RFC 4616: authzid NUL authcid NUL passwd, UTF-8, authcid and passwd not empty."""
    parts = message.split(b"\0")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise Refusal("invalid PLAIN response, expected authzid NUL user NUL password")
    try:
        authzid, user, password = (part.decode("utf-8") for part in parts)
    except UnicodeDecodeError:
        raise Refusal("PLAIN credentials must be UTF-8") from None
    return authzid, user, password
