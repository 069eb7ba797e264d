"""IMAP output: server responses (RFC 9051 §7) and, for tests, bench/ and clients, commands.

Everything a session writes goes through here, so quoting, literals, modified UTF-7 and CRLF
are decided in one place. Values are written by `write_value`, which maps Python values to
IMAP syntax:

    None -> NIL            int -> number           str -> "quoted" or {n} literal (UTF-8)
    bytes -> {n} literal, or ~{n} literal8 when it holds NUL (RFC 3516)
    list/tuple -> (a b c)  Atom("\\Seen") -> \\Seen    Mailbox(name) -> encoded mailbox name
    datetime -> "17-Jul-1996 02:44:25 -0700"          SequenceSet -> 1:4,7
    StreamedLiteral(size, chunks) -> a literal whose bytes are produced while writing

FETCH responses are built one message at a time (`fetch`, or `iter_fetch` to stream a large
body from its blob file), so a session can answer `FETCH 1:*` over 100,000 messages with
memory bounded by one message.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from postbote.imap import commands as c
from postbote.imap.sequence import SequenceSet
from postbote.imap.utf7 import encode_mutf7

T = TypeVar("T")
CRLF = b"\r\n"
MAX_QUOTED = 1024  # longer strings go out as literals, which every client handles
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_QUOTABLE_ASCII = re.compile(r"[\x20-\x7e]*")
_QUOTABLE_UTF8 = re.compile(r"[^\x00-\x1f\x7f\ud800-\udfff]*")
_ASTRING = re.compile(r"[!#$&'+,\-./0-9:;<=>?@A-Z\[\]^_`a-z|}~]+")
_LIST_ATOM = re.compile(r"[!#$%&'*+,\-./0-9:;<=>?@A-Z\[\]^_`a-z|}~]+")
_TEXT_BREAKS = re.compile(r"[\r\n\x00]+")
_STATUSES = frozenset({"OK", "NO", "BAD", "BYE", "PREAUTH"})


# --- value types ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Atom:
    """Written as is, unquoted: flags, keywords, capability names."""

    value: str


@dataclass(frozen=True)
class Raw:
    """Bytes already in IMAP syntax."""

    data: bytes


@dataclass(frozen=True)
class Mailbox:
    """A mailbox name: modified UTF-7 unless the session has UTF-8 names (RFC 9051 §5.1)."""

    name: str


@dataclass(frozen=True, eq=False)
class StreamedLiteral:
    """A literal of known size whose bytes come from an iterable (a blob file, in chunks)."""

    size: int
    chunks: Iterable[bytes]
    binary: bool = False  # literal8 (~{n}) for BINARY[] content


@dataclass(frozen=True)
class ThreadNode:
    """A message in a THREAD response (RFC 5256); number None is a dummy parent."""

    number: int | None
    children: tuple[ThreadNode, ...] = ()


@dataclass(frozen=True)
class ResponseCode:
    """`[NAME args]` in a status response (RFC 9051 §7.1)."""

    name: str
    args: tuple[object, ...] = ()


def format_datetime(value: dt.datetime) -> str:
    """RFC 9051 date-time without the quotes; a naive value is taken as UTC."""
    offset = value.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return (
        f"{value.day:02d}-{_MONTHS[value.month - 1]}-{value.year:04d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d} {sign}{hours:02d}{mins:02d}"
    )


def format_date(value: dt.date) -> str:
    """RFC 9051 date-text, as SEARCH takes it: `1-Feb-1994`."""
    return f"{value.day}-{_MONTHS[value.month - 1]}-{value.year:04d}"


def mailbox_name(name: str, utf8: bool) -> str:
    """The wire spelling of a mailbox name."""
    return name if utf8 else encode_mutf7(name)


# --- the value writer ---------------------------------------------------------------------------


class _Writer:
    """Collects output; a StreamedLiteral becomes a boundary that `chunks()` streams through."""

    def __init__(self, utf8: bool) -> None:
        self.utf8 = utf8
        self._parts: list[bytes | StreamedLiteral] = []
        self._current = bytearray()

    def raw(self, data: bytes) -> None:
        self._current += data

    def text(self, text: str) -> None:
        self._current += text.encode("utf-8", "surrogateescape")

    def chunks(self) -> Iterator[bytes]:
        for part in self._parts:
            if isinstance(part, StreamedLiteral):
                yield from _stream(part)
            else:
                yield part
        if self._current:
            yield bytes(self._current)

    def getvalue(self) -> bytes:
        return b"".join(self.chunks())

    def literal(self, data: bytes, *, binary: bool = False) -> None:
        prefix = b"~" if binary or b"\x00" in data else b""
        self._current += b"%s{%d}\r\n" % (prefix, len(data))
        self._current += data

    def string(self, value: str) -> None:
        """RFC 9051 §4.3: a quoted string when it can be one, else a literal."""
        pattern = _QUOTABLE_UTF8 if self.utf8 else _QUOTABLE_ASCII
        if len(value) <= MAX_QUOTED and pattern.fullmatch(value):
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            self.raw(b'"' + escaped.encode("utf-8") + b'"')
        else:
            self.literal(value.encode("utf-8", "surrogateescape"))

    def astring(self, value: str) -> None:
        if _ASTRING.fullmatch(value):
            self.text(value)
        else:
            self.string(value)

    def streamed(self, value: StreamedLiteral) -> None:
        self._current += b"%s{%d}\r\n" % (b"~" if value.binary else b"", value.size)
        self._parts.append(bytes(self._current))
        self._parts.append(value)
        self._current = bytearray()

    def value(self, value: object) -> None:
        if value is None:
            self.raw(b"NIL")
        elif isinstance(value, bool):
            raise TypeError("IMAP has no boolean values")
        elif isinstance(value, int):
            self.raw(str(value).encode("ascii"))
        elif isinstance(value, str):
            self.string(value)
        elif isinstance(value, Atom):
            self.text(value.value)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            self.literal(bytes(value))
        elif isinstance(value, (list, tuple)):
            self.raw(b"(")
            for index, item in enumerate(value):
                if index:
                    self.raw(b" ")
                self.value(item)
            self.raw(b")")
        else:
            self.special(value)

    def special(self, value: object) -> None:
        if isinstance(value, Mailbox):
            self.string(mailbox_name(value.name, self.utf8))
        elif isinstance(value, dt.datetime):
            self.raw(b'"' + format_datetime(value).encode("ascii") + b'"')
        elif isinstance(value, SequenceSet):
            self.text(str(value))
        elif isinstance(value, Raw):
            self.raw(value.data)
        elif isinstance(value, StreamedLiteral):
            self.streamed(value)
        else:
            raise TypeError(f"cannot write {type(value).__name__} as an IMAP value")


def _stream(literal: StreamedLiteral) -> Iterator[bytes]:
    sent = 0
    for chunk in literal.chunks:
        sent += len(chunk)
        if sent > literal.size:
            raise ValueError("streamed literal is longer than announced")
        yield chunk
    if sent != literal.size:
        raise ValueError("streamed literal is shorter than announced")


def write_value(value: object, *, utf8: bool = False) -> bytes:
    """Nested Python values in IMAP syntax (see the module doc)."""
    writer = _Writer(utf8)
    writer.value(value)
    return writer.getvalue()


# --- response codes (RFC 9051 §7.1, RFC 5530, RFC 4315, RFC 7162) -----------------------------

READ_ONLY = ResponseCode("READ-ONLY")
READ_WRITE = ResponseCode("READ-WRITE")
TRYCREATE = ResponseCode("TRYCREATE")
ALERT = ResponseCode("ALERT")
PARSE = ResponseCode("PARSE")
NONEXISTENT = ResponseCode("NONEXISTENT")
ALREADYEXISTS = ResponseCode("ALREADYEXISTS")
AUTHENTICATIONFAILED = ResponseCode("AUTHENTICATIONFAILED")
AUTHORIZATIONFAILED = ResponseCode("AUTHORIZATIONFAILED")
EXPIRED = ResponseCode("EXPIRED")
PRIVACYREQUIRED = ResponseCode("PRIVACYREQUIRED")
CONTACTADMIN = ResponseCode("CONTACTADMIN")
TOOBIG = ResponseCode("TOOBIG")
LIMIT = ResponseCode("LIMIT")
OVERQUOTA = ResponseCode("OVERQUOTA")
CANNOT = ResponseCode("CANNOT")
NOPERM = ResponseCode("NOPERM")
INUSE = ResponseCode("INUSE")
SERVERBUG = ResponseCode("SERVERBUG")
CLIENTBUG = ResponseCode("CLIENTBUG")
UNAVAILABLE = ResponseCode("UNAVAILABLE")
CLOSED = ResponseCode("CLOSED")
EXPUNGEISSUED = ResponseCode("EXPUNGEISSUED")
CORRUPTION = ResponseCode("CORRUPTION")
NOTSAVED = ResponseCode("NOTSAVED")
HASCHILDREN = ResponseCode("HASCHILDREN")
NOMODSEQ = ResponseCode("NOMODSEQ")
UNKNOWN_CTE = ResponseCode("UNKNOWN-CTE")
UIDNOTSTICKY = ResponseCode("UIDNOTSTICKY")
COMPRESSIONACTIVE = ResponseCode("COMPRESSIONACTIVE")
USEATTR = ResponseCode("USEATTR")
NOTIFICATIONOVERFLOW = ResponseCode("NOTIFICATIONOVERFLOW")  # RFC 5465 §5.8


def _set(value: SequenceSet | int | Iterable[int]) -> SequenceSet:
    if isinstance(value, SequenceSet):
        return value
    if isinstance(value, int):
        return SequenceSet.of([value])
    return SequenceSet.of(value)


def code_uidvalidity(value: int) -> ResponseCode:
    return ResponseCode("UIDVALIDITY", (value,))


def code_uidnext(value: int) -> ResponseCode:
    return ResponseCode("UIDNEXT", (value,))


def code_unseen(number: int) -> ResponseCode:
    """RFC 3501 only: the first unseen message number."""
    return ResponseCode("UNSEEN", (number,))


def code_highestmodseq(value: int) -> ResponseCode:
    return ResponseCode("HIGHESTMODSEQ", (value,))


def code_permanentflags(flags: Iterable[str]) -> ResponseCode:
    return ResponseCode("PERMANENTFLAGS", (tuple(Atom(flag) for flag in flags),))


def code_capability(capabilities: Iterable[str]) -> ResponseCode:
    return ResponseCode("CAPABILITY", tuple(Atom(name) for name in capabilities))


def code_appenduid(uidvalidity: int, uids: SequenceSet | int | Iterable[int]) -> ResponseCode:
    """RFC 4315: APPENDUID uidvalidity uid-set (a set after MULTIAPPEND)."""
    return ResponseCode("APPENDUID", (uidvalidity, _set(uids)))


def code_copyuid(
    uidvalidity: int,
    source: SequenceSet | Iterable[int],
    destination: SequenceSet | Iterable[int],
) -> ResponseCode:
    """RFC 4315: COPYUID; the two sets pair up in order, so pass them in matching order."""
    return ResponseCode("COPYUID", (uidvalidity, _set(source), _set(destination)))


def code_modified(numbers: SequenceSet | Iterable[int]) -> ResponseCode:
    """RFC 7162: MODIFIED set, after a conditional STORE."""
    return ResponseCode("MODIFIED", (_set(numbers),))


def code_badcharset(charsets: Iterable[str] = ()) -> ResponseCode:
    names = tuple(Atom(name) for name in charsets)
    return ResponseCode("BADCHARSET", (names,) if names else ())


def code_mailboxid(object_id: str) -> ResponseCode:
    """RFC 8474."""
    return ResponseCode("MAILBOXID", ((Atom(object_id),),))


def code_badevent(events: Iterable[str]) -> ResponseCode:
    """RFC 5465 §3.1: `[BADEVENT (MessageNew ...)]` lists the events the server supports."""
    return ResponseCode("BADEVENT", (tuple(Atom(name) for name in events),))


def code_appendlimit(octets: int) -> ResponseCode:
    return ResponseCode("APPENDLIMIT", (octets,))


def _code(code: ResponseCode, utf8: bool) -> bytes:
    writer = _Writer(utf8)
    writer.raw(b"[" + code.name.encode("ascii"))
    for arg in code.args:
        writer.raw(b" ")
        writer.value(arg)
    writer.raw(b"]")
    return writer.getvalue()


def _text(text: str, fallback: str) -> bytes:
    """resp-text: one line; RFC 3501 requires it to be non-empty."""
    cleaned = _TEXT_BREAKS.sub(" ", text).strip() or fallback
    return cleaned.encode("utf-8", "surrogateescape")


def _status_line(
    prefix: bytes, status: str, text: str, code: ResponseCode | None, utf8: bool
) -> bytes:
    if status not in _STATUSES:
        raise ValueError(f"unknown status {status!r}")
    line = prefix + b" " + status.encode("ascii") + b" "
    if code is not None:
        line += _code(code, utf8) + b" "
    return line + _text(text, status.lower()) + CRLF


# --- status responses ---------------------------------------------------------------------------


def tagged(
    tag: str, status: str, text: str, code: ResponseCode | None = None, *, utf8: bool = False
) -> bytes:
    """`tag OK|NO|BAD [code] text`."""
    if status not in ("OK", "NO", "BAD"):
        raise ValueError(f"a tagged response is OK, NO or BAD, not {status!r}")
    return _status_line(tag.encode("ascii"), status, text, code, utf8)


def ok(tag: str, text: str = "completed", code: ResponseCode | None = None) -> bytes:
    return tagged(tag, "OK", text, code)


def no(tag: str, text: str, code: ResponseCode | None = None) -> bytes:
    return tagged(tag, "NO", text, code)


def bad(tag: str | None, text: str, code: ResponseCode | None = None) -> bytes:
    """`tag BAD`, or `* BAD` when the command's tag could not be read."""
    if tag is None:
        return untagged("BAD", text, code)
    return tagged(tag, "BAD", text, code)


def untagged(
    status: str, text: str, code: ResponseCode | None = None, *, utf8: bool = False
) -> bytes:
    """`* OK|NO|BAD|BYE|PREAUTH [code] text`."""
    return _status_line(b"*", status, text, code, utf8)


def greeting(
    text: str, *, capabilities: Iterable[str] | None = None, preauth: bool = False
) -> bytes:
    """RFC 9051 §7.1.1/§7.1.4: `* OK [CAPABILITY ...] text` or `* PREAUTH ...`."""
    code = code_capability(capabilities) if capabilities is not None else None
    return untagged("PREAUTH" if preauth else "OK", text, code)


def bye(text: str, code: ResponseCode | None = None) -> bytes:
    return untagged("BYE", text, code)


def continuation(text: str = "Ready") -> bytes:
    """`+ text`: go on sending the literal, or IDLE has started."""
    return b"+ " + _text(text, "Ready") + CRLF


def continuation_data(data: bytes) -> bytes:
    """`+ base64` (a SASL challenge; empty data gives `+ `)."""
    return b"+ " + base64.b64encode(data) + CRLF


# --- untagged data ------------------------------------------------------------------------------


def _untagged_data(*values: object, utf8: bool = False) -> bytes:
    writer = _Writer(utf8)
    writer.raw(b"*")
    for value in values:
        writer.raw(b" ")
        writer.value(value)
    writer.raw(CRLF)
    return writer.getvalue()


def capability(capabilities: Iterable[str]) -> bytes:
    return _untagged_data(Atom("CAPABILITY"), *(Atom(name) for name in capabilities))


def enabled(capabilities: Iterable[str]) -> bytes:
    """RFC 5161; with nothing newly enabled it is a bare `* ENABLED`."""
    return _untagged_data(Atom("ENABLED"), *(Atom(name) for name in capabilities))


def flags(flag_names: Iterable[str]) -> bytes:
    return _untagged_data(Atom("FLAGS"), tuple(Atom(flag) for flag in flag_names))


def exists(count: int) -> bytes:
    return b"* %d EXISTS\r\n" % count


def recent(count: int) -> bytes:
    return b"* %d RECENT\r\n" % count


def expunge(number: int) -> bytes:
    return b"* %d EXPUNGE\r\n" % number


def vanished(uids: SequenceSet | Iterable[int], *, earlier: bool = False) -> bytes:
    """RFC 7162 §3.2.10: `* VANISHED [(EARLIER)] uid-set`."""
    head = b"* VANISHED (EARLIER) " if earlier else b"* VANISHED "
    return head + str(_set(uids)).encode("ascii") + CRLF


def list_response(
    name: str,
    delimiter: str | None,
    attributes: Iterable[str] = (),
    *,
    utf8: bool = False,
    childinfo: Sequence[str] = (),
    oldname: str | None = None,
    command: str = "LIST",
) -> bytes:
    """`* LIST (\\HasNoChildren) "/" "name" [("CHILDINFO" ("SUBSCRIBED") "OLDNAME" ("old"))]`.

    RFC 5258 CHILDINFO and RFC 9051 §7.3.1 OLDNAME are the extended data items.
    """
    extended: list[object] = []
    if childinfo:
        extended += ["CHILDINFO", tuple(childinfo)]
    if oldname is not None:
        extended += ["OLDNAME", (Mailbox(oldname),)]
    values: list[object] = [
        Atom(command),
        tuple(Atom(attribute) for attribute in attributes),
        delimiter,
        Mailbox(name),
    ]
    if extended:
        values.append(tuple(extended))
    return _untagged_data(*values, utf8=utf8)


def lsub_response(
    name: str, delimiter: str | None, attributes: Iterable[str] = (), *, utf8: bool = False
) -> bytes:
    return list_response(name, delimiter, attributes, utf8=utf8, command="LSUB")


def status(mailbox: str, items: Iterable[tuple[str, int]], *, utf8: bool = False) -> bytes:
    """`* STATUS "name" (MESSAGES 231 UIDNEXT 44292)`."""
    flat: list[object] = []
    for name, value in items:
        flat += [Atom(name), value]
    return _untagged_data(Atom("STATUS"), Mailbox(mailbox), tuple(flat), utf8=utf8)


def search(numbers: Iterable[int], *, modseq: int | None = None) -> bytes:
    """`* SEARCH 2 84 882` (RFC 7162 §3.1.5 adds `(MODSEQ n)` when something matched)."""
    text = " ".join(str(number) for number in numbers)
    line = b"* SEARCH"
    if text:
        line += b" " + text.encode("ascii")
        if modseq is not None:
            line += b" (MODSEQ %d)" % modseq
    return line + CRLF


def sort(numbers: Iterable[int], *, modseq: int | None = None) -> bytes:
    """`* SORT 2 84 882` (RFC 5256)."""
    return b"* SORT" + search(numbers, modseq=modseq)[len(b"* SEARCH") :]


def esearch(
    tag: str | None,
    *,
    uid: bool = False,
    min: int | None = None,
    max: int | None = None,
    count: int | None = None,
    all: SequenceSet | Iterable[int] | None = None,
    modseq: int | None = None,
) -> bytes:
    """RFC 4731: `* ESEARCH (TAG "A1") UID MIN 2 MAX 9 COUNT 5 ALL 2:4,9`."""
    writer = _Writer(False)
    writer.raw(b"* ESEARCH")
    if tag is not None:
        writer.raw(b' (TAG "' + tag.encode("ascii") + b'")')
    if uid:
        writer.raw(b" UID")
    results: list[tuple[bytes, object]] = [(b"MIN", min), (b"MAX", max), (b"COUNT", count)]
    if all is not None:
        numbers = _set(all)
        results.append((b"ALL", numbers if numbers else None))
    results.append((b"MODSEQ", modseq))
    for name, value in results:
        if value is not None:
            writer.raw(b" " + name + b" ")
            writer.value(value)
    writer.raw(CRLF)
    return writer.getvalue()


def _thread_text(root: ThreadNode, out: list[str]) -> None:
    """One thread: members in a chain while each has one reply, a group per branch.

    Iterative, because a reply chain on a busy list can be thousands of messages deep.
    """
    stack: list[ThreadNode | str] = [")", root, "("]  # popped from the end
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        node = item
        while True:
            if node.number is not None:
                out.append(str(node.number))
                if node.children:
                    out.append(" ")
            if len(node.children) != 1:
                break
            node = node.children[0]
        for child in reversed(node.children):
            stack += [")", child, "("]


def thread(threads: Iterable[ThreadNode]) -> bytes:
    """RFC 5256: `* THREAD (2)(3 6 (4 23)(44 7 96))`."""
    out: list[str] = []
    for root in threads:
        _thread_text(root, out)
    body = "".join(out)
    return b"* THREAD" + (b" " + body.encode("ascii") if body else b"") + CRLF


def _fetch_value(name: str, value: object) -> object:
    """Conventions by item name, so callers pass plain values (flags as str, MODSEQ as int)."""
    upper = name.upper()
    if upper == "FLAGS" and isinstance(value, (list, tuple, set, frozenset)):
        return tuple(Atom(flag) for flag in value)
    if upper == "MODSEQ" and isinstance(value, int):
        return (value,)  # RFC 7162: MODSEQ (n)
    if upper in ("EMAILID", "THREADID") and isinstance(value, str):
        return (Atom(value),)  # RFC 8474
    return value


def iter_fetch(
    seq: int, items: Iterable[tuple[str, object]], *, utf8: bool = False
) -> Iterator[bytes]:
    """`* seq FETCH (name value ...)` in chunks; StreamedLiteral bodies are streamed."""
    writer = _Writer(utf8)
    writer.raw(b"* %d FETCH (" % seq)
    for index, (name, value) in enumerate(items):
        if index:
            writer.raw(b" ")
        writer.raw(name.encode("ascii") + b" ")
        writer.value(_fetch_value(name, value))
    writer.raw(b")" + CRLF)
    return writer.chunks()


def fetch(seq: int, items: Iterable[tuple[str, object]], *, utf8: bool = False) -> bytes:
    """One message's FETCH response; item names come from `FetchItem.response_name()`."""
    return b"".join(iter_fetch(seq, items, utf8=utf8))


def namespace(
    personal: Sequence[tuple[str, str | None]] | None,
    other: Sequence[tuple[str, str | None]] | None = None,
    shared: Sequence[tuple[str, str | None]] | None = None,
    *,
    utf8: bool = False,
) -> bytes:
    """RFC 2342: `* NAMESPACE (("" "/")) NIL NIL`."""

    def group(entries: Sequence[tuple[str, str | None]] | None) -> object:
        if not entries:
            return None
        return tuple((Mailbox(prefix), delimiter) for prefix, delimiter in entries)

    return _untagged_data(
        Atom("NAMESPACE"), group(personal), group(other), group(shared), utf8=utf8
    )


def id_response(params: Mapping[str, str | None] | None) -> bytes:
    """RFC 2971: `* ID ("name" "postbote")` or `* ID NIL`."""
    if params is None:
        return _untagged_data(Atom("ID"), None)
    flat: list[object] = []
    for field, value in params.items():
        flat += [field, value]
    return _untagged_data(Atom("ID"), tuple(flat))


def quota(root: str, resources: Iterable[tuple[str, int, int]]) -> bytes:
    """RFC 9208: `* QUOTA "" (STORAGE 10 512)` (usage then limit)."""
    flat: list[object] = []
    for name, usage, limit in resources:
        flat += [Atom(name), usage, limit]
    return _untagged_data(Atom("QUOTA"), root, tuple(flat))


def quotaroot(mailbox: str, roots: Iterable[str], *, utf8: bool = False) -> bytes:
    """RFC 9208: `* QUOTAROOT "INBOX" ""`."""
    return _untagged_data(Atom("QUOTAROOT"), Mailbox(mailbox), *roots, utf8=utf8)


def metadata(
    mailbox: str, entries: Iterable[tuple[str, bytes | str | None]], *, utf8: bool = False
) -> bytes:
    """RFC 5464: `* METADATA "INBOX" (/private/comment "text")`."""
    writer = _Writer(utf8)
    writer.raw(b"* METADATA ")
    writer.value(Mailbox(mailbox))
    writer.raw(b" (")
    for index, (name, value) in enumerate(entries):
        if index:
            writer.raw(b" ")
        writer.astring(name)
        writer.raw(b" ")
        writer.value(value)
    writer.raw(b")" + CRLF)
    return writer.getvalue()


# --- the client side: commands to bytes ----------------------------------------------------------


class _CommandWriter(_Writer):
    """Writes commands as a client would; literals are synchronizing unless literal_plus."""

    def __init__(self, utf8_names: bool, literal_plus: bool) -> None:
        super().__init__(utf8_names)
        self.literal_plus = literal_plus
        self.charset: str | None = None

    def literal(self, data: bytes, *, binary: bool = False) -> None:
        prefix = b"~" if binary else b""
        plus = b"+" if self.literal_plus else b""
        self._current += b"%s{%d%s}\r\n" % (prefix, len(data), plus)
        self._current += data

    def string(self, value: str) -> None:
        # Clients stay with ASCII in quoted strings: older servers reject 8-bit there.
        if len(value) <= MAX_QUOTED and _QUOTABLE_ASCII.fullmatch(value):
            self.raw(b'"' + value.replace("\\", "\\\\").replace('"', '\\"').encode("ascii") + b'"')
        else:
            self.literal(value.encode("utf-8", "surrogateescape"))

    def bytes_string(self, data: bytes) -> None:
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            text = None
        if text is not None and len(text) <= MAX_QUOTED and _QUOTABLE_ASCII.fullmatch(text):
            self.string(text)
        else:
            self.literal(data, binary=b"\x00" in data)

    def charset_string(self, value: str) -> None:
        """A search string, encoded in the command's CHARSET."""
        if self.charset in (None, "UTF-8", "US-ASCII"):
            self.astring(value)
            return
        data = value.encode(self.charset, "replace")
        if _ASTRING.fullmatch(value) and data.isascii():
            self.text(value)
        else:
            self.literal(data)

    def mailbox(self, name: str) -> None:
        self.astring(mailbox_name(name, self.utf8))

    def list_mailbox(self, name: str) -> None:
        encoded = mailbox_name(name, self.utf8)
        if _LIST_ATOM.fullmatch(encoded):
            self.text(encoded)
        else:
            self.string(encoded)

    def words(self, *words: str) -> None:
        self.text(" ".join(words))

    def sp(self) -> None:
        self.raw(b" ")

    def parens(self, items: Iterable[T], write: Callable[[T], None]) -> None:
        self.raw(b"(")
        for index, item in enumerate(items):
            if index:
                self.raw(b" ")
            write(item)
        self.raw(b")")


def _search_key(w: _CommandWriter, key: c.SearchKey) -> None:
    match key:
        case c.SearchFlagKey(name=name):
            w.text(name)
        case c.SearchText(field=field, value=value):
            w.text(field + " ")
            w.charset_string(value)
        case c.SearchHeader(name=name, value=value):
            w.text("HEADER ")
            w.astring(name)
            w.sp()
            w.charset_string(value)
        case c.SearchKeyword(keyword=keyword, present=present):
            w.text(("KEYWORD " if present else "UNKEYWORD ") + keyword)
        case c.SearchDate(key=name, date=day):
            w.text(f"{name} {format_date(day)}")
        case c.SearchSize(key=name, size=size):
            w.text(f"{name} {size}")
        case c.SearchWithin(key=name, seconds=seconds):
            w.text(f"{name} {seconds}")
        case c.SearchObjectId(key=name, object_id=object_id):
            w.text(f"{name} {object_id}")
        case c.SearchModSeq(modseq=modseq, entry_name=entry_name, entry_type=entry_type):
            w.text("MODSEQ ")
            if entry_name is not None:
                w.string(entry_name)
                w.text(f" {(entry_type or 'ALL').lower()} ")
            w.text(str(modseq))
        case c.SearchSequence(sequence=sequence):
            w.text(str(sequence))
        case c.SearchUid(sequence=sequence):
            w.text(f"UID {sequence}")
        case c.SearchNot(key=inner):
            w.text("NOT ")
            _search_key(w, inner)
        case c.SearchOr(left=left, right=right):
            w.text("OR ")
            _search_key(w, left)
            w.sp()
            _search_key(w, right)
        case c.SearchAnd(keys=keys):
            w.parens(keys, lambda inner: _search_key(w, inner))
        case _:
            raise TypeError(f"not a search key: {key!r}")


def _search_keys(w: _CommandWriter, keys: Sequence[c.SearchKey]) -> None:
    for index, key in enumerate(keys):
        if index:
            w.sp()
        _search_key(w, key)


def _partial(partial: c.Partial | None) -> str:
    return f"<{partial.offset}.{partial.length}>" if partial else ""


def fetch_item_text(item: c.FetchItem) -> str:
    """A fetch attribute as a client writes it."""
    match item:
        case c.FetchAtt(name=name):
            return name
        case c.FetchBody(section=section, partial=partial, peek=peek):
            return ("BODY.PEEK[" if peek else "BODY[") + section.spec() + "]" + _partial(partial)
        case c.FetchBinary(part=part, partial=partial, peek=peek):
            opening = "BINARY.PEEK[" if peek else "BINARY["
            return opening + ".".join(map(str, part)) + "]" + _partial(partial)
        case c.FetchBinarySize(part=part):
            return "BINARY.SIZE[" + ".".join(map(str, part)) + "]"
        case c.FetchPreview(lazy=lazy):
            return "PREVIEW (LAZY)" if lazy else "PREVIEW"
    raise TypeError(f"not a fetch item: {item!r}")


def _prefix(w: _CommandWriter, command: object) -> None:
    w.text(command.tag + " ")  # type: ignore[attr-defined]
    if getattr(command, "uid", False):
        w.text("UID ")


def _write_select(w: _CommandWriter, cmd: c.Select | c.Examine) -> None:
    w.text("SELECT " if isinstance(cmd, c.Select) else "EXAMINE ")
    w.mailbox(cmd.mailbox)
    params: list[str] = ["CONDSTORE"] if cmd.condstore else []
    if cmd.qresync is not None:
        q = cmd.qresync
        text = f"QRESYNC ({q.uidvalidity} {q.modseq}"
        if q.known_uids is not None:
            text += f" {q.known_uids}"
        if q.known_sequence_set is not None and q.known_uid_set is not None:
            text += f" ({q.known_sequence_set} {q.known_uid_set})"
        params.append(text + ")")
    if params:
        w.text(" (" + " ".join(params) + ")")


def _write_list(w: _CommandWriter, cmd: c.List) -> None:
    w.text("LIST ")
    if cmd.selection_options:
        w.text("(" + " ".join(cmd.selection_options) + ") ")
    w.mailbox(cmd.reference)
    w.sp()
    if len(cmd.patterns) == 1:
        w.list_mailbox(cmd.patterns[0])
    else:
        w.parens(cmd.patterns, w.list_mailbox)
    returns = list(cmd.return_options)
    if cmd.status_items is not None:
        returns.append("STATUS (" + " ".join(cmd.status_items) + ")")
    if returns or cmd.status_items is not None:
        w.text(" RETURN (" + " ".join(returns) + ")")


def _write_append(w: _CommandWriter, cmd: c.Append) -> None:
    w.text("APPEND ")
    w.mailbox(cmd.mailbox)
    for message in cmd.messages:
        if message.flags:
            w.text(" (" + " ".join(message.flags) + ")")
        if message.date is not None:
            w.text(f' "{format_datetime(message.date)}"')
        w.sp()
        if message.utf8:
            w.text("UTF8 (")
            w.literal(message.data, binary=True)
            w.text(")")
        else:
            w.literal(message.data, binary=message.binary)


def _write_search(w: _CommandWriter, cmd: c.Search) -> None:
    w.text("SEARCH ")
    if cmd.return_options is not None:
        w.text("RETURN (" + " ".join(cmd.return_options) + ") ")
    if cmd.charset is not None:
        w.text("CHARSET ")
        w.astring(cmd.charset)
        w.sp()
    w.charset = cmd.charset
    _search_keys(w, cmd.criteria)


def _write_fetch(w: _CommandWriter, cmd: c.Fetch) -> None:
    w.text(f"FETCH {cmd.sequence} (" + " ".join(map(fetch_item_text, cmd.items)) + ")")
    modifiers = []
    if cmd.changedsince is not None:
        modifiers.append(f"CHANGEDSINCE {cmd.changedsince}")
    if cmd.vanished:
        modifiers.append("VANISHED")
    if modifiers:
        w.text(" (" + " ".join(modifiers) + ")")


def _write_store(w: _CommandWriter, cmd: c.Store) -> None:
    w.text(f"STORE {cmd.sequence} ")
    if cmd.unchangedsince is not None:
        w.text(f"(UNCHANGEDSINCE {cmd.unchangedsince}) ")
    w.text(f"{cmd.mode}FLAGS{'.SILENT' if cmd.silent else ''} (" + " ".join(cmd.flags) + ")")


def _write_sort(w: _CommandWriter, cmd: c.Sort) -> None:
    w.text("SORT ")
    if cmd.return_options is not None:
        w.text("RETURN (" + " ".join(cmd.return_options) + ") ")
    criteria = [("REVERSE " if item.reverse else "") + item.key for item in cmd.criteria]
    w.text("(" + " ".join(criteria) + ") ")
    w.astring(cmd.charset)
    w.sp()
    w.charset = cmd.charset
    _search_keys(w, cmd.search)


def _write_thread(w: _CommandWriter, cmd: c.Thread) -> None:
    w.text(f"THREAD {cmd.algorithm} ")
    w.astring(cmd.charset)
    w.sp()
    w.charset = cmd.charset
    _search_keys(w, cmd.search)


def _write_id(w: _CommandWriter, cmd: c.Id) -> None:
    w.text("ID ")
    if cmd.params is None:
        w.text("NIL")
        return
    w.raw(b"(")
    for index, (field, value) in enumerate(cmd.params):
        if index:
            w.sp()
        w.string(field)
        w.sp()
        if value is None:
            w.text("NIL")
        else:
            w.string(value)
    w.raw(b")")


def _write_getmetadata(w: _CommandWriter, cmd: c.GetMetadata) -> None:
    w.text("GETMETADATA ")
    options = []
    if cmd.maxsize is not None:
        options.append(f"MAXSIZE {cmd.maxsize}")
    if cmd.depth is not None:
        options.append(f"DEPTH {cmd.depth}")
    if options:
        w.text("(" + " ".join(options) + ") ")
    w.mailbox(cmd.mailbox)
    w.sp()
    w.parens(cmd.entries, w.astring)


def _write_setmetadata(w: _CommandWriter, cmd: c.SetMetadata) -> None:
    w.text("SETMETADATA ")
    w.mailbox(cmd.mailbox)
    w.text(" (")
    for index, (name, value) in enumerate(cmd.entries):
        if index:
            w.sp()
        w.astring(name)
        w.sp()
        if value is None:
            w.text("NIL")
        else:
            w.bytes_string(value)
    w.text(")")


def _write_notify(w: _CommandWriter, cmd: c.Notify) -> None:
    if not cmd.groups:
        w.text("NOTIFY NONE")
        return
    w.text("NOTIFY SET STATUS" if cmd.status else "NOTIFY SET")
    for group in cmd.groups:
        w.text(" (" + group.filter.lower())
        if group.filter in ("SUBTREE", "MAILBOXES"):
            w.sp()
            if len(group.mailboxes) == 1:
                w.mailbox(group.mailboxes[0])
            else:
                w.parens(group.mailboxes, w.mailbox)
        w.sp()
        if group.events:
            w.parens(group.events, lambda event: w.text(_notify_event_text(event)))
        else:
            w.text("NONE")
        w.text(")")


def _notify_event_text(event: c.NotifyEvent) -> str:
    if not event.fetch_atts:
        return event.name
    return event.name + " (" + " ".join(fetch_item_text(i) for i in event.fetch_atts) + ")"


def _write_simple(w: _CommandWriter, cmd: c.Command) -> bool:
    """Commands that are a name, or a name and mailboxes/strings; False if not one of them."""
    match cmd:
        case c.Capability() | c.Noop() | c.Logout() | c.StartTls() | c.Namespace() | c.Idle():
            w.text(_SIMPLE_NAMES[type(cmd)])
        case c.Check() | c.Close() | c.Unselect() | c.Expunge() | c.Unauthenticate():
            w.text(_SIMPLE_NAMES[type(cmd)])
        case c.Delete() | c.Subscribe() | c.Unsubscribe() | c.GetQuotaRoot():
            w.text(_SIMPLE_NAMES[type(cmd)] + " ")
            w.mailbox(cmd.mailbox)
        case c.Rename(mailbox=old, new_name=new):
            w.text("RENAME ")
            w.mailbox(old)
            w.sp()
            w.mailbox(new)
        case c.Login(user=user, password=password):
            w.text("LOGIN ")
            w.astring(user)
            w.sp()
            w.astring(password)
        case c.Authenticate(mechanism=mechanism, initial_response=initial):
            w.text("AUTHENTICATE " + mechanism)
            if initial is not None:
                w.text(" " + (initial or "="))
        case c.Enable(capabilities=names):
            w.words("ENABLE", *names)
        case c.UidExpunge(sequence=sequence):
            w.text(f"UID EXPUNGE {sequence}")
        case c.Copy(sequence=sequence, mailbox=mailbox) | c.Move(
            sequence=sequence, mailbox=mailbox
        ):
            w.text(f"{'COPY' if isinstance(cmd, c.Copy) else 'MOVE'} {sequence} ")
            w.mailbox(mailbox)
        case _:
            return False
    return True


def _write_other(w: _CommandWriter, cmd: c.Command) -> None:
    match cmd:
        case c.Create(mailbox=mailbox, special_use=uses):
            w.text("CREATE ")
            w.mailbox(mailbox)
            if uses:
                w.text(" (USE (" + " ".join(uses) + "))")
        case c.Lsub(reference=reference, pattern=pattern):
            w.text("LSUB ")
            w.mailbox(reference)
            w.sp()
            w.list_mailbox(pattern)
        case c.Status(mailbox=mailbox, items=items):
            w.text("STATUS ")
            w.mailbox(mailbox)
            w.text(" (" + " ".join(items) + ")")
        case c.GetQuota(root=root):
            w.text("GETQUOTA ")
            w.astring(root)
        case c.SetQuota(root=root, limits=limits):
            w.text("SETQUOTA ")
            w.astring(root)
            w.text(" (" + " ".join(f"{name} {limit}" for name, limit in limits) + ")")
        case c.Compress(mechanism=mechanism):
            w.text("COMPRESS " + mechanism)
        case _:
            writer = _COMMAND_WRITERS.get(type(cmd))
            if writer is None:
                raise TypeError(f"not an IMAP command: {cmd!r}")
            writer(w, cmd)


_SIMPLE_NAMES: dict[type, str] = {
    c.Capability: "CAPABILITY",
    c.Noop: "NOOP",
    c.Logout: "LOGOUT",
    c.StartTls: "STARTTLS",
    c.Namespace: "NAMESPACE",
    c.Idle: "IDLE",
    c.Check: "CHECK",
    c.Close: "CLOSE",
    c.Unselect: "UNSELECT",
    c.Expunge: "EXPUNGE",
    c.Unauthenticate: "UNAUTHENTICATE",
    c.Delete: "DELETE",
    c.Subscribe: "SUBSCRIBE",
    c.Unsubscribe: "UNSUBSCRIBE",
    c.GetQuotaRoot: "GETQUOTAROOT",
}

_COMMAND_WRITERS: dict[type, Callable[..., None]] = {
    c.Select: _write_select,
    c.Examine: _write_select,
    c.List: _write_list,
    c.Append: _write_append,
    c.Search: _write_search,
    c.Fetch: _write_fetch,
    c.Store: _write_store,
    c.Sort: _write_sort,
    c.Thread: _write_thread,
    c.Id: _write_id,
    c.GetMetadata: _write_getmetadata,
    c.SetMetadata: _write_setmetadata,
    c.Notify: _write_notify,
}


def encode_command(
    command: c.Command, *, utf8_names: bool = False, literal_plus: bool = False
) -> bytes:
    """A command as a client sends it, CRLF included.

    Literals are synchronizing ({n}) unless literal_plus; a client must then wait for "+"
    before sending each literal's bytes, which are included here in one piece.
    """
    writer = _CommandWriter(utf8_names, literal_plus)
    if isinstance(command, c.UidExpunge):
        writer.text(command.tag + " ")
    else:
        _prefix(writer, command)
    if not _write_simple(writer, command):
        _write_other(writer, command)
    writer.raw(CRLF)
    return writer.getvalue()
