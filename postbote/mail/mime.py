"""The MIME tree of a message (RFC 2045, RFC 2046) located by byte offsets into its raw bytes.

IMAP serves BODY[1.2], BODYSTRUCTURE and BINARY straight from these offsets, so the scanner
never rewrites anything: it only finds where each part's header and body start and end.
Work is bounded: nesting stops at MAX_DEPTH, the tree at MAX_PARTS; what lies beyond is kept
as one opaque text/plain part so every offset still points into the message.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from postbote.mail.envelope import EMPTY_ENVELOPE, Envelope, build_envelope
from postbote.mail.headers import Fields, first, scan_header
from postbote.mail.params import parse_content_type, parse_mime_value

MAX_DEPTH = 50
MAX_PARTS = 10_000

_DEFAULT_PARAMS = {"charset": "us-ascii"}


@dataclass(frozen=True)
class Part:
    """One MIME entity: offsets of its header and body in the raw message, and its fields.

    ``hstart``..``bstart`` is the MIME header including the empty line after it;
    ``bstart``..``bend`` is the body. For message/rfc822 (and message/global), ``message`` is
    the embedded message's root part (its header starts at this part's ``bstart``) and
    ``envelope`` its ENVELOPE.
    """

    hstart: int
    bstart: int
    bend: int
    type: str = "text"
    subtype: str = "plain"
    params: dict[str, str] = field(default_factory=dict)
    content_id: str | None = None
    description: str | None = None
    encoding: str = "7bit"
    md5: str | None = None
    disposition: str | None = None
    disposition_params: dict[str, str] = field(default_factory=dict)
    language: tuple[str, ...] | None = None
    location: str | None = None
    lines: int = 0
    children: tuple[Part, ...] = ()
    envelope: Envelope | None = None
    message: Part | None = None

    @property
    def size(self) -> int:
        """Body size in octets, as BODYSTRUCTURE and RFC822.SIZE-like fields report it."""
        return self.bend - self.bstart

    @property
    def is_multipart(self) -> bool:
        return self.type == "multipart"

    @property
    def is_message(self) -> bool:
        """message/rfc822 or message/global (RFC 6532): a whole message inside this one."""
        return self.message is not None

    def walk(self) -> list[Part]:
        """This part and every part below it (children and embedded messages), in order."""
        out: list[Part] = []
        stack: list[Part] = [self]
        while stack:
            part = stack.pop()
            out.append(part)
            below = list(part.children) + ([part.message] if part.message else [])
            stack.extend(reversed(below))
        return out


class _Budget:
    """Parts still allowed in this message; shared by the whole recursive scan."""

    def __init__(self, parts: int) -> None:
        self.parts = parts


def count_lines(raw: bytes, start: int, end: int) -> int:
    """Text lines of a body: line breaks, plus a last line that has none."""
    if start >= end:
        return 0
    lines = raw.count(b"\n", start, end)
    return lines if raw[end - 1] == 0x0A else lines + 1


def scan_message(raw: bytes, start: int = 0, end: int | None = None) -> tuple[Fields, Part]:
    """The header fields and root part of the message at ``raw[start:end]``."""
    stop = len(raw) if end is None else end
    return _scan_message(raw, start, stop, _Budget(MAX_PARTS), 0)


def _scan_message(
    raw: bytes, start: int, end: int, budget: _Budget, depth: int
) -> tuple[Fields, Part]:
    fields, body = scan_header(raw, start, end)
    return fields, _build_part(raw, fields, (start, body, end), False, budget, depth)


def _opaque(raw: bytes, start: int, end: int) -> Part:
    """A headerless text/plain stand-in for content the scanner will not (or cannot) split."""
    return Part(start, start, end, params=dict(_DEFAULT_PARAMS), lines=count_lines(raw, start, end))


def _media_type(fields: Fields, in_digest: bool) -> tuple[str, str, dict[str, str]]:
    """RFC 2045 §5.2 defaults; RFC 2046 §5.1.5: digest parts default to message/rfc822."""
    value = first(fields, "content-type")
    parsed = parse_content_type(value) if value is not None else None
    if parsed is not None and parsed[0] == "multipart" and not parsed[2].get("boundary"):
        parsed = None  # RFC 2046 §5.1.1: the boundary is mandatory, so the type is invalid
    if parsed is not None:
        return parsed
    if in_digest:
        return "message", "rfc822", {}
    return "text", "plain", dict(_DEFAULT_PARAMS)


def _language(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    tags = tuple(tag.strip() for tag in value.split(",") if tag.strip())
    return tags or None


def _build_part(
    raw: bytes,
    fields: Fields,
    span: tuple[int, int, int],
    in_digest: bool,
    budget: _Budget,
    depth: int,
) -> Part:
    hstart, bstart, bend = span
    budget.parts -= 1
    kind, sub, params = _media_type(fields, in_digest)
    disposition = parse_mime_value(first(fields, "content-disposition") or "")
    encoding = parse_mime_value(first(fields, "content-transfer-encoding") or "").value
    location = first(fields, "content-location")
    descend = depth < MAX_DEPTH and budget.parts > 0
    children: tuple[Part, ...] = ()
    envelope: Envelope | None = None
    message: Part | None = None
    if kind == "multipart":
        if descend:
            children = _children(raw, bstart, bend, params["boundary"], sub, budget, depth)
        children = children or (_opaque(raw, bstart, bend),)
    elif kind == "message" and sub in ("rfc822", "global"):
        envelope, message = _embedded(raw, bstart, bend, budget, depth, descend)
    lines = count_lines(raw, bstart, bend) if kind in ("text", "message") else 0
    return Part(
        hstart, bstart, bend, kind, sub, params,
        content_id=first(fields, "content-id"),
        description=first(fields, "content-description"),
        encoding=encoding or "7bit",
        md5=first(fields, "content-md5"),
        disposition=disposition.value or None,
        disposition_params=disposition.params,
        language=_language(first(fields, "content-language")),
        location="".join(location.split()) if location is not None else None,  # RFC 2557 §4.4.2
        lines=lines, children=children, envelope=envelope, message=message,
    )  # fmt: skip


def _embedded(
    raw: bytes, start: int, end: int, budget: _Budget, depth: int, descend: bool
) -> tuple[Envelope, Part]:
    if not descend:
        return list(EMPTY_ENVELOPE), _opaque(raw, start, end)
    fields, root = _scan_message(raw, start, end, budget, depth + 1)
    return build_envelope(fields), root


def _delimiter_lines(
    raw: bytes, start: int, end: int, boundary: bytes
) -> Iterator[tuple[int, int, bool]]:
    """Yield (line start, line end, is_close) for each boundary delimiter line in the range.

    RFC 2046 §5.1.1: a delimiter is "--boundary" at the start of a line, optionally followed
    by "--" (the close delimiter) and then only whitespace up to the line break.
    """
    delim = b"--" + boundary
    pos = start
    while True:
        hit = raw.find(delim, pos, end)
        if hit < 0:
            return
        pos = hit + 1
        if hit != start and raw[hit - 1] != 0x0A:
            continue
        after = hit + len(delim)
        nl = raw.find(b"\n", after, end)
        line_end = end if nl < 0 else nl + 1
        close = raw.startswith(b"--", after, line_end)
        if not close and raw[after:line_end].strip(b" \t\r\n"):
            continue
        pos = line_end
        yield hit, line_end, close


def _line_break_before(raw: bytes, pos: int, floor: int) -> int:
    """RFC 2046 §5.1.1: the line break before a delimiter belongs to the delimiter."""
    if pos > floor and raw[pos - 1] == 0x0A:
        pos -= 1
        if pos > floor and raw[pos - 1] == 0x0D:
            pos -= 1
    return pos


def _children(
    raw: bytes, start: int, end: int, boundary: str, subtype: str, budget: _Budget, depth: int
) -> tuple[Part, ...]:
    children: list[Part] = []
    in_digest = subtype == "digest"
    child_start: int | None = None
    for line_start, line_end, close in _delimiter_lines(raw, start, end, boundary.encode("utf-8")):
        if child_start is not None:
            child_end = _line_break_before(raw, line_start, child_start)
            children.append(_child(raw, child_start, child_end, in_digest, budget, depth))
        child_start = None if close else line_end
        if close or budget.parts <= 0:
            break
    else:
        if child_start is not None:  # no close delimiter: the last part runs to the end
            children.append(_child(raw, child_start, end, in_digest, budget, depth))
    return tuple(children)


def _child(raw: bytes, start: int, end: int, in_digest: bool, budget: _Budget, depth: int) -> Part:
    fields, body = scan_header(raw, start, end)
    return _build_part(raw, fields, (start, body, end), in_digest, budget, depth + 1)
