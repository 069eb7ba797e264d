"""BODY and BODYSTRUCTURE values (RFC 9051 §7.5.2) built from a parsed MIME tree.

Values are plain Python: None is NIL, str a string, int a number, list a parenthesised list;
the IMAP encoder turns them into bytes. Strings are the header values as written: clients
decode RFC 2047 themselves.
"""

from __future__ import annotations

from postbote.mail.mime import Part

Value = object


def _params(params: dict[str, str]) -> list[str] | None:
    """body-fld-param: ("name" "value" …) or NIL when there are none."""
    if not params:
        return None
    return [item for pair in params.items() for item in pair]


def _disposition(part: Part) -> list[Value] | None:
    if part.disposition is None:
        return None
    return [part.disposition, _params(part.disposition_params)]


def _language(part: Part) -> Value:
    """body-fld-lang: one tag as a string, several as a list, none as NIL."""
    if not part.language:
        return None
    return part.language[0] if len(part.language) == 1 else list(part.language)


def _single(part: Part, extended: bool) -> list[Value]:
    out: list[Value] = [
        part.type,
        part.subtype,
        _params(part.params),
        part.content_id,
        part.description,
        part.encoding,
        part.size,
    ]
    if part.message is not None:
        out += [part.envelope, bodystructure(part.message, extended), part.lines]
    elif part.type == "text":
        out.append(part.lines)
    if extended:
        out += [part.md5, _disposition(part), _language(part), part.location]
    return out


def _multi(part: Part, extended: bool) -> list[Value]:
    out: list[Value] = [bodystructure(child, extended) for child in part.children]
    out.append(part.subtype)
    if extended:
        out += [_params(part.params), _disposition(part), _language(part), part.location]
    return out


def bodystructure(part: Part, extended: bool) -> list[Value]:
    """BODYSTRUCTURE (``extended=True``) or BODY (``False``) of ``part`` and everything below."""
    if part.children:
        return _multi(part, extended)
    return _single(part, extended)
