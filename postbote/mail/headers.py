"""Header fields (RFC 5322 §2.2, §3.4, §3.6.4): the header block located by byte offsets,
unfolded fields, address lists with groups, and msg-id lists.

Everything here is total: malformed input yields fewer or emptier values, never an error,
because a mail server must store and serve whatever it accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from postbote.mail.charsets import decode_unknown
from postbote.mail.encodedwords import decode_words

Fields = list[tuple[str, str]]

# RFC 5322 §3.6.8: printable US-ASCII except ":".
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+\Z")
_MSG_ID = re.compile(r"<[^<>]*>")


# Fields past this many lines are not parsed (the bytes stay in the header block): a real
# header is far shorter, and this keeps a hostile header from costing Python-speed work.
MAX_HEADER_LINES = 20_000


def header_end(raw: bytes, start: int, end: int) -> int:
    """Offset just past the empty line that ends the header block at ``start``, or ``end``."""
    if raw.startswith(b"\n", start, end):
        return start + 1
    if raw.startswith(b"\r\n", start, end):
        return start + 2
    lf = raw.find(b"\n\n", start, end)
    crlf = raw.find(b"\n\r\n", start, end)
    if lf < 0 and crlf < 0:
        return end
    if crlf < 0 or 0 <= lf < crlf:
        return lf + 2
    return crlf + 3


def scan_header(raw: bytes, start: int, end: int) -> tuple[Fields, int]:
    """Fields of the header block at ``raw[start:end]`` and the offset where the body starts.

    The block ends after the first empty line (CRLF or bare LF); without one, all of the
    range is header. Lines that are neither a field nor a continuation are skipped (an mbox
    "From " line, for example), but stay inside the block.
    """
    body = header_end(raw, start, end)
    fields: Fields = []
    name: bytes | None = None
    chunks: list[bytes] = []
    lines = raw[start:body].split(b"\n", MAX_HEADER_LINES)[:MAX_HEADER_LINES]
    for line in lines:
        content = line.rstrip(b"\r")
        if not content:
            continue
        if content[0] in b" \t":
            if name is not None:
                chunks.append(content)  # RFC 5322 §2.2.3: unfolding removes only the CRLF
        else:
            _flush(fields, name, chunks)
            name, chunks = _start_field(content)
    _flush(fields, name, chunks)
    return fields, body


def _start_field(line: bytes) -> tuple[bytes | None, list[bytes]]:
    colon = line.find(b":")
    # RFC 5322 §4.5.1 obs-optional: whitespace may precede the colon.
    name = line[:colon].rstrip(b" \t") if colon > 0 else b""
    if not _FIELD_NAME.match(name):
        return None, []
    return name, [line[colon + 1 :]]


def _flush(fields: Fields, name: bytes | None, chunks: list[bytes]) -> None:
    if name is not None:
        value = b"".join(chunks).strip(b" \t\r")
        fields.append((name.decode("ascii"), decode_unknown(value)))


def first(fields: Fields, name: str) -> str | None:
    """The first field of that name (case-insensitive); senders rarely repeat these, and the
    first is what most clients show."""
    wanted = name.lower()
    for key, value in fields:
        if key.lower() == wanted:
            return value
    return None


# --- address lists --------------------------------------------------------------------------


@dataclass(frozen=True)
class Address:
    """One element of an address list, in the shape IMAP's ENVELOPE uses (RFC 9051 §7.5.2).

    A group is bracketed by markers: the start has ``mailbox`` = group name and ``host`` None,
    the end has every field None. A real address always has str ``mailbox`` and ``host``
    (empty when the header left them out).
    """

    name: str | None
    mailbox: str | None
    host: str | None
    adl: str | None = None

    @property
    def is_group_start(self) -> bool:
        return self.host is None and self.mailbox is not None

    @property
    def is_group_end(self) -> bool:
        return self.host is None and self.mailbox is None

    @property
    def addr_spec(self) -> str | None:
        """``mailbox@host`` for a real address, None for a group marker."""
        if self.host is None or self.mailbox is None:
            return None
        return f"{self.mailbox}@{self.host}" if self.host else self.mailbox


GROUP_END = Address(None, None, None)

_SPECIALS = "<>@,;:."


@dataclass(frozen=True)
class _Tok:
    kind: str  # "atom", "quoted", "comment", "literal", or the special character itself
    text: str
    spaced: bool  # whitespace (or a comment) came before it


def _read_until(text: str, pos: int, close: str) -> tuple[str, int]:
    """Text up to ``close`` with backslash escapes removed; unclosed runs to the end."""
    out: list[str] = []
    n = len(text)
    while pos < n:
        ch = text[pos]
        if ch == "\\" and pos + 1 < n:
            out.append(text[pos + 1])
            pos += 2
            continue
        if ch == close:
            return "".join(out), pos + 1
        out.append(ch)
        pos += 1
    return "".join(out), n


def _read_comment(text: str, pos: int) -> tuple[str, int]:
    """A nested comment starting after its "("; returns its text without the outer parens."""
    out: list[str] = []
    depth = 1
    n = len(text)
    while pos < n:
        ch = text[pos]
        if ch == "\\" and pos + 1 < n:
            out.append(text[pos + 1])
            pos += 2
            continue
        depth += (ch == "(") - (ch == ")")
        if depth == 0:
            return "".join(out), pos + 1
        out.append(ch)
        pos += 1
    return "".join(out), n


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos, n, spaced = 0, len(text), False
    while pos < n:
        ch = text[pos]
        if ch in " \t\r\n":
            pos, spaced = pos + 1, True
            continue
        if ch == '"':
            value, pos = _read_until(text, pos + 1, '"')
            toks.append(_Tok("quoted", value, spaced))
        elif ch == "(":
            value, pos = _read_comment(text, pos + 1)
            toks.append(_Tok("comment", value, spaced))
        elif ch == "[":
            value, pos = _read_until(text, pos + 1, "]")
            toks.append(_Tok("literal", f"[{value}]", spaced))
        elif ch in _SPECIALS:
            toks.append(_Tok(ch, ch, spaced))
            pos += 1
        else:
            start = pos
            while pos < n and text[pos] not in ' \t\r\n"([' and text[pos] not in _SPECIALS:
                pos += 1
            toks.append(_Tok("atom", text[start:pos], spaced))
        spaced = toks[-1].kind == "comment"
    return toks


def _phrase(toks: list[_Tok]) -> str:
    """Display-name words joined as written; quoted strings lose their quotes (RFC 5322 §3.2.4)."""
    out: list[str] = []
    for tok in toks:
        if tok.kind == "comment":
            continue
        if out and tok.spaced:
            out.append(" ")
        out.append(tok.text)
    return "".join(out).strip()


def _quote_local(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _addr_spec(toks: list[_Tok]) -> tuple[str, str]:
    """(local part, domain); a quoted local part keeps its quotes so it can be rebuilt."""
    words = [t for t in toks if t.kind != "comment"]
    at = max((i for i, t in enumerate(words) if t.kind == "@"), default=-1)
    local_toks, domain_toks = (words[:at], words[at + 1 :]) if at >= 0 else (words, [])
    local = "".join(_quote_local(t.text) if t.kind == "quoted" else t.text for t in local_toks)
    domain = "".join(t.text for t in domain_toks)
    return local, domain


def _mailbox(item: list[_Tok]) -> Address | None:
    if not any(t.kind != "comment" for t in item):
        return None
    kinds = [t.kind for t in item]
    if "<" not in kinds:
        local, domain = _addr_spec(item)
        comments = [t.text.strip() for t in item if t.kind == "comment" and t.text.strip()]
        # A trailing comment was the display name before RFC 822 had phrases.
        return Address(comments[-1] if comments else None, local, domain)
    lt = kinds.index("<")
    gt = kinds.index(">", lt) if ">" in kinds[lt:] else len(item)
    inner = [t for t in item[lt + 1 : gt] if t.kind != "comment"]
    adl = None
    if inner and inner[0].kind == "@" and ":" in [t.kind for t in inner]:
        colon = [t.kind for t in inner].index(":")
        adl = "".join(t.text for t in inner[:colon])  # RFC 5322 §4.4 obs-route
        inner = inner[colon + 1 :]
    local, domain = _addr_spec(inner)
    return Address(_phrase(item[:lt]) or None, local, domain, adl)


def parse_address_list(value: str | None) -> list[Address]:
    """RFC 5322 address-list with groups, lenient; names stay undecoded (for ENVELOPE)."""
    if not value:
        return []
    out: list[Address] = []
    item: list[_Tok] = []
    in_angle = in_group = False
    is_mailbox = False  # an "@" or "<" was seen, so a ":" cannot start a group

    def emit() -> None:
        nonlocal is_mailbox
        addr = _mailbox(item)
        if addr is not None:
            out.append(addr)
        item.clear()
        is_mailbox = False

    for tok in _tokenize(value):
        if in_angle:
            item.append(tok)
            in_angle = tok.kind != ">"
        elif tok.kind == "<":
            item.append(tok)
            in_angle = is_mailbox = True
        elif tok.kind == ",":
            emit()
        elif tok.kind == ";":
            emit()
            if in_group:
                out.append(GROUP_END)
                in_group = False
        elif tok.kind == ":" and not in_group and not is_mailbox:
            out.append(Address(None, _phrase(item), None))
            item.clear()
            in_group = True
        else:
            item.append(tok)
            is_mailbox = is_mailbox or tok.kind == "@"
    emit()
    if in_group:
        out.append(GROUP_END)
    return out


def decode_names(addresses: list[Address]) -> list[Address]:
    """The same list with display names and group names RFC 2047-decoded, for people."""
    out: list[Address] = []
    for addr in addresses:
        if addr.is_group_start and addr.mailbox:
            addr = replace(addr, mailbox=decode_words(addr.mailbox))
        elif addr.name:
            addr = replace(addr, name=decode_words(addr.name))
        out.append(addr)
    return out


def parse_msg_ids(value: str | None) -> list[str]:
    """The ``<id>`` tokens of Message-ID, In-Reply-To or References (RFC 5322 §3.6.4);
    bare words when a sender forgot the brackets."""
    if not value:
        return []
    ids = ["".join(m.group(0).split()) for m in _MSG_ID.finditer(value)]
    return ids or value.split()
