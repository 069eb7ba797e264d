"""Address syntax of MAIL FROM and RCPT TO (RFC 5321 §4.1.2, RFC 6531 §3.3).

The reverse- and forward-path grammar is a sizeable piece of the command syntax with no state
at all, so it stands alone: the server core asks whether a path is well-formed and what its
local part and domain are, and keeps the policy (SMTPUTF8, the bare postmaster) to itself.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

NON_ASCII = "\u0080-\U0010ffff"  # RFC 6531 §3.3: UTF8-non-ascii, checked against SMTPUTF8 later
_ATEXT = rf"[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~\-{NON_ASCII}]"
_DOT_STRING = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_QUOTED_STRING = re.compile(rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{NON_ASCII}]|\\[\x20-\x7e])*"')
_LET_DIG = rf"[A-Za-z0-9{NON_ASCII}]"
_SUB_DOMAIN = rf"{_LET_DIG}(?:[A-Za-z0-9\-{NON_ASCII}]*{_LET_DIG})?"
_DOMAIN = re.compile(rf"{_SUB_DOMAIN}(?:\.{_SUB_DOMAIN})*")
_GENERAL_LITERAL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?:[\x21-\x5a\x5e-\x7e]+")


@dataclass(frozen=True)
class Mailbox:
    """A Mailbox of a path (RFC 5321 §4.1.2), local part and domain as the client wrote them;
    ``domain`` is "" only for the bare ``<postmaster>``."""

    local_part: str
    domain: str

    @property
    def address(self) -> str:
        return f"{self.local_part}@{self.domain}" if self.domain else self.local_part

    @property
    def ascii(self) -> bool:
        return self.address.isascii()


def split_path(text: str) -> tuple[str, str] | None:
    """``<...>`` and what follows it. Quotes are tracked so ``<"a>b"@x>`` stays whole."""
    if not text.startswith("<"):
        return None
    quoted = False
    i = 1
    while i < len(text):
        char = text[i]
        if quoted and char == "\\":
            i += 2
            continue
        if char == '"':
            quoted = not quoted
        elif char == ">" and not quoted:
            rest = text[i + 1 :]
            if rest and not rest.startswith(" "):
                return None
            return text[1:i], rest
        i += 1
    return None


def parse_mailbox(inner: str) -> Mailbox | None:
    """RFC 5321 §4.1.2 Path without its brackets: an optional source route (RFC 5321 §C,
    ignored), a Dot-string or Quoted-string local part, a domain or address literal."""
    if inner.startswith("@"):
        route, colon, inner = inner.partition(":")
        if not colon or not all(
            hop.startswith("@") and _DOMAIN.fullmatch(hop[1:]) for hop in route.split(",")
        ):
            return None
    if inner.startswith('"'):
        quoted = _QUOTED_STRING.match(inner)
        if quoted is None:
            return None
        end = quoted.end()
        local, at, domain = inner[:end], inner[end : end + 1], inner[end + 1 :]
    else:
        local, at, domain = inner.partition("@")
        if not _DOT_STRING.fullmatch(local):
            return None
    if at != "@" or not _valid_domain(domain):
        return None
    return Mailbox(local, domain)


def _valid_domain(domain: str) -> bool:
    if not (domain.startswith("[") and domain.endswith("]")):
        return _DOMAIN.fullmatch(domain) is not None and len(domain) <= 255
    literal = domain[1:-1]
    if literal[:5].upper() == "IPV6:":
        try:
            return "%" not in literal and bool(ipaddress.IPv6Address(literal[5:]))
        except ValueError:
            return False
    if _GENERAL_LITERAL.fullmatch(literal):
        return True
    try:
        ipaddress.IPv4Address(literal)
    except ValueError:
        return False
    return True

