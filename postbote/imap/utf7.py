"""Modified UTF-7 for mailbox names (RFC 3501 §5.1.3).

IMAP4rev1 clients that have not enabled UTF8=ACCEPT name mailboxes in this encoding, so the
parser decodes it on the way in and the encoder produces it on the way out. Decoding is
strict: every name has exactly one valid spelling, which keeps two spellings of one name from
becoming two mailboxes (and lets a client's encoder be checked by a round trip).
"""

from __future__ import annotations

import base64
import binascii
import re

_BASE64_CHARS = re.compile(r"[A-Za-z0-9+,]*")


class Mutf7Error(ValueError):
    """The text is not valid modified UTF-7; the message says what is wrong."""


def _is_direct(char: str) -> bool:
    """RFC 3501 §5.1.3: printable US-ASCII other than "&" represents itself."""
    return " " <= char <= "~" and char != "&"


def _encode_run(run: str) -> str:
    # surrogatepass keeps a name holding a lone surrogate encodable; decoding rejects it.
    utf16 = run.encode("utf-16-be", "surrogatepass")
    b64 = base64.b64encode(utf16).rstrip(b"=").replace(b"/", b",")
    return "&" + b64.decode("ascii") + "-"


def encode_mutf7(name: str) -> str:
    """Spell a Unicode mailbox name in modified UTF-7."""
    out: list[str] = []
    run_start = -1
    for index, char in enumerate(name):
        if _is_direct(char):
            if run_start >= 0:
                out.append(_encode_run(name[run_start:index]))
                run_start = -1
            out.append(char)
        elif char == "&":
            if run_start >= 0:
                out.append(_encode_run(name[run_start:index]))
                run_start = -1
            out.append("&-")
        elif run_start < 0:
            run_start = index
    if run_start >= 0:
        out.append(_encode_run(name[run_start:]))
    return "".join(out)


def _decode_run(b64: str) -> str:
    if not _BASE64_CHARS.fullmatch(b64):
        raise Mutf7Error(f"invalid character in base64 section {b64!r}")
    raw_b64 = b64.replace(",", "/")
    try:
        raw = base64.b64decode(raw_b64 + "=" * (-len(raw_b64) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Mutf7Error(f"invalid base64 section {b64!r}") from exc
    # The shortest spelling, with zero padding bits, is the only valid one.
    if base64.b64encode(raw).rstrip(b"=").replace(b"/", b",").decode("ascii") != b64:
        raise Mutf7Error(f"base64 section {b64!r} is not in canonical form")
    if len(raw) % 2:
        raise Mutf7Error(f"base64 section {b64!r} does not hold whole UTF-16 units")
    try:
        text = raw.decode("utf-16-be")
    except UnicodeDecodeError as exc:
        raise Mutf7Error(f"base64 section {b64!r} holds an unpaired surrogate") from exc
    if any(_is_direct(char) or char == "&" for char in text):
        raise Mutf7Error(f"base64 section {b64!r} encodes printable ASCII")
    return text


def decode_mutf7(text: str) -> str:
    """Read a modified UTF-7 mailbox name; raise Mutf7Error if it is not valid."""
    out: list[str] = []
    index = 0
    previous_run_end = -1
    while index < len(text):
        char = text[index]
        if char != "&":
            if not _is_direct(char):
                raise Mutf7Error(f"character {char!r} must be base64-encoded")
            out.append(char)
            index += 1
            continue
        end = text.find("-", index + 1)
        if end < 0:
            raise Mutf7Error("base64 section is not terminated by '-'")
        section = text[index + 1 : end]
        if section and previous_run_end == index:
            raise Mutf7Error("two adjacent base64 sections must be written as one")
        out.append(_decode_run(section) if section else "&")
        index = end + 1
        if section:
            previous_run_end = index
    return "".join(out)
