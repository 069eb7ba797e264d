"""SEARCH evaluation (RFC 9051 §6.4.4, RFC 7162 MODSEQ, RFC 5032, RFC 8514, RFC 8474) and
the ESEARCH result (RFC 4731).

`SearchNeeds.of(keys)` says what a query reads (flags only, the cached parse, or the body
text), so the session loads only that; `matches()` then decides one message with no I/O.
String matching is case-insensitive substring search on Unicode text, as RFC 9051 asks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from postbote.imap import commands as c
from postbote.imap import encode
from postbote.imap.sequence import SequenceSet
from postbote.mail.encodedwords import decode_words
from postbote.mail.headers import Address
from postbote.imap.fetch import load_parsed
from postbote.mail.jsonform import JSON_VERSION, addresses_from_json
from postbote.mail.message import ParsedMessage
from postbote.store.types import Flag, Message

_FLAG_KEYS: dict[str, tuple[Flag, bool]] = {
    "ANSWERED": (Flag.ANSWERED, True),
    "DELETED": (Flag.DELETED, True),
    "DRAFT": (Flag.DRAFT, True),
    "FLAGGED": (Flag.FLAGGED, True),
    "SEEN": (Flag.SEEN, True),
    "UNANSWERED": (Flag.ANSWERED, False),
    "UNDELETED": (Flag.DELETED, False),
    "UNDRAFT": (Flag.DRAFT, False),
    "UNFLAGGED": (Flag.FLAGGED, False),
    "UNSEEN": (Flag.SEEN, False),
}
_ADDRESS_FIELDS = {"FROM": "from", "TO": "to", "CC": "cc", "BCC": "bcc"}
_KEYWORD_FLAGS = {"\\SEEN": Flag.SEEN, "\\ANSWERED": Flag.ANSWERED, "\\FLAGGED": Flag.FLAGGED,
                  "\\DELETED": Flag.DELETED, "\\DRAFT": Flag.DRAFT}


_CACHE_KEYS = {"SUBJECT": ("su",), "FROM": ("f", "hd"), "TO": ("to", "hd"), "CC": ("cc", "hd"),
               "BCC": ("bc", "hd")}


def walk_keys(keys: Sequence[c.SearchKey]) -> Iterator[c.SearchKey]:
    """Every key of a search program, those inside NOT, OR and parenthesised lists too."""
    stack = list(keys)
    while stack:
        key = stack.pop()
        yield key
        if isinstance(key, c.SearchNot):
            stack.append(key.key)
        elif isinstance(key, c.SearchOr):
            stack += [key.left, key.right]
        elif isinstance(key, c.SearchAnd):
            stack += key.keys


@dataclass(frozen=True)
class SearchNeeds:
    parse: bool = False
    body: bool = False
    cache_keys: frozenset[str] = frozenset()  # members of the cached parse the keys read

    @property
    def parse_keys(self) -> tuple[str, ...] | None:
        """What to load of the cached parse: None (all) when the body text is searched."""
        return None if self.body else ("v", *sorted(self.cache_keys))

    @classmethod
    def of(cls, keys: Sequence[c.SearchKey]) -> SearchNeeds:
        parse = body = False
        cache: set[str] = set()
        for key in walk_keys(keys):
            if isinstance(key, c.SearchText):
                parse = True
                body = body or key.field in ("BODY", "TEXT")
                cache.update(_CACHE_KEYS.get(key.field, ()))
            elif isinstance(key, c.SearchHeader):
                parse = True
                cache.add("hd")
            elif isinstance(key, c.SearchDate) and key.key.startswith("SENT"):
                parse = True
                cache.add("dt")
        return cls(parse, body, frozenset(cache))


class HeaderView:
    """What SEARCH reads of a message's cached parse, decoded from the cache's JSON only as
    far as the keys need (no MIME tree unless BODY or TEXT asks for the text)."""

    _ADDRESS_KEYS = {"from": "f", "to": "to", "cc": "cc", "bcc": "bc"}

    def __init__(self, cached: dict | None, raw: bytes | None) -> None:
        self._cached = cached if cached is not None and cached.get("v") == JSON_VERSION else None
        self._raw = raw
        self._full: ParsedMessage | None = None

    def full(self) -> ParsedMessage:
        if self._full is None:
            self._full = load_parsed(self._cached, self._raw)
        return self._full

    @property
    def subject(self) -> str | None:
        return self._cached["su"] if self._cached is not None else self.full().subject

    @property
    def headers(self) -> list[tuple[str, str]]:
        if self._cached is not None:
            return [(name, value) for name, value in self._cached["hd"]]
        return self.full().headers

    @property
    def date(self) -> dt.datetime | None:
        if self._cached is not None:
            text = self._cached["dt"]
            return dt.datetime.fromisoformat(text) if text is not None else None
        return self.full().date

    def addresses(self, field: str) -> list[Address]:
        if self._cached is not None:
            return addresses_from_json(self._cached[self._ADDRESS_KEYS[field]])
        full = self.full()
        return full.from_ if field == "from" else getattr(full, field)

    def body_text(self) -> str:
        if self._raw is None:
            return ""
        return self.full().search_text(raw=self._raw)


@dataclass
class Candidate:
    """One message as SEARCH sees it."""

    seq: int
    message: Message
    recent: bool
    parsed: HeaderView | None = None
    _text: str | None = None

    def body_text(self) -> str:
        if self._text is None:
            self._text = self.parsed.body_text().casefold() if self.parsed is not None else ""
        return self._text


@dataclass(frozen=True)
class SearchScope:
    """What message-number keys are resolved against."""

    exists: int
    max_uid: int
    saved: frozenset[int] = frozenset()
    now: float = 0.0


def matches(key: c.SearchKey, cand: Candidate, scope: SearchScope) -> bool:
    m = cand.message
    if isinstance(key, c.SearchFlagKey):
        return _flag_key(key.name, cand)
    if isinstance(key, c.SearchAnd):
        return all(matches(k, cand, scope) for k in key.keys)
    if isinstance(key, c.SearchNot):
        return not matches(key.key, cand, scope)
    if isinstance(key, c.SearchOr):
        return matches(key.left, cand, scope) or matches(key.right, cand, scope)
    if isinstance(key, c.SearchSequence):
        if key.sequence.saved:
            return m.uid in scope.saved
        return key.sequence.contains(cand.seq, scope.exists)
    if isinstance(key, c.SearchUid):
        if key.sequence.saved:
            return m.uid in scope.saved
        return key.sequence.contains(m.uid, scope.max_uid)
    if isinstance(key, c.SearchKeyword):
        return _has_keyword(m, key.keyword) == key.present
    if isinstance(key, c.SearchSize):
        return m.size > key.size if key.key == "LARGER" else m.size < key.size
    if isinstance(key, c.SearchDate):
        return _date_key(key, cand)
    if isinstance(key, c.SearchWithin):
        age = scope.now - m.internaldate
        return age > key.seconds if key.key == "OLDER" else age <= key.seconds
    if isinstance(key, c.SearchModSeq):
        return m.modseq >= key.modseq
    if isinstance(key, c.SearchObjectId):
        return key.key == "EMAILID" and key.object_id == f"M{m.blob_id}"
    if isinstance(key, c.SearchHeader):
        return _header_key(key, cand)
    if isinstance(key, c.SearchText):
        return _text_key(key, cand)
    return False


def _flag_key(name: str, cand: Candidate) -> bool:
    if name in ("ALL", "SAVEDATESUPPORTED"):
        return True
    if name == "RECENT":
        return cand.recent
    if name == "OLD":
        return not cand.recent
    if name == "NEW":
        return cand.recent and not cand.message.has(Flag.SEEN)
    flag, wanted = _FLAG_KEYS[name]
    return cand.message.has(flag) == wanted


def _has_keyword(m: Message, keyword: str) -> bool:
    system = _KEYWORD_FLAGS.get(keyword.upper())
    if system is not None:
        return m.has(system)
    folded = keyword.casefold()
    return any(k.casefold() == folded for k in m.keywords)


def _day(timestamp: float, zone: dt.tzinfo | None = dt.timezone.utc) -> dt.date:
    return dt.datetime.fromtimestamp(timestamp, zone).date()


def _date_key(key: c.SearchDate, cand: Candidate) -> bool:
    name = key.key
    if name.startswith("SENT"):
        sent = cand.parsed.date if cand.parsed is not None else None
        if sent is None:
            return False
        day, name = sent.date(), name[4:]
    elif name.startswith("SAVED"):
        day, name = _day(cand.message.savedate or cand.message.internaldate), name[5:]
    else:
        day = _day(cand.message.internaldate)
    if name == "BEFORE":
        return day < key.date
    if name == "ON":
        return day == key.date
    return day >= key.date  # SINCE


def _header_values(parsed: HeaderView, name: str) -> list[str]:
    lower = name.lower()
    return [value for field, value in parsed.headers if field.lower() == lower]


def _address_text(addresses: list[Address]) -> str:
    return " ".join(f"{a.name or ''} <{a.mailbox or ''}@{a.host or ''}>" for a in addresses)


def _header_key(key: c.SearchHeader, cand: Candidate) -> bool:
    if cand.parsed is None:
        return False
    values = _header_values(cand.parsed, key.name)
    if not key.value:
        return bool(values)  # RFC 9051: an empty string matches every message with the field
    wanted = key.value.casefold()
    return any(wanted in decode_words(value).casefold() for value in values)


def _text_key(key: c.SearchText, cand: Candidate) -> bool:
    parsed = cand.parsed
    if parsed is None:
        return False
    wanted = key.value.casefold()
    if key.field == "SUBJECT":
        return wanted in (parsed.subject or "").casefold()
    if key.field in _ADDRESS_FIELDS:
        field = _ADDRESS_FIELDS[key.field]
        raw = " ".join(_header_values(parsed, field))
        decoded = _address_text(parsed.addresses(field))
        return wanted in raw.casefold() or wanted in decoded.casefold()
    if key.field == "BODY":
        return wanted in cand.body_text()
    headers = "\n".join(f"{name}: {decode_words(value)}" for name, value in parsed.headers)
    return wanted in headers.casefold() or wanted in cand.body_text()  # TEXT


def matches_all(keys: Sequence[c.SearchKey], cand: Candidate, scope: SearchScope) -> bool:
    return all(matches(key, cand, scope) for key in keys)


# --- ESEARCH (RFC 4731) ------------------------------------------------------------------------


def esearch_response(tag: str, numbers: list[int], options: Sequence[str], *, uid: bool,
                     modseq: int | None) -> bytes:
    """`* ESEARCH (TAG "a") [UID] MIN .. MAX .. COUNT .. ALL ..`; no options means ALL."""
    wanted = set(options) - {"SAVE"} or ({"ALL"} if "SAVE" not in options else set())
    return encode.esearch(
        tag,
        uid=uid,
        min=min(numbers) if "MIN" in wanted and numbers else None,
        max=max(numbers) if "MAX" in wanted and numbers else None,
        count=len(numbers) if "COUNT" in wanted else None,
        all=SequenceSet.of(numbers) if "ALL" in wanted and numbers else None,
        modseq=modseq if numbers else None,
    )


def esort_response(tag: str, ordered: list[int], options: Sequence[str], *, uid: bool) -> bytes:
    """RFC 5267 §3 (ESORT): SORT's RETURN options answer in sort order: MIN and MAX are the
    first and last message as sorted, ALL lists them as sorted; no options means ALL."""
    wanted = set(options) or {"ALL"}
    return encode.esearch(
        tag,
        uid=uid,
        min=ordered[0] if "MIN" in wanted and ordered else None,
        max=ordered[-1] if "MAX" in wanted and ordered else None,
        count=len(ordered) if "COUNT" in wanted else None,
        all=SequenceSet.in_order(ordered) if "ALL" in wanted and ordered else None,
    )


def saved_result(numbers: list[int], options: Sequence[str]) -> list[int]:
    """RFC 5182 §2.1: SAVE with MIN or MAX alone keeps just that one (both: the two)."""
    if not numbers:
        return []
    chosen = {"MIN", "MAX"} & set(options)
    if chosen and not ({"ALL", "COUNT"} & set(options)):
        picked = set()
        if "MIN" in chosen:
            picked.add(min(numbers))
        if "MAX" in chosen:
            picked.add(max(numbers))
        return sorted(picked)
    return numbers
