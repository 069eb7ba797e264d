"""The IMAP ENVELOPE of a header block (RFC 9051 §7.5.2, RFC 3501 §7.4.2) as plain values.

Convention shared with imapview: None is NIL, str a string, int a number, list a
parenthesised list. Strings are the header values as written (unfolded, not decoded):
clients decode RFC 2047 themselves.
"""

from __future__ import annotations

from postbote.mail.headers import Address, Fields, first, parse_address_list

Envelope = list[object]


def address_list_value(addresses: list[Address]) -> list[object] | None:
    """``((name adl mailbox host) …)``, or NIL for an empty list."""
    if not addresses:
        return None
    return [[a.name, a.adl, a.mailbox, a.host] for a in addresses]


def build_envelope(fields: Fields) -> Envelope:
    """(date subject from sender reply-to to cc bcc in-reply-to message-id)."""
    from_ = parse_address_list(first(fields, "from"))
    # RFC 3501 §7.4.2: an absent or empty Sender or Reply-To takes the value of From.
    sender = parse_address_list(first(fields, "sender")) or from_
    reply_to = parse_address_list(first(fields, "reply-to")) or from_
    return [
        first(fields, "date"),
        first(fields, "subject"),
        address_list_value(from_),
        address_list_value(sender),
        address_list_value(reply_to),
        address_list_value(parse_address_list(first(fields, "to"))),
        address_list_value(parse_address_list(first(fields, "cc"))),
        address_list_value(parse_address_list(first(fields, "bcc"))),
        first(fields, "in-reply-to"),
        first(fields, "message-id"),
    ]


EMPTY_ENVELOPE: Envelope = [None] * 10
