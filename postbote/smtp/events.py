"""The events the SMTP server core emits, one frozen dataclass for each thing that happened.

They are the whole vocabulary between ``SmtpServerCore`` and its adapter: the adapter matches
on them and answers the ones that need an answer. They live apart from the state machine so
that reading what an adapter must handle does not mean reading how the core parses bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from postbote.smtp.parameters import MailParams, RcptParams


class _Answer:
    """An event the adapter must answer with ``send()`` before the core reads on."""

    needs_reply: ClassVar[bool] = True


class _Notice:
    """An event the adapter only takes note of."""

    needs_reply: ClassVar[bool] = False


@dataclass(frozen=True)
class Answered(_Notice):
    """The core answered by itself (an error, a SASL challenge): write ``data`` as it is.
    ``ok`` is False for 4xx/5xx, so the adapter can drop a client that only sends garbage."""

    data: bytes
    ok: bool


@dataclass(frozen=True)
class Helo(_Answer):
    """HELO, EHLO or LHLO. A 2xx answer starts a fresh session state; for EHLO and LHLO the
    core writes the hostname first and the extension lines after the answer's text."""

    name: str
    extended: bool
    lmtp: bool = False


@dataclass(frozen=True)
class MailFrom(_Answer):
    """MAIL FROM. The null reverse-path ``<>`` gives ``address == ""``. The local part and the
    domain are as the client wrote them (quotes kept); a source route is dropped."""

    address: str
    local_part: str
    domain: str
    params: MailParams = MailParams()


@dataclass(frozen=True)
class RcptTo(_Answer):
    """RCPT TO. A 2xx answer counts the recipient as accepted. The bare ``<postmaster>``
    (RFC 5321 §4.5.1) gives ``local_part == address == "postmaster"`` and ``domain == ""``."""

    address: str
    local_part: str
    domain: str
    params: RcptParams = RcptParams()


@dataclass(frozen=True)
class DataStart(_Answer):
    """DATA with a valid transaction: answer 354 to read the message, or a 4xx/5xx."""


@dataclass(frozen=True)
class DataChunk(_Notice):
    """Message bytes after DATA, dot-unstuffed, in arrival order, never the whole message."""

    data: bytes


@dataclass(frozen=True)
class DataEnd(_Answer):
    """``<CRLF>.<CRLF>`` arrived. ``size`` counts the unstuffed octets. With ``oversized`` the
    data past ``max_message_size`` was dropped: answer 552 5.3.4. ``bare_newline``: a CR or LF
    not part of a CRLF was seen. In LMTP send one reply per accepted recipient, in RCPT order
    (a single reply is repeated for all). Any answer ends the transaction."""

    size: int
    oversized: bool
    bare_newline: bool


@dataclass(frozen=True)
class BdatChunk(_Notice):
    """Octets of a BDAT chunk (RFC 3030), possibly in several pieces."""

    data: bytes


@dataclass(frozen=True)
class BdatEnd(_Answer):
    """A BDAT chunk of ``size`` octets was read in full; ``total`` counts the transaction so
    far. Answer 250 to go on; a 4xx/5xx fails the transaction, and later BDATs are read and
    refused. After ``last`` the answer (one per recipient in LMTP) ends the transaction."""

    size: int
    last: bool
    total: int
    oversized: bool
    bare_newline: bool


@dataclass(frozen=True)
class Rset(_Answer):
    """RSET: the transaction is dropped whatever the answer (normally ``replies.OK``)."""


@dataclass(frozen=True)
class Noop(_Answer):
    """NOOP, with its ignored argument (RFC 5321 §4.1.1.9)."""

    text: str = ""


@dataclass(frozen=True)
class Quit(_Answer):
    """QUIT: answer (normally ``replies.BYE``), then close; the core reads nothing more."""


@dataclass(frozen=True)
class StartTls(_Answer):
    """STARTTLS: answer 220, do the handshake, call ``tls_established()``; or 454."""


@dataclass(frozen=True)
class AuthCredentials(_Answer):
    """A finished SASL PLAIN or LOGIN exchange: check the password, answer 235 2.7.0 or
    535 5.7.8. ``authzid`` is "" when the client asked for no other identity."""

    mechanism: str
    authzid: str
    authcid: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Vrfy(_Answer):
    """VRFY: usually answered ``replies.CANNOT_VRFY`` (RFC 5321 §3.5.3)."""

    argument: str


@dataclass(frozen=True)
class Expn(_Answer):
    """EXPN: usually refused or answered 252."""

    argument: str


@dataclass(frozen=True)
class Help(_Answer):
    """HELP, with its optional topic."""

    argument: str = ""


@dataclass(frozen=True)
class ConnectionClosed(_Notice):
    """The client closed its side; a message being received is incomplete and must go."""


Event = (
    Answered
    | Helo
    | MailFrom
    | RcptTo
    | DataStart
    | DataChunk
    | DataEnd
    | BdatChunk
    | BdatEnd
    | Rset
    | Noop
    | Quit
    | StartTls
    | AuthCredentials
    | Vrfy
    | Expn
    | Help
    | ConnectionClosed
)

