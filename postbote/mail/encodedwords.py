"""RFC 2047 encoded words (``=?charset?B|Q?text?=``) decoded to text, tolerantly.

Adjacent encoded words are joined before decoding because senders split multi-byte
characters across words; the whitespace between them is dropped (RFC 2047 §6.2).
"""

from __future__ import annotations

import re

from postbote.mail.charsets import decode_text
from postbote.mail.transfer import decode_base64

# Simple character classes with no nested quantifiers: linear on any input.
_WORD = re.compile(r"=\?([^?\s]{1,75})\?([bBqQ])\?([^?\s]*)\?=")
_QP_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")


def decode_q(text: bytes) -> bytes:
    """RFC 2047 §4.2: "_" is a space, "=XX" a byte."""
    return _QP_HEX.sub(lambda m: bytes([int(m.group(1), 16)]), text.replace(b"_", b" "))


def _word_bytes(match: re.Match[str]) -> bytes:
    payload = match.group(3).encode("latin-1", "replace")
    if match.group(2) in "bB":
        return decode_base64(payload)
    return decode_q(payload)


def decode_words(value: str) -> str:
    """Decode every encoded word in ``value``; text that is not encoded is kept as it is."""
    if "=?" not in value:
        return value
    out: list[str] = []
    pending = b""
    pending_charset: str | None = None
    pos = 0
    for match in _WORD.finditer(value):
        gap = value[pos : match.start()]
        charset = match.group(1).split("*", 1)[0].lower()
        joined = pending_charset is not None and not gap.strip()
        if pending_charset is not None and not (joined and charset == pending_charset):
            out.append(decode_text(pending, pending_charset))
            pending, pending_charset = b"", None
        if not joined:
            out.append(gap)
        pending += _word_bytes(match)
        pending_charset = charset
        pos = match.end()
    if pending_charset is not None:
        out.append(decode_text(pending, pending_charset))
    out.append(value[pos:])
    return "".join(out)
