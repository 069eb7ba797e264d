"""DKIM signing of the mail our users send (RFC 6376), with every key of the author's domain.

The signing domain is the domain of the From: address (so DMARC aligns), and
only a domain with keys in ``DATA/dkim/`` is signed for, which means only our
own domains. Each key signs: RFC 8463 §4 asks for an Ed25519 and an RSA
signature side by side, since verifiers that do not know Ed25519 ignore it.
Signing runs in the executor: RSA is milliseconds of CPU.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import dkim

from postbote.filters.pipeline import FilterResult, MessageContext
from postbote.log import event
from postbote.mail.address import AddressError, parse_address
from postbote.mailauth.keys import SigningKey, load_keys

log = logging.getLogger("postbote.dkim")

# Relaxed header canonicalization survives the folding changes some relays make (RFC 6376 §3.4.2).
CANONICALIZE = (b"relaxed", b"relaxed")


class DkimSigner:
    name = "dkim-sign"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    async def check(self, ctx: MessageContext) -> FilterResult:
        if not ctx.outgoing:
            return FilterResult()
        loop = asyncio.get_running_loop()
        signatures = await loop.run_in_executor(None, self._sign, ctx)
        return FilterResult(prepend=signatures)

    def _sign(self, ctx: MessageContext) -> bytes:
        message = ctx.read()
        domain = author_domain(message)
        if domain is None:
            return b""
        keys = load_keys(self.data_dir, domain)
        out = b""
        for key in keys:
            try:
                out += sign(message, key)
            except dkim.DKIMException as exc:
                event(log, "dkim signing failed", logging.WARNING, queue_id=ctx.queue_id, domain=domain,
                      selector=key.selector, error=str(exc))
        return out


def sign(message: bytes, key: SigningKey) -> bytes:
    """One DKIM-Signature field, CRLF-terminated, for ``message`` (CRLF line ends)."""
    return dkim.sign(message, key.selector.encode(), key.domain.encode(), key.dkimpy_private,
                     canonicalize=CANONICALIZE, signature_algorithm=key.algorithm.encode(), linesep=b"\r\n")


def author_domain(message: bytes) -> str | None:
    """The domain of the single From: address, lowercased; None when there is none."""
    header = message.split(b"\r\n\r\n", 1)[0]
    lines = header.split(b"\r\n")
    for i, line in enumerate(lines):
        if line[:5].lower() == b"from:":
            value = line[5:]
            for more in lines[i + 1:]:
                if not more[:1] in (b" ", b"\t"):
                    break
                value += more
            text = value.decode("utf-8", "replace")
            start, end = text.rfind("<"), text.rfind(">")
            addr = text[start + 1:end] if 0 <= start < end else text.strip()
            try:
                return parse_address(addr.strip()).domain
            except AddressError:
                return None
    return None
