"""RFC 5322 §3.3 date-time, parsed leniently (obsolete zones, two-digit years, asctime order).

SEARCH SENTON/SENTBEFORE and sorting by date need a real instant; mail that carries
nonsense simply has no date (None) rather than a guessed one.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
# RFC 5322 §4.3 obsolete zones; military letters are "-0000" (unknown), as the RFC says.
_ZONES = {
    "ut": 0, "utc": 0, "gmt": 0, "z": 0,
    "est": -5, "edt": -4, "cst": -6, "cdt": -5,
    "mst": -7, "mdt": -6, "pst": -8, "pdt": -7,
}  # fmt: skip
_TOKEN = re.compile(r"[A-Za-z]+|[+-]\d\d:\d\d|[+-]\d{1,4}|\d+(?::\d+){0,2}")
_NUMERIC_DAY = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})")
_MAX_INPUT = 200


def _drop_comments(text: str) -> str:
    """Remove (comments), which carry zone names and day names nobody needs."""
    out: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif not depth:
            out.append(ch)
    return "".join(out)


def _year(value: int, digits: int) -> int:
    """RFC 5322 §4.3: 2-digit years below 50 are 20xx, others 19xx; 3-digit ones add 1900."""
    if digits <= 2:
        return value + (2000 if value < 50 else 1900)
    if digits == 3:
        return value + 1900
    return value


def _zone(token: str) -> timezone | None:
    if token[0] in "+-":
        digits = token[1:].replace(":", "").rjust(4, "0")
        minutes = int(digits[:2]) * 60 + int(digits[2:])
        if minutes >= 24 * 60:
            return None
        return timezone(timedelta(minutes=-minutes if token[0] == "-" else minutes))
    hours = _ZONES.get(token.lower())
    return timezone(timedelta(hours=hours)) if hours is not None else None


def parse_date(text: str | None) -> datetime | None:
    """A timezone-aware datetime, or None when no day, month, year and time can be found."""
    if not text:
        return None
    text = _drop_comments(text[:_MAX_INPUT])
    day = month = year = None
    numeric = _NUMERIC_DAY.search(text)  # "2002/09/14", as some bulk mailers write
    if numeric:
        year, month, day = (int(g) for g in numeric.groups())
        text = text[: numeric.start()] + text[numeric.end() :]
    tokens = _TOKEN.findall(text)
    clock: list[int] | None = None
    zone: timezone | None = None
    for token in tokens:
        low = token.lower()
        if low[:3] in _MONTHS and month is None and token.isalpha():
            month = _MONTHS[low[:3]]
        elif ":" in token and clock is None:
            clock = [int(x) for x in token.split(":")] + [0]
        elif token[0] in "+-" or (token.isalpha() and clock is not None):
            zone = zone or _zone(token)
        elif token.isdigit() and len(token) <= 4:
            if day is None and len(token) <= 2:
                day = int(token)
            elif year is None:
                year = _year(int(token), len(token))
    return _build(year, month, day, clock, zone)


def _build(
    year: int | None,
    month: int | None,
    day: int | None,
    clock: list[int] | None,
    zone: timezone | None,
) -> datetime | None:
    if year is None or month is None or day is None:
        return None
    hour, minute, second = (clock or [0, 0, 0])[:3]
    second = min(second, 59)  # RFC 5322 §3.3 allows a leap second; datetime does not
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=zone or UTC)
    except ValueError:
        return None
