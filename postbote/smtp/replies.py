"""SMTP replies: the value the adapter hands the core, its wire form, and one table of texts.

A reply is a code, an enhanced status code (RFC 3463, announced by RFC 2034
ENHANCEDSTATUSCODES) and some text. Keeping every fixed reply in one table below means the
words a client sees for a given refusal are chosen once, and tests can name them.
``Refusal`` carries one of those replies out of the server core's parsers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CRLF = b"\r\n"

# RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets including the code and CRLF.
MAX_REPLY_LINE = 512

_STATUS_SYNTAX = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
# RFC 5321 §4.2: textstring = 1*(%d09 / %d32-126); anything else in a text (a user name, a
# store error) becomes "?" so no reply can inject a second line or raw bytes.
_TEXT_SANITIZER = {c: "?" for c in [*range(0x09), *range(0x0A, 0x20), 0x7F]}


@dataclass(frozen=True)
class Reply:
    """One SMTP reply. ``text`` may hold several lines separated by "\\n" (a multiline reply).

    ``status`` is the enhanced status code; it must be of the same class as ``code`` and is
    left out for the codes that never carry one (220 greeting, 334, 354, EHLO lines).
    """

    code: int
    status: str | None = None
    text: str = ""

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"SMTP reply code must be from 200 to 599, got {self.code}")
        if self.status is not None:
            if not _STATUS_SYNTAX.fullmatch(self.status):
                raise ValueError(f"not an enhanced status code: {self.status!r}")
            if self.status[0] != str(self.code)[0]:
                raise ValueError(f"status {self.status} does not match reply code {self.code}")

    @property
    def lines(self) -> list[str]:
        return self.text.split("\n")

    @property
    def positive(self) -> bool:
        """2xx: the command was accepted (RFC 5321 §4.2.1)."""
        return 200 <= self.code < 300

    @property
    def closes(self) -> bool:
        """421: the server is closing the channel (RFC 5321 §3.8)."""
        return self.code == 421


def encode_lines(code: int, lines: list[str]) -> bytes:
    """``code-line`` for all but the last line, ``code line`` for the last (RFC 5321 §4.2.1)."""
    out = []
    for number, line in enumerate(lines, start=1):
        separator = " " if number == len(lines) else "-"
        text = _clean(line)[: MAX_REPLY_LINE - 6]  # room for the code, separator and CRLF
        wire = f"{code}{separator}{text}" if text or separator == "-" else str(code)
        out.append(wire.encode("ascii") + CRLF)
    return b"".join(out)


def format_reply(reply: Reply, enhanced: bool = True) -> bytes:
    """The wire form. RFC 2034 §4: with ENHANCEDSTATUSCODES every line carries the status."""
    prefix = f"{reply.status} " if enhanced and reply.status else ""
    return encode_lines(reply.code, [f"{prefix}{line}".rstrip() for line in reply.lines])


def _clean(text: str) -> str:
    cleaned = text.translate(_TEXT_SANITIZER)
    return cleaned.encode("ascii", "replace").decode("ascii")


class Refusal(Exception):
    """Stop handling this command and answer ``reply``. Raised by the server core's parsers
    (parameters, SASL) and caught by the core, which answers it: it never reaches the adapter."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.text)
        self.reply = reply


# --- the replies the core gives by itself ----------------------------------------------------

UNRECOGNIZED = Reply(500, "5.5.2", "Syntax error, command unrecognized")
LINE_TOO_LONG = Reply(500, "5.5.6", "Line too long")
CONTROL_CHARACTERS = Reply(500, "5.5.2", "Syntax error, control characters in command")
BAD_UTF8 = Reply(500, "5.5.2", "Syntax error, command is not valid UTF-8")
NOT_IMPLEMENTED = Reply(502, "5.5.1", "Command not implemented")
NO_PARAMETERS = Reply(501, "5.5.4", "Syntax error, no parameters allowed")
HELO_SYNTAX = Reply(501, "5.5.4", "Syntax: EHLO domain")
LHLO_SYNTAX = Reply(501, "5.5.4", "Syntax: LHLO domain")
MAIL_SYNTAX = Reply(501, "5.5.4", "Syntax: MAIL FROM:<address> [parameters]")
RCPT_SYNTAX = Reply(501, "5.5.4", "Syntax: RCPT TO:<address> [parameters]")
BDAT_SYNTAX = Reply(501, "5.5.4", "Syntax: BDAT size [LAST]")
AUTH_SYNTAX = Reply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
ARGUMENT_REQUIRED = Reply(501, "5.5.4", "Syntax error, argument required")
BAD_SENDER = Reply(501, "5.1.7", "Bad sender address syntax")
BAD_RECIPIENT = Reply(501, "5.1.3", "Bad recipient address syntax")
SEND_HELO_FIRST = Reply(503, "5.5.1", "Send EHLO or HELO first")
SEND_LHLO_FIRST = Reply(503, "5.5.1", "Send LHLO first")
SEND_EHLO_FIRST = Reply(503, "5.5.1", "Send EHLO first")
NESTED_MAIL = Reply(503, "5.5.1", "Sender already specified")
NEED_MAIL = Reply(503, "5.5.1", "Send MAIL first")
NO_VALID_RECIPIENTS = Reply(554, "5.5.1", "No valid recipients")
BDAT_IN_PROGRESS = Reply(503, "5.5.1", "Command not allowed after BDAT")
DATA_AFTER_BDAT = Reply(503, "5.5.1", "DATA cannot be mixed with BDAT")
BINARYMIME_NEEDS_BDAT = Reply(503, "5.5.1", "BODY=BINARYMIME requires BDAT")
GREETING_REFUSED = Reply(503, "5.5.1", "Service refused, send QUIT")
TLS_ALREADY_ACTIVE = Reply(503, "5.5.1", "TLS already active")
ALREADY_AUTHENTICATED = Reply(503, "5.5.1", "Already authenticated")
AUTH_IN_TRANSACTION = Reply(503, "5.5.1", "AUTH not allowed during a mail transaction")
UNKNOWN_MECHANISM = Reply(504, "5.5.4", "Unrecognized authentication mechanism")
BAD_BASE64 = Reply(501, "5.5.2", "Invalid base64 data")
BAD_SASL_MESSAGE = Reply(501, "5.5.2", "Malformed authentication message")
AUTH_CANCELLED = Reply(501, "5.0.0", "Authentication cancelled")
ENCRYPTION_REQUIRED = Reply(
    538, "5.7.11", "Encryption required for requested authentication mechanism"
)
MUST_STARTTLS = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
UNKNOWN_PARAMETER = Reply(555, "5.5.4", "Parameter not recognized or not implemented")
BAD_PARAMETER = Reply(501, "5.5.4", "Syntax error in parameters")
DUPLICATE_PARAMETER = Reply(501, "5.5.4", "Parameter given twice")
SIZE_EXCEEDED = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
NON_ASCII_SENDER = Reply(553, "5.6.7", "Non-ASCII addresses not permitted for that sender")
NON_ASCII_RECIPIENT = Reply(553, "5.6.7", "Non-ASCII addresses not permitted for that recipient")

# --- replies an adapter commonly gives (it may give any other) ------------------------------

OK = Reply(250, "2.0.0", "OK")
HELLO = Reply(250, None, "")
SENDER_OK = Reply(250, "2.1.0", "Sender OK")
RECIPIENT_OK = Reply(250, "2.1.5", "Recipient OK")
START_DATA = Reply(354, None, "End data with <CR><LF>.<CR><LF>")
CHUNK_OK = Reply(250, "2.0.0", "Chunk accepted")
MESSAGE_ACCEPTED = Reply(250, "2.0.0", "Message accepted")
BYE = Reply(221, "2.0.0", "Bye")
READY_TLS = Reply(220, "2.0.0", "Ready to start TLS")
TLS_UNAVAILABLE = Reply(454, "4.7.0", "TLS not available due to temporary reason")
AUTH_SUCCEEDED = Reply(235, "2.7.0", "Authentication successful")
AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")
CANNOT_VRFY = Reply(
    252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery"
)
HELP = Reply(214, "2.0.0", "See RFC 5321")
MESSAGE_TOO_BIG = SIZE_EXCEEDED
BARE_NEWLINE = Reply(550, "5.5.2", "Bare CR or LF in message data not allowed, use CRLF")
TEMPORARY_FAILURE = Reply(451, "4.3.0", "Temporary failure, try again later")
CLOSING = Reply(421, "4.3.2", "Service shutting down, closing channel")
