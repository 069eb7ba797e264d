"""The compact JSON form of parsed-message pieces, as the store caches them.

Short keys and omitted defaults keep a row small: most parts are text/plain, 7bit, with no
disposition. Bump JSON_VERSION whenever the layout or the parser's results change, so stale
cache rows are re-parsed instead of misread.
"""

from __future__ import annotations

from typing import Any

from postbote.mail.headers import Address
from postbote.mail.mime import Part

JSON_VERSION = 1


def addresses_to_json(addresses: list[Address]) -> list[list[str | None]]:
    return [[a.name, a.mailbox, a.host, a.adl] for a in addresses]


def addresses_from_json(data: Any) -> list[Address]:
    return [Address(name, mailbox, host, adl) for name, mailbox, host, adl in data]


def part_to_json(part: Part) -> dict[str, Any]:
    """Offsets always; every other field only when it differs from the default."""
    out: dict[str, Any] = {"h": part.hstart, "b": part.bstart, "e": part.bend}
    if (part.type, part.subtype) != ("text", "plain"):
        out["t"] = f"{part.type}/{part.subtype}"
    optional = {
        "p": part.params or None,
        "id": part.content_id,
        "ds": part.description,
        "en": part.encoding if part.encoding != "7bit" else None,
        "m5": part.md5,
        "d": part.disposition,
        "dp": part.disposition_params or None,
        "l": list(part.language) if part.language is not None else None,
        "lo": part.location,
        "n": part.lines or None,
        "c": [part_to_json(child) for child in part.children] or None,
        "v": part.envelope,
        "m": part_to_json(part.message) if part.message is not None else None,
    }
    out.update((key, value) for key, value in optional.items() if value is not None)
    return out


def part_from_json(data: Any) -> Part:
    kind, _, sub = data.get("t", "text/plain").partition("/")
    language = data.get("l")
    message = data.get("m")
    return Part(
        data["h"], data["b"], data["e"], kind, sub,
        params=data.get("p", {}),
        content_id=data.get("id"),
        description=data.get("ds"),
        encoding=data.get("en", "7bit"),
        md5=data.get("m5"),
        disposition=data.get("d"),
        disposition_params=data.get("dp", {}),
        language=tuple(language) if language is not None else None,
        location=data.get("lo"),
        lines=data.get("n", 0),
        children=tuple(part_from_json(child) for child in data.get("c", ())),
        envelope=data.get("v"),
        message=part_from_json(message) if message is not None else None,
    )  # fmt: skip
