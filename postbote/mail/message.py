"""A message parsed once, at delivery, and cached as JSON for IMAP, POP3, search and filters.

``parse_message`` never raises and costs time and memory linear in the input. The result
holds only offsets into the raw bytes (which the store keeps as a blob), so the JSON stays
small and every IMAP section is a slice of the blob.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from postbote.mail.dates import parse_date
from postbote.mail.encodedwords import decode_words
from postbote.mail.envelope import Envelope, build_envelope
from postbote.mail.headers import (
    Address,
    Fields,
    decode_names,
    first,
    parse_address_list,
    parse_msg_ids,
)
from postbote.mail.imapview import bodystructure
from postbote.mail.jsonform import (
    JSON_VERSION,
    addresses_from_json,
    addresses_to_json,
    part_from_json,
    part_to_json,
)
from postbote.mail.mime import Part, scan_message
from postbote.mail.searchtext import DEFAULT_LIMIT, search_text

Range = tuple[int, int]


@dataclass(frozen=True)
class ParsedMessage:
    """Top-level header fields, convenience values for people, ENVELOPE and the MIME tree.

    ``headers`` are (name, value) pairs, unfolded and undecoded. Address lists here have
    RFC 2047-decoded names (the ENVELOPE keeps them as written). ``raw`` is the parsed bytes
    when known; it is not part of the JSON and not compared.
    """

    headers: list[tuple[str, str]]
    subject: str | None
    from_: list[Address]
    sender: list[Address]
    reply_to: list[Address]
    to: list[Address]
    cc: list[Address]
    bcc: list[Address]
    message_id: str | None
    in_reply_to: str | None
    references: list[str]
    date: datetime | None
    envelope: Envelope
    root: Part
    size: int
    raw: bytes | None = field(default=None, compare=False, repr=False)

    # --- IMAP views -----------------------------------------------------------------------

    def bodystructure(self, extended: bool = True) -> list[object]:
        """BODYSTRUCTURE (``extended``) or BODY, as nested plain values (see imapview)."""
        return bodystructure(self.root, extended)

    def part(self, path: tuple[int, ...]) -> Part | None:
        """The part named by an IMAP section number (RFC 9051 §6.4.5), or None.

        ``()`` is the whole message. A non-multipart message (or embedded message) has only
        part 1, its body; below a message/rfc822 part, numbers address the embedded message.
        """
        if not path:
            return self.root
        node = _message_part(self.root, path[0])
        for number in path[1:]:
            if node is None:
                return None
            if node.children:
                node = _nth(node.children, number)
            elif node.message is not None:
                node = _message_part(node.message, number)
            else:
                return None
        return node

    def section_range(self, path: tuple[int, ...] = ()) -> Range | None:
        """Bytes of ``BODY[path]``: the whole message for ``()``, else the part's body."""
        if not path:
            return 0, self.size
        node = self.part(path)
        return (node.bstart, node.bend) if node is not None else None

    def header_range(self, path: tuple[int, ...] = ()) -> Range | None:
        """Bytes of ``BODY[path.HEADER]``: only the top level or a message/rfc822 part has one."""
        inner = self._message_at(path)
        return (inner.hstart, inner.bstart) if inner is not None else None

    def text_range(self, path: tuple[int, ...] = ()) -> Range | None:
        """Bytes of ``BODY[path.TEXT]``: the body of the (embedded) message."""
        inner = self._message_at(path)
        return (inner.bstart, inner.bend) if inner is not None else None

    def mime_header_range(self, path: tuple[int, ...]) -> Range | None:
        """Bytes of ``BODY[path.MIME]``: the part's own MIME header (RFC 9051 §6.4.5)."""
        node = self.part(path) if path else None
        return (node.hstart, node.bstart) if node is not None else None

    def _message_at(self, path: tuple[int, ...]) -> Part | None:
        if not path:
            return self.root
        node = self.part(path)
        return node.message if node is not None else None

    # --- search ---------------------------------------------------------------------------

    def search_text(self, limit: int = DEFAULT_LIMIT, raw: bytes | None = None) -> str:
        """Decoded text of the text/* parts, at most ``limit`` characters.

        Needs the raw bytes: those given, or those this object was parsed from.
        """
        data = raw if raw is not None else self.raw
        if data is None:
            raise ValueError("search_text needs the raw message: pass raw= when loaded from JSON")
        return search_text(data, self.root, limit)

    # --- cache form -----------------------------------------------------------------------

    def to_json(self) -> dict[str, object]:
        """A compact JSON-ready dict; ``from_json`` restores an equal object."""
        return {
            "v": JSON_VERSION,
            "z": self.size,
            "hd": [[name, value] for name, value in self.headers],
            "su": self.subject,
            "f": addresses_to_json(self.from_),
            "se": addresses_to_json(self.sender),
            "rt": addresses_to_json(self.reply_to),
            "to": addresses_to_json(self.to),
            "cc": addresses_to_json(self.cc),
            "bc": addresses_to_json(self.bcc),
            "mi": self.message_id,
            "ir": self.in_reply_to,
            "rf": self.references,
            "dt": self.date.isoformat() if self.date is not None else None,
            "ev": self.envelope,
            "r": part_to_json(self.root),
        }

    @classmethod
    def from_json(cls, data: dict[str, object], raw: bytes | None = None) -> ParsedMessage:
        """Rebuild from ``to_json`` output. Raises ValueError for another cache version: the
        caller then re-parses the blob."""
        if data.get("v") != JSON_VERSION:
            raise ValueError(f"parsed-message cache version {data.get('v')!r}, want {JSON_VERSION}")
        d: Any = data
        date = d["dt"]
        return cls(
            headers=[(name, value) for name, value in d["hd"]],
            subject=d["su"],
            from_=addresses_from_json(d["f"]),
            sender=addresses_from_json(d["se"]),
            reply_to=addresses_from_json(d["rt"]),
            to=addresses_from_json(d["to"]),
            cc=addresses_from_json(d["cc"]),
            bcc=addresses_from_json(d["bc"]),
            message_id=d["mi"],
            in_reply_to=d["ir"],
            references=list(d["rf"]),
            date=datetime.fromisoformat(date) if date is not None else None,
            envelope=d["ev"],
            root=part_from_json(d["r"]),
            size=d["z"],
            raw=raw,
        )


def _nth(parts: tuple[Part, ...], number: int) -> Part | None:
    return parts[number - 1] if 1 <= number <= len(parts) else None


def _message_part(root: Part, number: int) -> Part | None:
    """Part ``number`` of a (possibly embedded) message whose root part is ``root``."""
    if root.children:
        return _nth(root.children, number)
    return root if number == 1 else None


def _addresses(fields: Fields, name: str) -> list[Address]:
    return decode_names(parse_address_list(first(fields, name)))


def _first_id(value: str | None) -> str | None:
    ids = parse_msg_ids(value)
    return ids[0] if ids else None


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse a whole message (RFC 5322 + MIME). Never raises; linear in ``len(raw)``."""
    data = bytes(raw)
    fields, root = scan_message(data)
    subject = first(fields, "subject")
    return ParsedMessage(
        headers=fields,
        subject=decode_words(subject) if subject is not None else None,
        from_=_addresses(fields, "from"),
        sender=_addresses(fields, "sender"),
        reply_to=_addresses(fields, "reply-to"),
        to=_addresses(fields, "to"),
        cc=_addresses(fields, "cc"),
        bcc=_addresses(fields, "bcc"),
        message_id=_first_id(first(fields, "message-id")),
        in_reply_to=_first_id(first(fields, "in-reply-to")),
        references=parse_msg_ids(first(fields, "references")),
        date=parse_date(first(fields, "date")),
        envelope=build_envelope(fields),
        root=root,
        size=len(data),
        raw=data,
    )
