"""Header heuristics: shapes of a header that honest mail programs rarely produce.

Each rule is small and worth a point or so: none decides alone, they tip a
message the other signals left near the line. Pure functions of the parsed
message and the time it arrived.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from postbote.mail.message import ParsedMessage

_DISPLAY_ADDRESS = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def header_rules(msg: ParsedMessage, now: datetime) -> list[tuple[str, float]]:
    """(rule name, points) for each rule the message trips."""
    names = {name.lower() for name, _ in msg.headers}
    hits: list[tuple[str, float]] = []
    if "date" not in names:
        hits.append(("MISSING_DATE", 1.0))
    elif msg.date is not None and msg.date.tzinfo is not None and msg.date - now > timedelta(days=1):
        hits.append(("DATE_IN_FUTURE", 1.0))
    if "message-id" not in names:
        hits.append(("MISSING_MID", 0.5))
    if not msg.from_:
        hits.append(("MISSING_FROM", 1.5))
    elif _spoofed_display(msg):
        hits.append(("FROM_NAME_OTHER_ADDR", 1.0))
    subject = msg.subject or ""
    letters = [c for c in subject if c.isalpha()]
    if len(letters) >= 10 and sum(c.isupper() for c in letters) / len(letters) > 0.7:
        hits.append(("SUBJ_ALL_CAPS", 1.0))
    if "!!!" in subject or "$$$" in subject:
        hits.append(("SUBJ_SHOUTING", 0.5))
    if msg.root.type == "text" and msg.root.subtype == "html":
        hits.append(("HTML_ONLY", 0.5))
    return hits


def _spoofed_display(msg: ParsedMessage) -> bool:
    """A From display name holding an address other than the real one ("paypal@paypal.com" <x@evil>)."""
    for address in msg.from_:
        shown = _DISPLAY_ADDRESS.search(address.name or "")
        real = (address.addr_spec or "").lower()
        if shown and real and shown.group().lower() != real:
            return True
    return False


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
