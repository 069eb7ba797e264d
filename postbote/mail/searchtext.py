"""Readable text of a message's text/* parts, for IMAP SEARCH BODY/TEXT and filters.

Decoding is bounded by the caller's character limit: only as many encoded bytes are read as
could yield that many characters, so a huge attachment-like text part costs no more than
a small one.
"""

from __future__ import annotations

import html

from postbote.mail.charsets import decode_text
from postbote.mail.mime import Part
from postbote.mail.transfer import decode_transfer

DEFAULT_LIMIT = 1_000_000
# Encoded bytes read per wanted character: base64 needs 4/3, an HTML or QP byte may be noise.
_BYTES_PER_CHAR = 8
_INVISIBLE = ("script", "style", "head")


def strip_html(text: str) -> str:
    """Drop tags, script/style/head contents and comments; unescape entities. Crude, linear."""
    out: list[str] = []
    pos, n = 0, len(text)
    while pos < n:
        lt = text.find("<", pos)
        if lt < 0:
            out.append(text[pos:])
            break
        out.append(text[pos:lt])
        pos = _skip_tag(text, lt)
        out.append(" ")
    return html.unescape("".join(out))


def _skip_tag(text: str, lt: int) -> int:
    """Index after the tag at ``lt`` (and after the whole element when its content is hidden)."""
    if text.startswith("<!--", lt):
        end = text.find("-->", lt + 4)
        return len(text) if end < 0 else end + 3
    gt = text.find(">", lt)
    if gt < 0:
        return len(text)
    words = text[lt + 1 : gt].split(None, 1)
    name = words[0].lower() if words else ""
    if name in _INVISIBLE:
        return _closing_tag(text, name, gt)
    return gt + 1


def _closing_tag(text: str, name: str, pos: int) -> int:
    """Start of ``</name`` (any case) after ``pos``, or the end of the text."""
    while True:
        pos = text.find("</", pos)
        if pos < 0:
            return len(text)
        if text[pos + 2 : pos + 2 + len(name)].lower() == name:
            return pos
        pos += 2


def part_text(raw: bytes, part: Part, limit: int) -> str:
    """The decoded, tag-stripped text of one text/* leaf, at most about ``limit`` characters."""
    body = raw[part.bstart : min(part.bend, part.bstart + limit * _BYTES_PER_CHAR)]
    text = decode_text(decode_transfer(body, part.encoding), part.params.get("charset"))
    if part.subtype in ("html", "xhtml+xml"):
        text = strip_html(text)
    return text[:limit]


def search_text(raw: bytes, root: Part, limit: int = DEFAULT_LIMIT) -> str:
    """Text of every text/* leaf (embedded messages included), joined, at most ``limit`` chars."""
    pieces: list[str] = []
    left = limit
    for part in root.walk():
        if left <= 0:
            break
        if part.type != "text" or part.children:
            continue
        text = part_text(raw, part, left)
        pieces.append(text)
        left -= len(text) + 1
    return "\n".join(pieces)[:limit]
