"""Invariants every parse must satisfy, shared by the property, unit and corpus tests."""

from __future__ import annotations

import json

from postbote.mail.message import ParsedMessage
from postbote.mail.mime import Part


def _check_part(part: Part, lo: int, hi: int) -> None:
    assert lo <= part.hstart <= part.bstart <= part.bend <= hi, (
        part.hstart,
        part.bstart,
        part.bend,
        lo,
        hi,
    )
    assert part.type and part.subtype
    if part.type == "multipart":
        assert part.children, "a multipart part must have at least one child for BODYSTRUCTURE"
    previous_end = part.bstart
    for child in part.children:
        assert child.hstart >= previous_end, "children must not overlap"
        _check_part(child, part.bstart, part.bend)
        previous_end = child.bend
    if part.message is not None:
        assert part.envelope is not None and len(part.envelope) == 10
        assert part.message.hstart == part.bstart and part.message.bend == part.bend
        _check_part(part.message, part.bstart, part.bend)


def _check_value(value: object) -> None:
    """BODYSTRUCTURE/ENVELOPE use only None, str, int and list."""
    if isinstance(value, list):
        for item in value:
            _check_value(item)
    else:
        assert value is None or isinstance(value, (str, int)), repr(value)


def assert_sane(parsed: ParsedMessage, raw: bytes) -> None:
    """Offsets inside the input, well-formed IMAP values, and an exact JSON round-trip."""
    assert parsed.size == len(raw)
    _check_part(parsed.root, 0, len(raw))
    assert parsed.root.hstart == 0 and parsed.root.bend == len(raw)
    assert len(parsed.envelope) == 10
    _check_value(parsed.envelope)
    _check_value(parsed.bodystructure(True))
    _check_value(parsed.bodystructure(False))
    reloaded = ParsedMessage.from_json(json.loads(json.dumps(parsed.to_json())))
    assert reloaded == parsed
    assert reloaded.bodystructure(True) == parsed.bodystructure(True)
