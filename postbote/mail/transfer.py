"""Content-Transfer-Encoding decoding (RFC 2045 §6) that tolerates what real senders emit.

IMAP BINARY, search and the spam filter all need the decoded octets of a part; a broken
encoding must still yield the best bytes we can recover, never an exception.
"""

from __future__ import annotations

import binascii

_B64_KEEP = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_DROP = bytes(b for b in range(256) if b not in _B64_KEEP)


def decode_base64(data: bytes) -> bytes:
    """RFC 2045 §6.8: characters outside the alphabet are ignored; padding is repaired.

    Padding inside the data (concatenated encoders) is dropped with the rest of the noise,
    which keeps the decoder total at the price of misaligning such rare bodies.
    """
    clean = data.translate(None, _B64_DROP)
    if len(clean) % 4 == 1:
        clean = clean[:-1]
    clean += b"=" * (-len(clean) % 4)
    try:
        return binascii.a2b_base64(clean)
    except binascii.Error:
        return b""


def decode_quoted_printable(data: bytes) -> bytes:
    """RFC 2045 §6.7: soft line breaks removed, "=XX" decoded, malformed escapes kept literally."""
    return binascii.a2b_qp(data)


def decode_transfer(body: bytes, encoding: str | None) -> bytes:
    """The octets a part's body stands for; identity encodings and unknown ones pass through."""
    name = (encoding or "").strip().lower()
    if name == "base64":
        return decode_base64(body)
    if name == "quoted-printable":
        return decode_quoted_printable(body)
    return body
