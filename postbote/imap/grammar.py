"""Incremental, sans-I/O parser of IMAP client commands (RFC 9051 §9 and the extensions
postbote speaks).

    parser = ImapCommandParser(max_line=65536, max_literal=50 << 20)
    parser.receive(data)                    # whatever the socket gave, any chunking
    for event in parser.events():           # lazily: one command parsed per step
        match event:
            case ContinuationNeeded():      # a synchronizing literal {n} was announced
                parser.accept_literal()     # and send "+ Ready"; or reject_literal() + "NO ..."
            case ParseError(tag=tag):       # send "tag BAD [code] text" (or "* BAD" if no tag)
                ...
            case Idle(tag=tag):             # send "+ idling", then:
                parser.start_idle(tag)      # the next line must be DONE -> IdleDone(tag)
            case _: ...                     # a command from commands.py

Because `events()` parses one command per step, a mode change made while handling an event
(accept/reject a literal, start IDLE, expect a SASL response) applies to the very next line.

Framing: a command is its lines plus the literals between them. A line may end in CRLF or a
bare LF. `max_line` bounds the text of one command without its literals and is enforced while
bytes arrive: an overlong line is answered at once and then discarded up to its end without
being buffered. A literal is refused when announced if it is larger than `max_literal`, or
would take the command's literals past `max_command`, or is a non-synchronizing literal
above 4096 octets under LITERAL- (RFC 7888): `ParseError(code="TOOBIG")`. A refused
synchronizing literal is never sent by the client (it waits for "+"); a refused
non-synchronizing one is read and thrown away as it arrives, never buffered, and the
connection stays usable (the adapter may close it instead). Before asking for a
synchronizing literal the command so far is checked, so a command that is already wrong is
answered BAD without making the client upload anything.

Bad input of any kind gives a ParseError event; the parser never raises on input and never
waits for bytes a well-behaved client would not send.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Union

from postbote.imap import commands as c
from postbote.imap.sequence import SequenceSet
from postbote.imap.utf7 import Mutf7Error, decode_mutf7

DEFAULT_MAX_LINE = 64 * 1024
DEFAULT_MAX_LITERAL = 64 * 1024 * 1024
LITERAL_MINUS_MAX = 4096  # RFC 7888
MAX_SEARCH_DEPTH = 64  # NOT/OR/() nesting; deeper is refused rather than recursed into
_PREVALIDATE_MAX = 8192  # longer commands are checked only once complete (bounds rework)
_MAX_NUMBER = 0xFFFFFFFF
_MAX_NUMBER64 = 0x7FFFFFFFFFFFFFFF


class ImapUsageError(RuntimeError):
    """The adapter called the parser out of turn: a programming error, never bad input."""


# --- events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContinuationNeeded:
    """A synchronizing literal was announced: answer accept_literal() or reject_literal()."""

    tag: str | None
    size: int


@dataclass(frozen=True)
class ParseError:
    """The command cannot be understood; answer `tag BAD [code] text` (`* BAD` without tag)."""

    tag: str | None
    text: str
    code: str | None = None


@dataclass(frozen=True)
class IdleDone:
    """The DONE line that ends IDLE (RFC 2177)."""

    tag: str


@dataclass(frozen=True)
class AuthenticateResponse:
    """One client line of a SASL exchange (RFC 9051 §6.2.2): base64 text, or `*` to cancel."""

    tag: str
    data: bytes

    @property
    def cancelled(self) -> bool:
        return self.data == b"*"


ParserEvent = Union[c.Command, ContinuationNeeded, ParseError, IdleDone, AuthenticateResponse]

# --- character classes (RFC 9051 §9) --------------------------------------------------------


def _char_class(chars: bytes) -> bytes:
    return b"[" + b"".join(re.escape(bytes([char])) for char in chars) + b"]"


_PRINTABLE = bytes(range(0x21, 0x7F))
ATOM_CHARS = bytes(ch for ch in _PRINTABLE if ch not in b'(){%*"\\]')
ASTRING_CHARS = ATOM_CHARS + b"]"
LIST_CHARS = ASTRING_CHARS + b"%*"
TAG_CHARS = bytes(ch for ch in ASTRING_CHARS if ch != ord("+"))

_TAG = re.compile(_char_class(TAG_CHARS) + b"+")
_ATOM = re.compile(_char_class(ATOM_CHARS) + b"+")
_ASTRING_ATOM = re.compile(_char_class(ASTRING_CHARS) + b"+")
_LIST_ATOM = re.compile(_char_class(LIST_CHARS) + b"+")
_QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
_QUOTED_ESCAPE = re.compile(rb'\\(["\\])')
_LITERAL = re.compile(rb"(~?)\{([0-9]+)(\+?)\}")
_LITERAL_AT_END = re.compile(rb"(~?)\{([0-9]+)(\+?)\}\Z")
_DIGITS = re.compile(rb"[0-9]+")
_SEQUENCE = re.compile(rb"[0-9:*,$]+")
_BASE64 = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_BASE64_CHARS = re.compile(rb"[A-Za-z0-9+/=]+")
_FETCH_NAME = re.compile(rb"[A-Za-z0-9.]+")
_SECTION_WORD = re.compile(rb"[A-Za-z][A-Za-z.]*")
_OBJECT_ID = re.compile(rb"[A-Za-z0-9_-]{1,255}")  # RFC 8474
_QUOTE_OR_BACKSLASH = re.compile(rb'["\\]')

_SP, _LPAREN, _RPAREN, _DQUOTE, _DOT = 0x20, 0x28, 0x29, 0x22, 0x2E
_LBRACE, _TILDE, _LBRACKET, _RBRACKET = 0x7B, 0x7E, 0x5B, 0x5D

# --- dates (RFC 9051 §9 date, date-time) ----------------------------------------------------

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DATE_TIME = re.compile(
    r"( [0-9]|[0-9]{2})-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) "
    r"([+-])([0-9]{2})([0-9]{2})"
)
_DATE = re.compile(r"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")


def _month(name: str) -> int:
    try:
        return _MONTHS.index(name.upper()) + 1
    except ValueError:
        raise ValueError(f"unknown month {name!r}") from None


def parse_datetime(text: str) -> dt.datetime:
    """`17-Jul-1996 02:44:25 -0700` (without the quotes) to an aware datetime."""
    match = _DATE_TIME.fullmatch(text)
    if not match:
        raise ValueError(f"invalid date-time {text!r}")
    day, month, year, hour, minute, second, sign, zone_h, zone_m = match.groups()
    if int(zone_m) >= 60:
        raise ValueError(f"invalid time zone in {text!r}")
    offset = dt.timedelta(hours=int(zone_h), minutes=int(zone_m))
    zone = dt.timezone(-offset if sign == "-" else offset)
    return dt.datetime(
        int(year), _month(month), int(day), int(hour), int(minute), int(second), tzinfo=zone
    )


def parse_date(text: str) -> dt.date:
    """`1-Feb-1994` to a date."""
    match = _DATE.fullmatch(text)
    if not match:
        raise ValueError(f"invalid date {text!r}")
    day, month, year = match.groups()
    return dt.date(int(year), _month(month), int(day))


# --- the recursive-descent grammar ------------------------------------------------------------


class _Bad(Exception):
    """Internal: the command is malformed. Turned into a ParseError, never escapes."""

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


class _Incomplete(Exception):
    """Internal: the command is valid so far and continues in a literal not received yet."""


class _Cursor:
    """Reads a command made of lines with literals between them, as one stream of syntax."""

    __slots__ = ("_lines", "_literals", "_index", "_line", "pos")

    def __init__(self, lines: list[bytes], literals: list[bytes]) -> None:
        self._lines = lines
        self._literals = literals
        self._index = 0
        self._line = lines[0]
        self.pos = 0

    def mark(self) -> tuple[int, int]:
        return self._index, self.pos

    def reset(self, mark: tuple[int, int]) -> None:
        self._index, self.pos = mark
        self._line = self._lines[self._index]

    def peek(self, ahead: int = 0) -> int:
        """The byte `ahead` places on in this line, -1 past its end."""
        index = self.pos + ahead
        return self._line[index] if index < len(self._line) else -1

    def at_end(self) -> bool:
        return self.pos >= len(self._line) and self._index == len(self._lines) - 1

    def accept(self, token: bytes) -> bool:
        if self._line.startswith(token, self.pos):
            self.pos += len(token)
            return True
        return False

    def expect(self, token: bytes, what: str) -> None:
        if not self.accept(token):
            raise _Bad(f"expected {what}")

    def match(self, regex: re.Pattern[bytes]) -> bytes | None:
        found = regex.match(self._line, self.pos)
        if found is None:
            return None
        self.pos = found.end()
        return found.group(0)

    def literal(self) -> tuple[bytes, bool]:
        """The literal announced here and the line after it; True for a literal8 (~{n})."""
        found = _LITERAL.match(self._line, self.pos)
        if found is None:
            raise _Bad("expected a literal")
        if found.end() != len(self._line):
            raise _Bad("a literal must end its line")
        if self._index >= len(self._literals):
            raise _Incomplete
        data = self._literals[self._index]
        self._index += 1
        self._line = self._lines[self._index]
        self.pos = 0
        return data, bool(found.group(1))


def _text(raw: bytes) -> str:
    """Wire bytes to str; surrogateescape keeps non-UTF-8 bytes (passwords) recoverable."""
    return raw.decode("utf-8", "surrogateescape")


def _decode_charset(raw: bytes, charset: str | None) -> str:
    """Search strings are in the command's CHARSET (RFC 9051 §6.4.4)."""
    if charset is None or charset in ("UTF-8", "US-ASCII"):
        return _text(raw)
    try:
        return raw.decode(charset, "replace")
    except (LookupError, UnicodeError, ValueError):
        return _text(raw)  # an unknown charset: the session answers NO [BADCHARSET]


_LIST_SELECT_OPTIONS = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
_LIST_RETURN_OPTIONS = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "MYRIGHTS"})
_STATUS_ITEMS = frozenset(
    "MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE RECENT HIGHESTMODSEQ APPENDLIMIT "
    "MAILBOXID DELETED-STORAGE".split()
)
_SEARCH_RETURN_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})
_SORT_RETURN_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT"})
_SORT_KEYS = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)
_SIMPLE_FETCH = frozenset(
    "ENVELOPE FLAGS INTERNALDATE RFC822 RFC822.HEADER RFC822.SIZE RFC822.TEXT BODY "
    "BODYSTRUCTURE UID MODSEQ SAVEDATE EMAILID THREADID".split()
)
_SECTION_TEXTS = frozenset({"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"})
_STORE_ITEMS: dict[str, tuple[c.StoreMode, bool]] = {
    "FLAGS": ("", False),
    "FLAGS.SILENT": ("", True),
    "+FLAGS": ("+", False),
    "+FLAGS.SILENT": ("+", True),
    "-FLAGS": ("-", False),
    "-FLAGS.SILENT": ("-", True),
}
SPECIAL_USE = {
    name.upper(): name
    for name in r"\All \Archive \Drafts \Flagged \Junk \Sent \Trash \Important".split()
}
_UID_COMMANDS = frozenset({"COPY", "MOVE", "FETCH", "SEARCH", "STORE", "EXPUNGE", "SORT", "THREAD"})


class _Grammar:
    """One command's syntax (RFC 9051 §9), read by recursive descent over a _Cursor."""

    def __init__(self, lines: list[bytes], literals: list[bytes], utf8_names: bool) -> None:
        self.c = _Cursor(lines, literals)
        self.utf8_names = utf8_names
        self.tag: str | None = None
        self.charset: str | None = None

    # -- entry point --

    def command(self) -> c.Command:
        cur = self.c
        raw_tag = cur.match(_TAG)
        if raw_tag is None or cur.peek() not in (_SP, -1):
            raise _Bad("missing or invalid tag")
        self.tag = raw_tag.decode("ascii")
        if cur.at_end():
            raise _Bad("missing command")
        self.sp()
        name = self.keyword("a command name")
        uid = False
        if name == "UID":
            self.sp()
            name = self.keyword("a command after UID")
            if name not in _UID_COMMANDS:
                raise _Bad(f"UID {name} is not a command")
            uid = True
        handler = _HANDLERS.get(name)
        if handler is None:
            raise _Bad(f"unknown command {name}")
        command = handler(self, self.tag, uid)
        if not cur.at_end():
            raise _Bad(f"unexpected characters at the end of {name}")
        return command

    # -- tokens --

    def sp(self) -> None:
        if not self.c.accept(b" "):
            raise _Bad("expected a space")

    def keyword(self, what: str) -> str:
        raw = self.c.match(_ATOM)
        if raw is None:
            raise _Bad(f"expected {what}")
        return raw.decode("ascii").upper()

    def peek_keyword(self) -> str | None:
        mark = self.c.mark()
        raw = self.c.match(_ATOM)
        self.c.reset(mark)
        return raw.decode("ascii").upper() if raw else None

    def atom(self, what: str) -> str:
        raw = self.c.match(_ATOM)
        if raw is None:
            raise _Bad(f"expected {what}")
        return raw.decode("ascii")

    def number(self, *, nonzero: bool = False, wide: bool = False, what: str = "a number") -> int:
        raw = self.c.match(_DIGITS)
        if raw is None or len(raw) > 20:
            raise _Bad(f"expected {what}")
        value = int(raw)
        if value > (_MAX_NUMBER64 if wide else _MAX_NUMBER):
            raise _Bad(f"{what} is too large")
        if nonzero and (value == 0 or raw.startswith(b"0")):
            raise _Bad(f"expected {what} without leading zeros, greater than 0")
        return value

    def quoted(self) -> bytes:
        raw = self.c.match(_QUOTED)
        if raw is None:
            raise _Bad("unterminated or invalid quoted string")
        return _QUOTED_ESCAPE.sub(rb"\1", raw[1:-1])

    def string(self) -> bytes:
        first = self.c.peek()
        if first == _DQUOTE:
            return self.quoted()
        if first == _TILDE:
            raise _Bad("literal8 is not allowed here")
        if first == _LBRACE:
            data, _ = self.c.literal()
            if b"\x00" in data:
                raise _Bad("NUL is not allowed in a string")
            return data
        raise _Bad("expected a string")

    def astring(self) -> bytes:
        raw = self.c.match(_ASTRING_ATOM)
        return raw if raw is not None else self.string()

    def nstring(self) -> bytes | None:
        mark = self.c.mark()
        raw = self.c.match(_ATOM)
        if raw is not None and raw.upper() == b"NIL":
            return None
        self.c.reset(mark)
        return self.string()

    def charset_name(self) -> str:
        """`charset = atom / quoted` (RFC 5256); kept in capitals for comparison."""
        raw = self.quoted() if self.c.peek() == _DQUOTE else self.c.match(_ATOM)
        if not raw:
            raise _Bad("expected a charset name")
        return _text(raw).upper()

    def open_paren(self, what: str) -> None:
        self.c.expect(b"(", f"'(' starting {what}")

    def close_paren(self, what: str) -> None:
        self.c.expect(b")", f"')' closing {what}")

    def paren_list(self, item: Callable[[], object], what: str, *, empty: bool) -> list:
        """`"(" [item *(SP item)] ")"`; `empty` says whether "()" is allowed."""
        self.open_paren(what)
        if self.c.accept(b")"):
            if not empty:
                raise _Bad(f"{what} must not be empty")
            return []
        items = [item()]
        while self.c.accept(b" "):
            items.append(item())
        self.close_paren(what)
        return items

    # -- mailboxes, flags, dates, sets --

    def decode_name(self, raw: bytes, *, inbox: bool) -> str:
        """UTF-8 after UTF8=ACCEPT or IMAP4rev2 (RFC 9051 §5.1), else modified UTF-7."""
        if self.utf8_names:
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise _Bad("mailbox name is not valid UTF-8") from None
        else:
            try:
                name = decode_mutf7(raw.decode("ascii"))
            except (UnicodeDecodeError, Mutf7Error) as exc:
                raise _Bad(f"mailbox name is not valid modified UTF-7: {exc}") from None
        if inbox and name.isascii() and name.upper() == "INBOX":
            return "INBOX"  # RFC 9051 §5.1: INBOX is case-insensitive
        return name

    def mailbox(self) -> str:
        return self.decode_name(self.astring(), inbox=True)

    def list_mailbox(self) -> str:
        raw = self.c.match(_LIST_ATOM)
        return self.decode_name(raw if raw is not None else self.string(), inbox=False)

    def flag(self) -> str:
        if self.c.accept(b"\\"):
            return c.canonical_flag("\\" + self.atom("a flag name after '\\'"))
        return self.atom("a flag")

    def flag_list(self) -> tuple[str, ...]:
        return tuple(self.paren_list(self.flag, "the flag list", empty=True))

    def date_time(self) -> dt.datetime:
        if self.c.peek() != _DQUOTE:
            raise _Bad("expected a quoted date-time")
        raw = self.quoted()
        try:
            return parse_datetime(raw.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            raise _Bad(f"invalid date-time {_text(raw)!r}") from None

    def date(self) -> dt.date:
        raw = self.quoted() if self.c.peek() == _DQUOTE else self.c.match(_ATOM)
        if raw is None:
            raise _Bad("expected a date")
        try:
            return parse_date(raw.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            raise _Bad(f"invalid date {_text(raw)!r}") from None

    def sequence_set(self, *, star: bool = True) -> SequenceSet:
        raw = self.c.match(_SEQUENCE)
        if raw is None:
            raise _Bad("expected a sequence set")
        try:
            result = SequenceSet.parse(raw.decode("ascii"))
        except ValueError as exc:
            raise _Bad(f"invalid sequence set {_text(raw)!r}: {exc}") from None
        if not star and (result.uses_star or result.saved):
            raise _Bad(f"'*' and '$' are not allowed in {_text(raw)!r}")
        return result

    def modseq(self, *, zero: bool = False) -> int:
        """mod-sequence-value (RFC 7162), or mod-sequence-valzer when zero is allowed."""
        raw = self.c.match(_DIGITS)
        if raw is None or len(raw) > 20 or int(raw) > _MAX_NUMBER64:
            raise _Bad("expected a mod-sequence value")
        value = int(raw)
        if value == 0 and not zero:
            raise _Bad("mod-sequence value must be greater than 0")
        return value

    def status_items(self) -> tuple[str, ...]:
        def item() -> str:
            name = self.keyword("a status item")
            if name not in _STATUS_ITEMS:
                raise _Bad(f"unknown status item {name}")
            return name

        return tuple(self.paren_list(item, "the status items", empty=False))

    # -- search (RFC 9051 §6.4.4) --

    def search_string(self) -> str:
        return _decode_charset(self.astring(), self.charset)

    def search_keys(self) -> tuple[c.SearchKey, ...]:
        keys = [self.search_key(0)]
        while self.c.accept(b" "):
            keys.append(self.search_key(0))
        return tuple(keys)

    def search_key(self, depth: int) -> c.SearchKey:
        if depth > MAX_SEARCH_DEPTH:
            raise _Bad("search criteria are nested too deeply")
        first = self.c.peek()
        if first == _LPAREN:
            self.c.accept(b"(")
            keys = [self.search_key(depth + 1)]
            while self.c.accept(b" "):
                keys.append(self.search_key(depth + 1))
            self.close_paren("the search key list")
            return c.SearchAnd(tuple(keys))
        if first >= 0 and first in b"0123456789*$":
            return c.SearchSequence(self.sequence_set())
        name = self.keyword("a search key")
        return self.search_key_named(name, depth)

    def search_key_named(self, name: str, depth: int) -> c.SearchKey:
        if name in c.FLAG_SEARCH_KEYS:
            return c.SearchFlagKey(name)
        if name == "NOT":
            self.sp()
            return c.SearchNot(self.search_key(depth + 1))
        if name == "OR":
            self.sp()
            left = self.search_key(depth + 1)
            self.sp()
            return c.SearchOr(left, self.search_key(depth + 1))
        parse = _SEARCH_ARGUMENTS.get(name)
        if parse is None:
            raise _Bad(f"unknown search key {name}")
        self.sp()
        return parse(self, name)

    def search_text(self, name: str) -> c.SearchKey:
        return c.SearchText(name, self.search_string())

    def search_header(self, name: str) -> c.SearchKey:
        field = _text(self.astring())
        self.sp()
        return c.SearchHeader(field, self.search_string())

    def search_date(self, name: str) -> c.SearchKey:
        return c.SearchDate(name, self.date())

    def search_size(self, name: str) -> c.SearchKey:
        return c.SearchSize(name, self.number(wide=True))  # type: ignore[arg-type]

    def search_keyword(self, name: str) -> c.SearchKey:
        return c.SearchKeyword(self.atom("a keyword"), present=name == "KEYWORD")

    def search_uid(self, name: str) -> c.SearchKey:
        return c.SearchUid(self.sequence_set())

    def search_within(self, name: str) -> c.SearchKey:
        return c.SearchWithin(name, self.number(nonzero=True))  # type: ignore[arg-type]

    def search_object_id(self, name: str) -> c.SearchKey:
        raw = self.c.match(_OBJECT_ID)
        if raw is None or self.c.peek() not in (_SP, _RPAREN, -1):
            raise _Bad(f"expected an object id after {name}")
        return c.SearchObjectId(name, raw.decode("ascii"))  # type: ignore[arg-type]

    def search_modseq(self, name: str) -> c.SearchKey:
        # RFC 7162 §3.1.5: MODSEQ ["/flags/<flag>" priv|shared|all] mod-sequence-valzer
        entry_name = entry_type = None
        if self.c.peek() == _DQUOTE:
            entry_name = _text(self.quoted())
            if not entry_name.lower().startswith("/flags/") or len(entry_name) == 7:
                raise _Bad("MODSEQ entry name must be /flags/<flag>")
            self.sp()
            entry_type = self.keyword("priv, shared or all")
            if entry_type not in ("PRIV", "SHARED", "ALL"):
                raise _Bad("MODSEQ entry type must be priv, shared or all")
            self.sp()
        modseq = self.modseq(zero=True)
        return c.SearchModSeq(modseq, entry_name, entry_type)  # type: ignore[arg-type]

    def return_options(self, allowed: frozenset[str]) -> tuple[str, ...] | None:
        """`RETURN (opts)` of ESEARCH/ESORT (RFC 4731, 5267) if it comes next."""
        if self.peek_keyword() != "RETURN":
            return None
        self.keyword("RETURN")
        self.sp()

        def option() -> str:
            name = self.keyword("a RETURN option")
            if name not in allowed:
                raise _Bad(f"unknown RETURN option {name}")
            return name

        options = tuple(self.paren_list(option, "the RETURN options", empty=True))
        self.sp()
        return options

    # -- fetch (RFC 9051 §6.4.5) --

    def fetch_items(self) -> tuple[c.FetchItem, ...]:
        if self.c.peek() == _LPAREN:
            return tuple(self.paren_list(self.fetch_att, "the fetch attributes", empty=False))
        macro = c.FETCH_MACROS.get(self.peek_keyword() or "")
        if macro is not None:
            self.keyword("a fetch macro")
            return macro
        return (self.fetch_att(),)

    def fetch_att(self) -> c.FetchItem:
        raw = self.c.match(_FETCH_NAME)
        if raw is None:
            raise _Bad("expected a fetch attribute")
        name = raw.decode("ascii").upper()
        if name in ("BODY", "BODY.PEEK") and self.c.peek() == _LBRACKET:
            section = self.section()
            return c.FetchBody(section, self.partial(), peek=name == "BODY.PEEK")
        if name in ("BINARY", "BINARY.PEEK"):
            part = self.binary_section()
            return c.FetchBinary(part, self.partial(), peek=name == "BINARY.PEEK")
        if name == "BINARY.SIZE":
            return c.FetchBinarySize(self.binary_section())
        if name == "PREVIEW":
            return c.FetchPreview(lazy=self.preview_modifiers())
        if name in _SIMPLE_FETCH:
            return c.FetchAtt(name)  # type: ignore[arg-type]
        raise _Bad(f"unknown fetch attribute {name}")

    def part_path(self) -> list[int]:
        part = [self.number(nonzero=True, what="a part number")]
        while self.c.peek() == _DOT and 0x30 <= self.c.peek(1) <= 0x39:
            self.c.accept(b".")
            part.append(self.number(nonzero=True, what="a part number"))
        return part

    def section(self) -> c.Section:
        cur = self.c
        cur.expect(b"[", "'['")
        if cur.accept(b"]"):
            return c.Section()
        part: list[int] = []
        if cur.peek() >= 0 and cur.peek() in b"0123456789":
            part = self.part_path()
            if cur.accept(b"]"):
                return c.Section(tuple(part))
            cur.expect(b".", "'.' or ']' after the part number")
        raw = cur.match(_SECTION_WORD)
        text = raw.decode("ascii").upper() if raw else ""
        if text not in _SECTION_TEXTS or (text == "MIME" and not part):
            raise _Bad(f"invalid section {text!r}")
        fields: tuple[str, ...] = ()
        if text.startswith("HEADER.FIELDS"):
            self.sp()
            fields = tuple(
                self.paren_list(lambda: _text(self.astring()), "the header list", empty=False)
            )
        cur.expect(b"]", "']' closing the section")
        return c.Section(tuple(part), text, fields)  # type: ignore[arg-type]

    def binary_section(self) -> tuple[int, ...]:
        self.c.expect(b"[", "'[' after BINARY")
        part = [] if self.c.peek() == _RBRACKET else self.part_path()
        self.c.expect(b"]", "']' closing the BINARY section")
        return tuple(part)

    def partial(self) -> c.Partial | None:
        if not self.c.accept(b"<"):
            return None
        offset = self.number(wide=True, what="the partial offset")
        self.c.expect(b".", "'.' in the partial range")
        length = self.number(nonzero=True, wide=True, what="the partial length")
        self.c.expect(b">", "'>' closing the partial range")
        return c.Partial(offset, length)

    def preview_modifiers(self) -> bool:
        """RFC 8970: PREVIEW (LAZY); any other list is not ours (a FETCH modifier list)."""
        mark = self.c.mark()
        if self.c.accept(b" (") and self.peek_keyword() == "LAZY":
            while True:
                if self.keyword("LAZY") != "LAZY":
                    raise _Bad("unknown PREVIEW modifier")
                if self.c.accept(b")"):
                    return True
                self.sp()
        self.c.reset(mark)
        return False

    def fetch_modifiers(self) -> tuple[int | None, bool]:
        changedsince, vanished = None, False
        if not self.c.accept(b" "):
            return changedsince, vanished

        def modifier() -> None:
            nonlocal changedsince, vanished
            name = self.keyword("a FETCH modifier")
            if name == "CHANGEDSINCE":
                self.sp()
                changedsince = self.modseq()
            elif name == "VANISHED":
                vanished = True
            else:
                raise _Bad(f"unknown FETCH modifier {name}")

        self.paren_list(modifier, "the FETCH modifiers", empty=False)
        return changedsince, vanished


# --- command handlers ------------------------------------------------------------------------

Handler = Callable[[_Grammar, str, bool], c.Command]


def _no_arguments(cls: Callable[[str], c.Command]) -> Handler:
    return lambda g, tag, uid: cls(tag)


def _authenticate(g: _Grammar, tag: str, uid: bool) -> c.Command:
    g.sp()
    mechanism = g.keyword("a SASL mechanism")
    initial = None
    if g.c.accept(b" "):
        raw = g.c.match(_BASE64_CHARS) or b""
        if raw != b"=" and (not raw or not _BASE64.fullmatch(raw)):
            raise _Bad("initial response is not base64")
        initial = "" if raw == b"=" else raw.decode("ascii")  # RFC 4959: "=" is empty
    return c.Authenticate(tag, mechanism, initial)


def _login(g: _Grammar, tag: str, uid: bool) -> c.Command:
    g.sp()
    user = _text(g.astring())
    g.sp()
    return c.Login(tag, user, _text(g.astring()))


def _enable(g: _Grammar, tag: str, uid: bool) -> c.Command:
    names = []
    while g.c.accept(b" "):
        names.append(g.keyword("a capability"))
    if not names:
        raise _Bad("ENABLE needs at least one capability")
    return c.Enable(tag, tuple(names))


def _qresync(g: _Grammar) -> c.QresyncParams:
    g.open_paren("the QRESYNC parameters")
    uidvalidity = g.number(nonzero=True, what="the UIDVALIDITY")
    g.sp()
    modseq = g.modseq()
    known_uids = known_seqs = known_seq_uids = None
    if g.c.accept(b" "):
        has_match_data = True
        if g.c.peek() != _LPAREN:
            known_uids = g.sequence_set(star=False)
            has_match_data = g.c.accept(b" ")
        if has_match_data:
            g.open_paren("the sequence match data")
            known_seqs = g.sequence_set(star=False)
            g.sp()
            known_seq_uids = g.sequence_set(star=False)
            g.close_paren("the sequence match data")
    g.close_paren("the QRESYNC parameters")
    return c.QresyncParams(uidvalidity, modseq, known_uids, known_seqs, known_seq_uids)


def _select_like(cls: type[c.Select] | type[c.Examine]) -> Handler:
    def parse(g: _Grammar, tag: str, uid: bool) -> c.Command:
        g.sp()
        mailbox = g.mailbox()
        condstore = False
        qresync = None
        if g.c.accept(b" "):

            def parameter() -> None:
                nonlocal condstore, qresync
                name = g.keyword("a SELECT parameter")
                if name == "CONDSTORE":
                    condstore = True
                elif name == "QRESYNC":
                    g.sp()
                    qresync = _qresync(g)
                else:
                    raise _Bad(f"unknown SELECT parameter {name}")

            g.paren_list(parameter, "the SELECT parameters", empty=False)
        return cls(tag, mailbox, condstore, qresync)

    return parse


def _create(g: _Grammar, tag: str, uid: bool) -> c.Command:
    g.sp()
    mailbox = g.mailbox()
    uses: list[str] = []
    if g.c.accept(b" "):

        def use_attr() -> str:
            g.c.expect(b"\\", "a special-use attribute")
            name = "\\" + g.atom("a special-use attribute")
            return SPECIAL_USE.get(name.upper(), name)

        def parameter() -> None:
            if g.keyword("a CREATE parameter") != "USE":
                raise _Bad("unknown CREATE parameter")
            g.sp()
            uses.extend(g.paren_list(use_attr, "the USE attributes", empty=True))

        g.paren_list(parameter, "the CREATE parameters", empty=False)
    return c.Create(tag, mailbox, tuple(uses))


def _one_mailbox(cls: Callable[[str, str], c.Command]) -> Handler:
    def parse(g: _Grammar, tag: str, uid: bool) -> c.Command:
        g.sp()
        return cls(tag, g.mailbox())

    return parse


def _rename(g: _Grammar, tag: str, uid: bool) -> c.Command:
    g.sp()
    old = g.mailbox()
    g.sp()
    return c.Rename(tag, old, g.mailbox())


def _list(g: _Grammar, tag: str, uid: bool) -> c.Command:
    g.sp()
    selection: list[str] = []
    if g.c.peek() == _LPAREN:

        def select_option() -> str:
            name = g.keyword("a LIST selection option")
            if name not in _LIST_SELECT_OPTIONS:
                raise _Bad(f"unknown LIST selection option {name}")
            return name

        selection = g.paren_list(select_option, "the LIST selection options", empty=True)
        g.sp()
        # RFC 5258: RECURSIVEMATCH alone (or with REMOTE only) is an error
        if "RECURSIVEMATCH" in selection and not set(selection) - {"RECURSIVEMATCH", "REMOTE"}:
            raise _Bad("RECURSIVEMATCH needs another selection option")
    reference = g.mailbox()
    g.sp()
    if g.c.peek() == _LPAREN:
        patterns = g.paren_list(g.list_mailbox, "the LIST patterns", empty=False)
    else:
        patterns = [g.list_mailbox()]
    returns: list[str] = []
    status_items = None
    if g.c.accept(b" "):
        if g.keyword("RETURN") != "RETURN":
            raise _Bad("expected RETURN")
        g.sp()

        def return_option() -> None:
            nonlocal status_items
            name = g.keyword("a LIST return option")
            if name == "STATUS":
                g.sp()
                status_items = g.status_items()
            elif name in _LIST_RETURN_OPTIONS:
                returns.append(name)
            else:
                raise _Bad(f"unknown LIST return option {name}")

        g.paren_list(return_option, "the LIST return options", empty=True)
    return c.List(tag, reference, tuple(patterns), tuple(selection), tuple(returns), status_items)


def _lsub(g: _Grammar, tag: str, uid: bool) -> c.Command:
    g.sp()
    reference = g.mailbox()
    g.sp()
    return c.Lsub(tag, reference, g.list_mailbox())


def _status(g: _Grammar, tag: str, uid: bool) -> c.Command:
    g.sp()
    mailbox = g.mailbox()
    g.sp()
    return c.Status(tag, mailbox, g.status_items())


def _append_message(g: _Grammar) -> c.AppendMessage:
    flags: tuple[str, ...] = ()
    date = None
    if g.c.peek() == _LPAREN:
        flags = g.flag_list()
        g.sp()
    if g.c.peek() == _DQUOTE:
        date = g.date_time()
        g.sp()
    utf8 = False
    if g.c.peek() not in (_LBRACE, _TILDE):
        if g.keyword("a message literal") != "UTF8":
            raise _Bad("expected a message literal")
        g.sp()
        g.open_paren("the UTF8 message")
        utf8 = True
    data, binary = g.c.literal()
    if utf8:
        if not binary:
            raise _Bad("UTF8 APPEND data must be a literal8")  # RFC 6855
        g.close_paren("the UTF8 message")
    return c.AppendMessage(data, flags, date, binary, utf8)


def _append(g: _Grammar, tag: str, uid: bool) -> c.Command:
    g.sp()
    mailbox = g.mailbox()
    messages = []
    while True:
        g.sp()
        messages.append(_append_message(g))  # RFC 3502: MULTIAPPEND repeats the message
        if g.c.at_end():
            return c.Append(tag, mailbox, tuple(messages))


def _expunge(g: _Grammar, tag: str, uid: bool) -> c.Command:
    if not uid:
        return c.Expunge(tag)
    g.sp()
    return c.UidExpunge(tag, g.sequence_set())


def _search(g: _Grammar, tag: str, uid: bool) -> c.Command:
    g.sp()
    returns = g.return_options(_SEARCH_RETURN_OPTIONS)
    charset = None
    if g.peek_keyword() == "CHARSET":
        g.keyword("CHARSET")
        g.sp()
        charset = _text(g.astring()).upper()
        g.sp()
    g.charset = charset
    return c.Search(tag, g.search_keys(), charset, returns, uid)


def _fetch(g: _Grammar, tag: str, uid: bool) -> c.Command:
    g.sp()
    sequence = g.sequence_set()
    g.sp()
    items = g.fetch_items()
    changedsince, vanished = g.fetch_modifiers()
    # RFC 7162 §3.2.6: VANISHED only with UID FETCH and CHANGEDSINCE
    if vanished and not (uid and changedsince is not None):
        raise _Bad("VANISHED needs UID FETCH and CHANGEDSINCE")
    return c.Fetch(tag, sequence, items, changedsince, vanished, uid)


def _store(g: _Grammar, tag: str, uid: bool) -> c.Command:
    g.sp()
    sequence = g.sequence_set()
    g.sp()
    unchangedsince = None
    if g.c.peek() == _LPAREN:

        def modifier() -> None:
            nonlocal unchangedsince
            if g.keyword("a STORE modifier") != "UNCHANGEDSINCE":
                raise _Bad("unknown STORE modifier")
            g.sp()
            unchangedsince = g.modseq(zero=True)

        g.paren_list(modifier, "the STORE modifiers", empty=False)
        g.sp()
    item = _STORE_ITEMS.get(g.keyword("FLAGS, +FLAGS or -FLAGS"))
    if item is None:
        raise _Bad("expected FLAGS, +FLAGS or -FLAGS")
    g.sp()
    if g.c.peek() == _LPAREN:
        flags = g.flag_list()
    else:
        found = [g.flag()]
        while g.c.accept(b" "):
            found.append(g.flag())
        flags = tuple(found)
    mode, silent = item
    return c.Store(tag, sequence, mode, flags, silent, unchangedsince, uid)


_NOTIFY_FILTERS = frozenset(
    "SELECTED SELECTED-DELAYED INBOXES PERSONAL SUBSCRIBED SUBTREE MAILBOXES".split()
)


def _notify(g: _Grammar, tag: str, uid: bool) -> c.Command:
    """RFC 5465 §8: `NOTIFY NONE` or `NOTIFY SET [STATUS] event-group *(SP event-group)`."""
    g.sp()
    verb = g.keyword("SET or NONE")
    if verb == "NONE":
        return c.Notify(tag)
    if verb != "SET":
        raise _Bad("expected NOTIFY SET or NOTIFY NONE")
    g.sp()
    status = g.peek_keyword() == "STATUS"
    if status:
        g.keyword("STATUS")
        g.sp()
    groups = [_notify_group(g)]
    while g.c.accept(b" "):
        groups.append(_notify_group(g))
    return c.Notify(tag, tuple(groups), status)


def _notify_group(g: _Grammar) -> c.NotifyGroup:
    g.open_paren("an event group")
    name = g.keyword("a mailbox filter")
    if name not in _NOTIFY_FILTERS:
        raise _Bad(f"unknown mailbox filter {name}")
    mailboxes: tuple[str, ...] = ()
    if name in ("SUBTREE", "MAILBOXES"):
        g.sp()
        if g.c.peek() == _LPAREN:
            mailboxes = tuple(g.paren_list(g.mailbox, "the mailbox list", empty=False))
        else:
            mailboxes = (g.mailbox(),)
    g.sp()
    events: tuple[c.NotifyEvent, ...] = ()
    if g.c.peek() == _LPAREN:
        events = tuple(g.paren_list(lambda: _notify_event(g), "the event list", empty=False))
    elif g.keyword("an event list or NONE") != "NONE":
        raise _Bad("expected an event list or NONE")
    g.close_paren("the event group")
    return c.NotifyGroup(name, mailboxes, events)  # type: ignore[arg-type]


def _notify_event(g: _Grammar) -> c.NotifyEvent:
    raw = g.atom("an event")
    name = c.NOTIFY_EVENTS.get(raw.upper(), raw)
    if name != "MessageNew" or g.c.peek() != _SP or g.c.peek(1) != _LPAREN:
        return c.NotifyEvent(name)
    g.sp()
    atts = g.paren_list(g.fetch_att, "the MessageNew fetch attributes", empty=False)
    return c.NotifyEvent(name, tuple(atts))


def _copy_like(cls: type[c.Copy] | type[c.Move]) -> Handler:
    def parse(g: _Grammar, tag: str, uid: bool) -> c.Command:
        g.sp()
        sequence = g.sequence_set()
        g.sp()
        return cls(tag, sequence, g.mailbox(), uid)

    return parse


def _sort(g: _Grammar, tag: str, uid: bool) -> c.Command:
    g.sp()
    returns = g.return_options(_SORT_RETURN_OPTIONS)

    def criterion() -> c.SortCriterion:
        name = g.keyword("a sort key")
        reverse = name == "REVERSE"
        if reverse:
            g.sp()
            name = g.keyword("a sort key")
        if name not in _SORT_KEYS:
            raise _Bad(f"unknown sort key {name}")
        return c.SortCriterion(name, reverse)

    criteria = g.paren_list(criterion, "the sort criteria", empty=False)
    g.sp()
    g.charset = g.charset_name()
    g.sp()
    return c.Sort(tag, tuple(criteria), g.charset, g.search_keys(), returns, uid)


def _thread(g: _Grammar, tag: str, uid: bool) -> c.Command:
    g.sp()
    algorithm = g.keyword("a thread algorithm")
    g.sp()
    g.charset = g.charset_name()
    g.sp()
    return c.Thread(tag, algorithm, g.charset, g.search_keys(), uid)


def _id(g: _Grammar, tag: str, uid: bool) -> c.Command:
    g.sp()
    if g.c.peek() != _LPAREN:
        if g.keyword("NIL or a parameter list") != "NIL":
            raise _Bad("expected NIL or a parameter list")
        return c.Id(tag, None)

    def pair() -> tuple[str, str | None]:
        field = _text(g.astring())
        g.sp()
        mark = g.c.mark()
        raw = g.c.match(_ASTRING_ATOM)
        if raw is not None and raw.upper() == b"NIL":
            return field, None
        g.c.reset(mark)
        return field, _text(g.astring())

    return c.Id(tag, tuple(g.paren_list(pair, "the ID parameters", empty=True)))


def _getquota(g: _Grammar, tag: str, uid: bool) -> c.Command:
    g.sp()
    return c.GetQuota(tag, _text(g.astring()))


def _setquota(g: _Grammar, tag: str, uid: bool) -> c.Command:
    g.sp()
    root = _text(g.astring())
    g.sp()

    def resource() -> tuple[str, int]:
        name = g.keyword("a quota resource")
        g.sp()
        return name, g.number(wide=True, what="a quota limit")

    return c.SetQuota(tag, root, tuple(g.paren_list(resource, "the quota limits", empty=True)))


def _compress(g: _Grammar, tag: str, uid: bool) -> c.Command:
    g.sp()
    return c.Compress(tag, g.keyword("a compression mechanism"))


def _getmetadata(g: _Grammar, tag: str, uid: bool) -> c.Command:
    g.sp()
    maxsize = depth = None
    if g.c.peek() == _LPAREN:

        def option() -> None:
            nonlocal maxsize, depth
            name = g.keyword("a GETMETADATA option")
            g.sp()
            if name == "MAXSIZE":
                maxsize = g.number(what="MAXSIZE")
            elif name == "DEPTH":
                depth = g.keyword("0, 1 or infinity").lower()
                if depth not in ("0", "1", "infinity"):
                    raise _Bad("DEPTH must be 0, 1 or infinity")
            else:
                raise _Bad(f"unknown GETMETADATA option {name}")

        g.paren_list(option, "the GETMETADATA options", empty=False)
        g.sp()
    mailbox = g.mailbox()
    g.sp()
    entry = lambda: _text(g.astring())  # noqa: E731
    if g.c.peek() == _LPAREN:
        entries = g.paren_list(entry, "the metadata entries", empty=False)
    else:
        entries = [entry()]
    return c.GetMetadata(tag, mailbox, tuple(entries), maxsize, depth)  # type: ignore[arg-type]


def _setmetadata(g: _Grammar, tag: str, uid: bool) -> c.Command:
    g.sp()
    mailbox = g.mailbox()
    g.sp()

    def entry_value() -> tuple[str, bytes | None]:
        name = _text(g.astring())
        g.sp()
        if g.c.peek() == _TILDE:
            return name, g.c.literal()[0]  # RFC 5464: value = nstring / literal8
        return name, g.nstring()

    entries = g.paren_list(entry_value, "the metadata entries", empty=False)
    return c.SetMetadata(tag, mailbox, tuple(entries))


_HANDLERS: dict[str, Handler] = {
    "CAPABILITY": _no_arguments(c.Capability),
    "NOOP": _no_arguments(c.Noop),
    "LOGOUT": _no_arguments(c.Logout),
    "STARTTLS": _no_arguments(c.StartTls),
    "AUTHENTICATE": _authenticate,
    "LOGIN": _login,
    "UNAUTHENTICATE": _no_arguments(c.Unauthenticate),
    "ENABLE": _enable,
    "SELECT": _select_like(c.Select),
    "EXAMINE": _select_like(c.Examine),
    "CREATE": _create,
    "DELETE": _one_mailbox(c.Delete),
    "RENAME": _rename,
    "SUBSCRIBE": _one_mailbox(c.Subscribe),
    "UNSUBSCRIBE": _one_mailbox(c.Unsubscribe),
    "LIST": _list,
    "LSUB": _lsub,
    "NAMESPACE": _no_arguments(c.Namespace),
    "STATUS": _status,
    "APPEND": _append,
    "IDLE": _no_arguments(c.Idle),
    "CHECK": _no_arguments(c.Check),
    "CLOSE": _no_arguments(c.Close),
    "UNSELECT": _no_arguments(c.Unselect),
    "EXPUNGE": _expunge,
    "SEARCH": _search,
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copy_like(c.Copy),
    "MOVE": _copy_like(c.Move),
    "SORT": _sort,
    "THREAD": _thread,
    "ID": _id,
    "GETQUOTA": _getquota,
    "GETQUOTAROOT": _one_mailbox(c.GetQuotaRoot),
    "SETQUOTA": _setquota,
    "COMPRESS": _compress,
    "GETMETADATA": _getmetadata,
    "SETMETADATA": _setmetadata,
    "NOTIFY": _notify,
}

_SEARCH_ARGUMENTS: dict[str, Callable[[_Grammar, str], c.SearchKey]] = {
    **{name: _Grammar.search_text for name in c.TEXT_SEARCH_KEYS},
    **{name: _Grammar.search_date for name in c.DATE_SEARCH_KEYS},
    "HEADER": _Grammar.search_header,
    "KEYWORD": _Grammar.search_keyword,
    "UNKEYWORD": _Grammar.search_keyword,
    "LARGER": _Grammar.search_size,
    "SMALLER": _Grammar.search_size,
    "UID": _Grammar.search_uid,
    "MODSEQ": _Grammar.search_modseq,
    "OLDER": _Grammar.search_within,
    "YOUNGER": _Grammar.search_within,
    "EMAILID": _Grammar.search_object_id,
    "THREADID": _Grammar.search_object_id,
}


def parse_command(
    lines: list[bytes], literals: list[bytes], *, utf8_names: bool = False
) -> c.Command | ParseError:
    """Parse one complete command given as its lines and the literals between them."""
    grammar = _Grammar(lines, literals, utf8_names)
    try:
        return grammar.command()
    except _Bad as exc:
        return ParseError(grammar.tag or _guess_tag(lines[0]), exc.text, exc.code)
    except _Incomplete:
        return ParseError(grammar.tag or _guess_tag(lines[0]), "literal missing")


def _prevalidate(lines: list[bytes], literals: list[bytes], utf8_names: bool) -> ParseError | None:
    """Check a command up to a literal not yet received; None when it is fine so far."""
    grammar = _Grammar(lines, literals, utf8_names)
    try:
        grammar.command()
    except _Incomplete:
        return None
    except _Bad as exc:
        return ParseError(grammar.tag or _guess_tag(lines[0]), exc.text, exc.code)
    return ParseError(grammar.tag, "unexpected literal")  # unreachable: the literal ends a line


def _guess_tag(line: bytes) -> str | None:
    """The tag of a line that failed early, when it has one (else the reply is `* BAD`)."""
    found = _TAG.match(line)
    if found and line[found.end() : found.end() + 1] in (b" ", b""):
        return found.group(0).decode("ascii")
    return None


def _literal_marker(line: bytes) -> re.Match[bytes] | None:
    """The `{n}`, `{n+}` or `~{n}` ending this line, unless it sits inside a quoted string."""
    found = _LITERAL_AT_END.search(line)
    if found is None:
        return None
    in_quotes = False
    skip_to = -1
    for special in _QUOTE_OR_BACKSLASH.finditer(line, 0, found.start()):
        position = special.start()
        if position < skip_to:
            continue
        if not in_quotes:
            in_quotes = special.group() == b'"'
        elif special.group() == b"\\":
            skip_to = position + 2
        else:
            in_quotes = False
    return None if in_quotes else found


# --- the incremental framer -------------------------------------------------------------------


class _State(Enum):
    LINE = "line"
    LITERAL = "literal"
    AWAIT = "await"  # a synchronizing literal waits for the adapter's decision
    SKIP_LINE = "skip line"  # discarding the rest of a refused line
    SKIP_LITERAL = "skip literal"  # discarding a refused non-synchronizing literal


class _Mode(Enum):
    COMMAND = "command"
    IDLE = "idle"
    AUTHENTICATE = "authenticate"


_COMPACT_AT = 64 * 1024
_SKIP_TAIL = 48  # enough of a discarded line's end to see a literal announced there


class ImapCommandParser:
    """Bytes from an IMAP client in, commands and framing events out (see the module doc)."""

    def __init__(
        self,
        *,
        max_line: int = DEFAULT_MAX_LINE,
        max_literal: int = DEFAULT_MAX_LITERAL,
        max_command: int | None = None,
        literal_minus: bool = False,
        utf8_names: bool = False,
    ) -> None:
        self.max_line = max_line
        self.max_literal = max_literal
        self.max_command = max_literal if max_command is None else max_command
        self.literal_minus = literal_minus  # advertise LITERAL- rather than LITERAL+
        self.utf8_names = utf8_names  # set after ENABLE UTF8=ACCEPT or IMAP4rev2
        self._buffer = bytearray()
        self._pos = 0
        self._scan = 0
        self._state = _State.LINE
        self._mode = _Mode.COMMAND
        self._mode_tag = ""
        self._skip_left = 0
        self._skip_tail = b""
        self._lines: list[bytes] = []
        self._literals: list[bytes] = []
        self._line_bytes = 0
        self._literal_bytes = 0
        self._literal_need = 0
        self._literal = bytearray()

    # -- the adapter's side --

    def receive(self, data: bytes) -> None:
        self._buffer += data

    def events(self) -> Iterator[ParserEvent]:
        """Events parsed from what has been received, one at a time, until more is needed."""
        while (event := self.next_event()) is not None:
            yield event

    def next_event(self) -> ParserEvent | None:
        while True:
            if self._state is _State.AWAIT:
                return None
            if self._state is _State.LITERAL:
                if not self._fill_literal():
                    return None
                continue
            if self._state is _State.SKIP_LITERAL:
                if not self._discard_literal():
                    return None
                continue
            if self._state is _State.SKIP_LINE:
                if not self._discard_line():
                    return None
                continue
            line = self._take_line()
            if line is None:
                return None
            if isinstance(line, ParseError):
                return line
            event = self._on_line(line)
            if event is not None:
                return event

    @property
    def awaiting_literal(self) -> bool:
        return self._state is _State.AWAIT

    @property
    def between_commands(self) -> bool:
        """No command is partly received: unsolicited responses may go out (RFC 5465 §3)."""
        return self._state is _State.LINE and not self._lines

    @property
    def buffered(self) -> int:
        """Bytes received and not yet consumed (for backpressure)."""
        return len(self._buffer) - self._pos

    def accept_literal(self) -> None:
        """The adapter sent `+ Ready`: read the announced literal."""
        if self._state is not _State.AWAIT:
            raise ImapUsageError("no synchronizing literal is waiting")
        self._literal_bytes += self._literal_need
        self._state = _State.LITERAL

    def reject_literal(self) -> None:
        """The adapter answered the command instead: the client will not send the literal."""
        if self._state is not _State.AWAIT:
            raise ImapUsageError("no synchronizing literal is waiting")
        self._reset_command()
        self._state = _State.LINE

    def start_idle(self, tag: str) -> None:
        """IDLE was accepted: the next line must be DONE (RFC 2177)."""
        self._mode, self._mode_tag = _Mode.IDLE, tag

    def expect_authenticate_response(self, tag: str) -> None:
        """A SASL challenge was sent: the next line is the client's response."""
        self._mode, self._mode_tag = _Mode.AUTHENTICATE, tag

    def take_buffered(self) -> bytes:
        """Remove and return unparsed bytes: after STARTTLS they must be dropped (RFC 9051
        §6.2.1, no plaintext command injection); after COMPRESS they are compressed."""
        rest = bytes(self._buffer[self._pos :])
        self._buffer = bytearray()
        self._pos = self._scan = 0
        self._reset_command()
        self._state = _State.LINE
        return rest

    # -- framing --

    def _reset_command(self) -> None:
        self._lines = []
        self._literals = []
        self._line_bytes = 0
        self._literal_bytes = 0
        self._literal_need = 0
        self._literal = bytearray()

    def _consume(self, count: int) -> None:
        self._pos += count
        if self._pos >= len(self._buffer):
            self._buffer.clear()
            self._pos = 0
        elif self._pos > _COMPACT_AT and self._pos * 2 > len(self._buffer):
            del self._buffer[: self._pos]
            self._pos = 0
        self._scan = self._pos

    def _take_line(self) -> bytes | ParseError | None:
        end = self._buffer.find(b"\n", max(self._scan, self._pos))
        if end < 0:
            waiting = len(self._buffer) - self._pos
            if self._line_bytes + waiting > self.max_line:
                return self._refuse_long_line()
            self._scan = len(self._buffer)
            return None
        line = bytes(self._buffer[self._pos : end])
        self._consume(end + 1 - self._pos)
        if line.endswith(b"\r"):
            line = line[:-1]
        if self._line_bytes + len(line) > self.max_line:
            error = self._line_too_long(line[:200])
            self._skip_announced_literal(line[-_SKIP_TAIL:])
            return error
        return line

    def _line_too_long(self, start: bytes) -> ParseError:
        tag = self._mode_tag if self._mode is not _Mode.COMMAND else None
        if tag is None:
            tag = _guess_tag(self._lines[0] if self._lines else start)
        self._mode = _Mode.COMMAND
        self._reset_command()
        return ParseError(tag, f"line longer than {self.max_line} octets")

    def _refuse_long_line(self) -> ParseError:
        """Answer an overlong line now and discard it as it arrives, never buffering it."""
        waiting = bytes(self._buffer[self._pos : self._pos + 200])
        error = self._line_too_long(waiting)
        self._skip_tail = bytes(self._buffer[-_SKIP_TAIL:])
        self._consume(len(self._buffer) - self._pos)
        self._state = _State.SKIP_LINE
        return error

    def _discard_line(self) -> bool:
        end = self._buffer.find(b"\n", self._pos)
        if end < 0:
            self._skip_tail = (self._skip_tail + bytes(self._buffer[-_SKIP_TAIL:]))[-_SKIP_TAIL:]
            self._consume(len(self._buffer) - self._pos)
            return False
        tail = self._skip_tail + bytes(self._buffer[max(self._pos, end - _SKIP_TAIL) : end])
        self._consume(end + 1 - self._pos)
        self._skip_tail = b""
        self._state = _State.LINE
        self._skip_announced_literal(tail.rstrip(b"\r")[-_SKIP_TAIL:])
        return True

    def _skip_announced_literal(self, tail: bytes) -> None:
        """A discarded line that announced a non-synchronizing literal: discard that too."""
        found = _LITERAL_AT_END.search(tail)
        if found and found.group(3):
            self._skip_left = int(found.group(2))
            self._state = _State.SKIP_LITERAL

    def _discard_literal(self) -> bool:
        take = min(self._skip_left, len(self._buffer) - self._pos)
        self._consume(take)
        self._skip_left -= take
        if self._skip_left:
            return False
        self._state = _State.SKIP_LINE
        return True

    def _fill_literal(self) -> bool:
        take = min(self._literal_need, len(self._buffer) - self._pos)
        if take:
            self._literal += self._buffer[self._pos : self._pos + take]
            self._consume(take)
            self._literal_need -= take
        if self._literal_need:
            return False
        self._literals.append(bytes(self._literal))
        self._literal = bytearray()
        self._state = _State.LINE
        return True

    def _on_line(self, line: bytes) -> ParserEvent | None:
        if self._mode is _Mode.IDLE:
            self._mode = _Mode.COMMAND
            if line.upper() == b"DONE":
                return IdleDone(self._mode_tag)
            return ParseError(self._mode_tag, "expected DONE to end IDLE")
        if self._mode is _Mode.AUTHENTICATE:
            self._mode = _Mode.COMMAND
            return AuthenticateResponse(self._mode_tag, line)
        if not self._lines and not line:
            return None  # an empty line carries no command; ignoring it is harmless
        self._lines.append(line)
        self._line_bytes += len(line)
        marker = _literal_marker(line)
        if marker is None:
            return self._finish_command()
        return self._on_literal_announced(marker)

    def _finish_command(self) -> ParserEvent:
        event = parse_command(self._lines, self._literals, utf8_names=self.utf8_names)
        self._reset_command()
        return event

    def _on_literal_announced(self, marker: re.Match[bytes]) -> ParserEvent | None:
        digits, synchronizing = marker.group(2), not marker.group(3)
        size = int(digits) if len(digits) <= 20 else _MAX_NUMBER64 + 1
        tag = _guess_tag(self._lines[0])
        refusal = self._literal_refusal(size, synchronizing)
        if refusal is not None:
            self._reset_command()
            if not synchronizing:
                self._skip_left = size
                self._state = _State.SKIP_LITERAL
            return ParseError(tag, refusal, "TOOBIG")
        self._literal_need = size
        if not synchronizing:
            self._literal_bytes += size
            self._state = _State.LITERAL
            return None
        if self._line_bytes <= _PREVALIDATE_MAX:
            problem = _prevalidate(self._lines, self._literals, self.utf8_names)
            if problem is not None:
                self._reset_command()
                return problem
        self._state = _State.AWAIT
        return ContinuationNeeded(tag, size)

    def _literal_refusal(self, size: int, synchronizing: bool) -> str | None:
        """RFC 9051 §7.1 TOOBIG: refuse an oversized literal when it is announced."""
        if size > self.max_literal:
            return f"literal of {size} octets is larger than the limit of {self.max_literal}"
        if self._literal_bytes + size > self.max_command:
            return f"literals of this command exceed the limit of {self.max_command} octets"
        if not synchronizing and self.literal_minus and size > LITERAL_MINUS_MAX:
            return f"non-synchronizing literals are limited to {LITERAL_MINUS_MAX} octets"
        return None
