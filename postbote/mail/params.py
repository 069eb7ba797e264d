"""MIME header values with parameters: Content-Type and Content-Disposition (RFC 2045 §5.1,
RFC 2183), including RFC 2231 continuations and charset'language'value encoding.

The scanner walks the value once, character by character, so hostile values stay linear.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from postbote.mail.charsets import decode_text

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`{|}~0-9A-Za-z]+\Z")
_MAX_SEGMENT_DIGITS = 4


@dataclass(frozen=True)
class MimeValue:
    """A parsed ``value; name=param; …`` header: the value lowercased, parameters decoded."""

    value: str
    params: dict[str, str] = field(default_factory=dict)


def _skip_comment(text: str, pos: int) -> int:
    """Index just past a (possibly nested, possibly unclosed) comment starting at ``pos``."""
    depth = 0
    n = len(text)
    while pos < n:
        ch = text[pos]
        if ch == "\\":
            pos += 2
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return pos + 1
        pos += 1
    return n


def _read_quoted(text: str, pos: int) -> tuple[str, int]:
    """A quoted-string starting at the opening quote; an unclosed one runs to the end."""
    out: list[str] = []
    pos += 1
    n = len(text)
    while pos < n:
        ch = text[pos]
        if ch == "\\" and pos + 1 < n:
            out.append(text[pos + 1])
            pos += 2
            continue
        if ch == '"':
            return "".join(out), pos + 1
        out.append(ch)
        pos += 1
    return "".join(out), n


def _read_plain(text: str, pos: int) -> tuple[str, int]:
    """An unquoted value up to ";"; comments are dropped, inner spaces kept (lenient)."""
    out: list[str] = []
    n = len(text)
    while pos < n and text[pos] != ";":
        if text[pos] == "(":
            pos = _skip_comment(text, pos)
            continue
        out.append(text[pos])
        pos += 1
    return "".join(out).strip(), pos


def split_params(text: str) -> tuple[str, list[tuple[str, str]]]:
    """Split a header value into its leading value and raw (name, value) parameter pairs."""
    head, pos = _read_plain(text, 0)
    pairs: list[tuple[str, str]] = []
    n = len(text)
    while pos < n:
        pos += 1  # the ";"
        eq = pos
        while eq < n and text[eq] not in "=;":
            eq += 1
        name = text[pos:eq].strip().lower()
        if eq >= n or text[eq] == ";":
            pos = eq
            continue
        pos = eq + 1
        while pos < n and text[pos] in " \t":
            pos += 1
        if pos < n and text[pos] == '"':
            value, pos = _read_quoted(text, pos)
            while pos < n and text[pos] != ";":
                pos += 1
        else:
            value, pos = _read_plain(text, pos)
        if name:
            pairs.append((name, value))
    return head, pairs


def _decode_segments(segments: list[tuple[int, str, bool]]) -> str:
    """RFC 2231 §3-4: join numbered segments; the first encoded one names the charset."""
    segments.sort(key=lambda s: s[0])
    charset: str | None = None
    if segments[0][2]:
        parts = segments[0][1].split("'", 2)
        if len(parts) == 3:
            charset = parts[0]
            segments[0] = (segments[0][0], parts[2], True)
    if not any(encoded for _, _, encoded in segments):
        return "".join(value for _, value, _ in segments)
    data = b"".join(
        unquote_to_bytes(value) if encoded else value.encode("utf-8")
        for _, value, encoded in segments
    )
    return decode_text(data, charset or "utf-8")


def merge_params(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Plain parameters as they are; RFC 2231 ones reassembled, winning over a plain twin."""
    plain: dict[str, str] = {}
    extended: dict[str, dict[int, tuple[int, str, bool]]] = {}
    order: list[str] = []
    for name, value in pairs:
        encoded = name.endswith("*")
        base = name[:-1] if encoded else name
        number = 0
        if "*" in base:
            base, digits = base.rsplit("*", 1)
            if not digits.isdigit() or len(digits) > _MAX_SEGMENT_DIGITS:
                continue
            number = int(digits)
        elif not encoded:
            if base not in plain:
                plain[base] = value
                order.append(base)
            continue
        segments = extended.setdefault(base, {})
        if not segments:
            order.append(base)
        segments.setdefault(number, (number, value, encoded))
    result: dict[str, str] = {}
    for base in order:
        if base in result or not base:
            continue
        if base in extended:
            result[base] = _decode_segments(list(extended[base].values()))
        else:
            result[base] = plain[base]
    return result


def parse_mime_value(text: str) -> MimeValue:
    """Parse ``value; params`` (Content-Type, Content-Disposition) into a MimeValue."""
    head, pairs = split_params(text)
    return MimeValue(head.lower(), merge_params(pairs))


def parse_content_type(text: str) -> tuple[str, str, dict[str, str]] | None:
    """(type, subtype, params), or None when the value is not a valid media type (RFC 2045 §5.2
    then has the caller fall back to the default)."""
    value = parse_mime_value(text)
    kind, slash, sub = value.value.partition("/")
    kind, sub = kind.strip(), sub.strip()
    if not slash or not _TOKEN.match(kind) or not _TOKEN.match(sub):
        return None
    return kind, sub, value.params
