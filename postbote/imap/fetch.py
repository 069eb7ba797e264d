"""FETCH items of one message, from its store row, the parse cached at delivery and its blob.

ENVELOPE, BODY and BODYSTRUCTURE come from the cached parse (`store.parsed`), never from a
re-parse; every BODY[section] and BINARY[part] is a slice of the blob located by the cached
offsets. `FetchPlan` says which of those a command needs, so FETCH (UID FLAGS) over a whole
mailbox never touches a blob or a parse.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from postbote.imap import commands as c
from postbote.imap.encode import StreamedLiteral, format_datetime
from postbote.imap.selected import flag_names
from postbote.mail.imapview import bodystructure
from postbote.mail.jsonform import JSON_VERSION, part_from_json
from postbote.mail.message import ParsedMessage, parse_message
from postbote.mail.transfer import decode_transfer
from postbote.store.types import Message

PREVIEW_CHARS = 200  # RFC 8970 §4: at most 256 characters
_IDENTITY_CTE = frozenset({"7bit", "8bit", "binary", ""})
_KNOWN_CTE = _IDENTITY_CTE | {"base64", "quoted-printable"}
_FIELD_START = re.compile(rb"^(?=[^ \t\r\n])", re.MULTILINE)


class FetchError(Exception):
    """A FETCH item cannot be produced; `code` is the response code of the NO."""

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


_FAST_ITEMS = frozenset({"UID", "FLAGS", "MODSEQ", "RFC822.SIZE", "INTERNALDATE"})


@dataclass(frozen=True)
class FetchPlan:
    """What a FETCH command needs beyond the message rows."""

    items: tuple[c.FetchItem, ...]
    needs_parse: bool
    needs_blob: bool
    sets_seen: bool
    fast: bool  # only row items: formatted directly, the hot path of a client's resync
    parse_keys: tuple[str, ...] | None = None  # members of the cached parse; None: all of it

    @classmethod
    def of(cls, items: Sequence[c.FetchItem], readonly: bool) -> FetchPlan:
        parse = blob = seen = False
        for item in items:
            if isinstance(item, c.FetchAtt):
                if item.name in ("ENVELOPE", "BODY", "BODYSTRUCTURE"):
                    parse = True
                elif item.name in ("RFC822.HEADER", "RFC822.TEXT"):
                    parse = blob = True
                elif item.name == "RFC822":
                    blob = True
                seen = seen or item.name in ("RFC822", "RFC822.TEXT")
            elif isinstance(item, c.FetchBody):
                blob = True
                parse = parse or item.section != c.Section()
                seen = seen or not item.peek
            elif isinstance(item, c.FetchBinary):
                parse = blob = True
                seen = seen or not item.peek
            elif isinstance(item, (c.FetchBinarySize, c.FetchPreview)):
                parse = blob = True
        fast = all(isinstance(i, c.FetchAtt) and i.name in _FAST_ITEMS for i in items)
        keys: tuple[str, ...] | None = None
        if parse and not blob:  # ENVELOPE and BODYSTRUCTURE read only their own members
            names = {i.name for i in items if isinstance(i, c.FetchAtt)}
            keys = ("v",) + (("ev",) if "ENVELOPE" in names else ()) + \
                (("r",) if names & {"BODY", "BODYSTRUCTURE"} else ())
        return cls(tuple(items), parse, blob, seen and not readonly, fast, keys)


class Structure:
    """The cached parse of one message, decoded only as far as a FETCH needs: ENVELOPE is
    read straight from the cache, the MIME tree only for BODYSTRUCTURE or a section."""

    def __init__(self, cached: dict | None, raw: bytes | None) -> None:
        self._cached = cached if cached is not None and cached.get("v") == JSON_VERSION else None
        self._raw = raw
        self._full: ParsedMessage | None = None

    @property
    def envelope(self) -> object:
        if self._cached is not None:
            return self._cached["ev"]
        return self.full().envelope

    def bodystructure(self, extended: bool) -> object:
        if self._cached is not None and self._full is None:
            return bodystructure(part_from_json(self._cached["r"]), extended)
        return self.full().bodystructure(extended)

    def full(self) -> ParsedMessage:
        if self._full is None:
            self._full = load_parsed(self._cached, self._raw)
        return self._full


def fast_fetch(seq: int, message: Message, plan: FetchPlan, recent: bool) -> bytes:
    """`* n FETCH (UID .. FLAGS (..))` for row-only items, without the generic writer."""
    parts = []
    for item in plan.items:
        name = item.name  # type: ignore[union-attr]
        if name == "UID":
            parts.append(b"UID %d" % message.uid)
        elif name == "FLAGS":
            parts.append(b"FLAGS (" + " ".join(flag_names(message, recent)).encode() + b")")
        elif name == "MODSEQ":
            parts.append(b"MODSEQ (%d)" % message.modseq)
        elif name == "RFC822.SIZE":
            parts.append(b"RFC822.SIZE %d" % message.size)
        else:
            parts.append(b'INTERNALDATE "' + format_datetime(internaldate(message)).encode() + b'"')
    return b"* %d FETCH (%s)\r\n" % (seq, b" ".join(parts))


def load_parsed(cached: dict | None, raw: bytes | None) -> ParsedMessage:
    """The cached parse; a cache of another version (or none) is re-made from the blob."""
    if cached is not None:
        try:
            return ParsedMessage.from_json(cached, raw=raw)
        except (ValueError, KeyError, TypeError):
            pass
    if raw is None:
        raise FetchError("the message's structure is not available", "SERVERBUG")
    return parse_message(raw)


def internaldate(message: Message) -> dt.datetime:
    return dt.datetime.fromtimestamp(message.internaldate, dt.timezone.utc)


def email_id(message: Message) -> str:
    """RFC 8474 EMAILID: the blob is the message's immutable content, so its id fits."""
    return f"M{message.blob_id}"


def fetch_items(message: Message, plan: FetchPlan, *, recent: bool, parsed: Structure | None,
                raw: bytes | None) -> list[tuple[str, object]]:
    """(response name, value) pairs for one message, in the order they were asked for."""
    out: list[tuple[str, object]] = []
    for item in plan.items:
        out.append((item.response_name(), _value(item, message, recent, parsed, raw)))
    return out


def _value(item: c.FetchItem, m: Message, recent: bool, structure: Structure | None,
           raw: bytes | None) -> object:
    if isinstance(item, c.FetchAtt):
        return _simple(item.name, m, recent, structure, raw)
    assert raw is not None
    if isinstance(item, c.FetchBody) and item.section == c.Section():
        return _partial(raw, item.partial)
    assert structure is not None
    parsed = structure.full()
    if isinstance(item, c.FetchBody):
        return _partial(section_bytes(parsed, raw, item.section), item.partial)
    if isinstance(item, c.FetchBinary):
        return _binary_literal(_partial(binary_bytes(parsed, raw, item.part), item.partial))
    if isinstance(item, c.FetchBinarySize):
        return len(binary_bytes(parsed, raw, item.part))
    return preview(parsed, raw)


def _simple(name: str, m: Message, recent: bool, structure: Structure | None, raw: bytes | None) -> object:
    if name == "UID":
        return m.uid
    if name == "FLAGS":
        return flag_names(m, recent)
    if name == "INTERNALDATE":
        return internaldate(m)
    if name == "RFC822.SIZE":
        return m.size
    if name == "MODSEQ":
        return m.modseq
    if name == "SAVEDATE":
        return dt.datetime.fromtimestamp(m.savedate or m.internaldate, dt.timezone.utc)
    if name == "EMAILID":
        return email_id(m)
    if name == "THREADID":
        return None  # RFC 8474 §5.2: NIL when the server does not thread
    assert raw is not None or structure is not None
    if name == "RFC822":
        return raw
    assert structure is not None
    if name == "ENVELOPE":
        return structure.envelope
    if name == "BODYSTRUCTURE":
        return structure.bodystructure(True)
    if name == "BODY":
        return structure.bodystructure(False)
    assert raw is not None
    parsed = structure.full()
    if name == "RFC822.HEADER":
        return section_bytes(parsed, raw, c.Section(text="HEADER"))
    return section_bytes(parsed, raw, c.Section(text="TEXT"))  # RFC822.TEXT


def _partial(data: bytes, partial: c.Partial | None) -> bytes:
    """RFC 9051 §6.4.5: <origin.length>; an origin past the end gives an empty string."""
    if partial is None:
        return data
    return data[partial.offset : partial.offset + partial.length]


def _binary_literal(data: bytes) -> object:
    return StreamedLiteral(len(data), (data,), binary=b"\x00" in data)


def section_bytes(parsed: ParsedMessage, raw: bytes, section: c.Section) -> bytes:
    """BODY[section]: a part that does not exist is an empty string, as most servers answer."""
    path = section.part
    if section.text is None:
        found = parsed.section_range(path)
    elif section.text == "MIME":
        found = parsed.mime_header_range(path)
    elif section.text == "TEXT":
        found = parsed.text_range(path)
    else:
        found = parsed.header_range(path)
    if found is None:
        return b""
    data = raw[found[0] : found[1]]
    if section.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        return header_fields(data, section.fields, exclude=section.text == "HEADER.FIELDS.NOT")
    return data


def header_fields(header: bytes, names: Sequence[str], *, exclude: bool) -> bytes:
    """The fields of a header block named (or, with `exclude`, not named), then a blank line."""
    wanted = {name.lower().encode("ascii", "replace") for name in names}
    kept: list[bytes] = []
    for field in _split_fields(header):
        name = field.split(b":", 1)[0].strip().lower()
        if (name in wanted) != exclude:
            kept.append(field if field.endswith(b"\n") else field + b"\r\n")
    return b"".join(kept) + b"\r\n"


def _split_fields(header: bytes) -> list[bytes]:
    starts = [m.start() for m in _FIELD_START.finditer(header)]
    fields = []
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(header)
        field = header[start:end]
        if b":" in field.split(b"\n", 1)[0]:
            fields.append(field)
    return fields


def binary_bytes(parsed: ParsedMessage, raw: bytes, path: tuple[int, ...]) -> bytes:
    """RFC 3516 BINARY[part]: the part's content with its transfer encoding undone."""
    if not path:
        return raw
    part = parsed.part(path)
    if part is None:
        raise FetchError(f"message has no part {'.'.join(map(str, path))}", "NONEXISTENT")
    if part.children or part.message is not None:
        raise FetchError("BINARY names a leaf part, not a multipart or message", "UNKNOWN-CTE")
    encoding = (part.encoding or "").strip().lower()
    if encoding not in _KNOWN_CTE:
        raise FetchError(f"unknown content transfer encoding {encoding}", "UNKNOWN-CTE")
    body = raw[part.bstart : part.bend]
    return body if encoding in _IDENTITY_CTE else decode_transfer(body, encoding)


def preview(parsed: ParsedMessage, raw: bytes) -> str:
    """RFC 8970 PREVIEW: the start of the message's text, whitespace folded."""
    text = parsed.search_text(limit=PREVIEW_CHARS * 4, raw=raw)
    return " ".join(text.split())[:PREVIEW_CHARS]
