"""Envelope addresses: validation and the one normal form used for lookups.

Accounts, aliases and recipients are compared in a single canonical form so
that ``Alice@Example.COM`` and ``alice@example.com`` are the same mailbox:
the domain is lowercased and its A-labels (``xn--``) turned into U-labels,
since with RFC 6531 (SMTPUTF8) clients may send either form; the local part
is lowercased too (RFC 5321 §2.4 allows case-sensitive local parts, but every
deployed server folds them, and users expect it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# RFC 5321 §4.5.3.1: local part at most 64 octets, domain at most 255.
MAX_LOCAL = 64
MAX_DOMAIN = 255

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_LABEL = re.compile(r"[a-z0-9\u0080-\U0010ffff](?:[a-z0-9\-\u0080-\U0010ffff]*[a-z0-9\u0080-\U0010ffff])?")


class AddressError(ValueError):
    """An address is not valid; the message says what is wrong with it."""


@dataclass(frozen=True)
class Address:
    """A normalised ``local@domain``; ``tag`` is the ``+tag`` subaddress, if any."""

    local: str
    domain: str

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def base(self) -> "Address":
        """The address without its subaddress: ``user+tag@d`` → ``user@d``."""
        local, plus, _ = self.local.partition("+")
        return Address(local, self.domain) if plus and local else self

    @property
    def tag(self) -> str | None:
        local, plus, tag = self.local.partition("+")
        return tag if plus and local else None


def normalize_domain(domain: str) -> str:
    """Lowercase, strip a trailing dot, and convert A-labels to U-labels."""
    domain = domain.strip().rstrip(".").lower()
    if not domain or len(domain) > MAX_DOMAIN:
        raise AddressError(f"invalid domain {domain!r}")
    labels = []
    for label in domain.split("."):
        if label.startswith("xn--"):
            try:
                label = label.encode("ascii").decode("idna")
            except UnicodeError:
                raise AddressError(f"invalid IDNA label {label!r} in domain {domain!r}") from None
        if not _LABEL.fullmatch(label) or len(label) > 63:
            raise AddressError(f"invalid domain {domain!r}")
        labels.append(label)
    return ".".join(labels)


def parse_address(text: str) -> Address:
    """Parse and normalise ``local@domain``; raises AddressError with a clear reason."""
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    local, at, domain = text.rpartition("@")
    if not at or not local:
        raise AddressError(f"invalid address {text!r}: expected local@domain")
    if local.startswith('"') and local.endswith('"') and len(local) >= 2:
        local = local[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        if any(c in local for c in "\r\n\0"):
            raise AddressError(f"invalid address {text!r}")
    elif not _DOT_ATOM.fullmatch(local):
        raise AddressError(f"invalid address {text!r}: bad local part")
    if len(local.encode()) > MAX_LOCAL:
        raise AddressError(f"invalid address {text!r}: local part longer than {MAX_LOCAL} octets")
    return Address(local.lower(), normalize_domain(domain))


def is_valid_address(text: str) -> bool:
    try:
        parse_address(text)
    except AddressError:
        return False
    return True
