"""The IMAP commands a client can send, as frozen values (RFC 9051 §6 and its extensions).

The parser in `grammar.py` produces these and the client-side encoder in `encode.py` writes
them, so a command has exactly one representation in the program: mailbox names are already
decoded to Unicode (INBOX in capitals), keywords the server compares case-insensitively are in
capitals, system flags have their canonical spelling, and dates are `datetime` values.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal, Union

from postbote.imap.sequence import SequenceSet

# RFC 9051 §2.3.2: system flags are case-insensitive; these are their canonical spellings.
SYSTEM_FLAGS = {
    flag.upper(): flag
    for flag in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")
}
_ATOM = re.compile(r"[!#$&'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]+")


def canonical_flag(flag: str) -> str:
    """The spelling a flag is stored and reported under."""
    return SYSTEM_FLAGS.get(flag.upper(), flag)


def _astring_text(value: str) -> str:
    """An astring for a response item name: atom when possible, else a quoted string."""
    if _ATOM.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- values that appear inside commands -------------------------------------------------


@dataclass(frozen=True)
class Partial:
    """`<offset.length>` of BODY[]/BINARY[] (RFC 9051 §6.4.5)."""

    offset: int
    length: int


SectionText = Literal["HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"]


@dataclass(frozen=True)
class Section:
    """A BODY[section]: the part path, then HEADER/HEADER.FIELDS[.NOT]/TEXT/MIME or nothing."""

    part: tuple[int, ...] = ()
    text: SectionText | None = None
    fields: tuple[str, ...] = ()  # for HEADER.FIELDS and HEADER.FIELDS.NOT, as sent

    def spec(self) -> str:
        """The section as written inside the brackets, e.g. `1.2.HEADER.FIELDS (From To)`."""
        pieces = [str(n) for n in self.part]
        if self.text:
            pieces.append(self.text)
        spec = ".".join(pieces)
        if self.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            spec += " (" + " ".join(_astring_text(name) for name in self.fields) + ")"
        return spec


SimpleFetchName = Literal[
    "ENVELOPE",
    "FLAGS",
    "INTERNALDATE",
    "RFC822",
    "RFC822.HEADER",
    "RFC822.SIZE",
    "RFC822.TEXT",
    "BODY",
    "BODYSTRUCTURE",
    "UID",
    "MODSEQ",
    "SAVEDATE",
    "EMAILID",
    "THREADID",
]


@dataclass(frozen=True)
class FetchAtt:
    """A fetch attribute without arguments (ENVELOPE, FLAGS, RFC822.SIZE, BODY, MODSEQ, ...)."""

    name: SimpleFetchName

    def response_name(self) -> str:
        return self.name


@dataclass(frozen=True)
class FetchBody:
    """BODY[section]<partial> or BODY.PEEK[...] (which does not set \\Seen)."""

    section: Section = Section()
    partial: Partial | None = None
    peek: bool = False

    def response_name(self) -> str:
        """RFC 9051 §7.5.2: the reply names BODY[...] (never .PEEK) and only the origin."""
        origin = f"<{self.partial.offset}>" if self.partial else ""
        return f"BODY[{self.section.spec()}]{origin}"


@dataclass(frozen=True)
class FetchBinary:
    """BINARY[part]<partial> or BINARY.PEEK[...] (RFC 3516): content transfer decoding done."""

    part: tuple[int, ...] = ()
    partial: Partial | None = None
    peek: bool = False

    def response_name(self) -> str:
        origin = f"<{self.partial.offset}>" if self.partial else ""
        return "BINARY[" + ".".join(map(str, self.part)) + "]" + origin


@dataclass(frozen=True)
class FetchBinarySize:
    """BINARY.SIZE[part] (RFC 3516)."""

    part: tuple[int, ...] = ()

    def response_name(self) -> str:
        return "BINARY.SIZE[" + ".".join(map(str, self.part)) + "]"


@dataclass(frozen=True)
class FetchPreview:
    """PREVIEW, optionally (LAZY) (RFC 8970)."""

    lazy: bool = False

    def response_name(self) -> str:
        return "PREVIEW"


FetchItem = Union[FetchAtt, FetchBody, FetchBinary, FetchBinarySize, FetchPreview]

# RFC 9051 §6.4.5: the FETCH macros, expanded by the parser.
FETCH_MACROS: dict[str, tuple[FetchItem, ...]] = {
    "FAST": (FetchAtt("FLAGS"), FetchAtt("INTERNALDATE"), FetchAtt("RFC822.SIZE")),
    "ALL": (
        FetchAtt("FLAGS"),
        FetchAtt("INTERNALDATE"),
        FetchAtt("RFC822.SIZE"),
        FetchAtt("ENVELOPE"),
    ),
    "FULL": (
        FetchAtt("FLAGS"),
        FetchAtt("INTERNALDATE"),
        FetchAtt("RFC822.SIZE"),
        FetchAtt("ENVELOPE"),
        FetchAtt("BODY"),
    ),
}

# --- search keys (RFC 9051 §6.4.4, RFC 3501 §6.4.4, RFC 7162, RFC 5032, RFC 8514, RFC 8474) ---

FLAG_SEARCH_KEYS = frozenset(
    "ALL ANSWERED DELETED DRAFT FLAGGED NEW OLD RECENT SEEN UNANSWERED UNDELETED UNDRAFT "
    "UNFLAGGED UNSEEN SAVEDATESUPPORTED".split()
)
TEXT_SEARCH_KEYS = frozenset({"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"})
DATE_SEARCH_KEYS = frozenset(
    "BEFORE ON SINCE SENTBEFORE SENTON SENTSINCE SAVEDBEFORE SAVEDON SAVEDSINCE".split()
)


@dataclass(frozen=True)
class SearchFlagKey:
    """A key without argument: ALL, SEEN, UNSEEN, NEW, ... (name in capitals)."""

    name: str


@dataclass(frozen=True)
class SearchText:
    """BCC/BODY/CC/FROM/SUBJECT/TEXT/TO string: a case-insensitive substring match."""

    field: str
    value: str


@dataclass(frozen=True)
class SearchHeader:
    """HEADER field-name string."""

    name: str
    value: str


@dataclass(frozen=True)
class SearchKeyword:
    """KEYWORD flag (present=True) or UNKEYWORD flag."""

    keyword: str
    present: bool = True


@dataclass(frozen=True)
class SearchDate:
    """BEFORE/ON/SINCE (internal date), SENT* (Date: header), SAVED* (RFC 8514 save date)."""

    key: str
    date: dt.date


@dataclass(frozen=True)
class SearchSize:
    """LARGER n or SMALLER n (RFC822.SIZE)."""

    key: Literal["LARGER", "SMALLER"]
    size: int


@dataclass(frozen=True)
class SearchWithin:
    """OLDER n or YOUNGER n seconds (RFC 5032)."""

    key: Literal["OLDER", "YOUNGER"]
    seconds: int


@dataclass(frozen=True)
class SearchObjectId:
    """EMAILID id or THREADID id (RFC 8474)."""

    key: Literal["EMAILID", "THREADID"]
    object_id: str


@dataclass(frozen=True)
class SearchModSeq:
    """MODSEQ ["/flags/\\Seen" priv|shared|all] n (RFC 7162 §3.1.5)."""

    modseq: int
    entry_name: str | None = None
    entry_type: Literal["PRIV", "SHARED", "ALL"] | None = None


@dataclass(frozen=True)
class SearchSequence:
    """A bare sequence set: message numbers (or `$`)."""

    sequence: SequenceSet


@dataclass(frozen=True)
class SearchUid:
    """UID sequence-set."""

    sequence: SequenceSet


@dataclass(frozen=True)
class SearchNot:
    key: SearchKey


@dataclass(frozen=True)
class SearchOr:
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True)
class SearchAnd:
    """A parenthesised list of keys: all must match."""

    keys: tuple[SearchKey, ...]


SearchKey = Union[
    SearchFlagKey,
    SearchText,
    SearchHeader,
    SearchKeyword,
    SearchDate,
    SearchSize,
    SearchWithin,
    SearchObjectId,
    SearchModSeq,
    SearchSequence,
    SearchUid,
    SearchNot,
    SearchOr,
    SearchAnd,
]


@dataclass(frozen=True)
class SortCriterion:
    """One sort key (RFC 5256, RFC 5957 DISPLAYFROM/DISPLAYTO), possibly REVERSE."""

    key: str
    reverse: bool = False


@dataclass(frozen=True)
class QresyncParams:
    """SELECT (QRESYNC (uidvalidity modseq [known-uids] [(seqs uids)])), RFC 7162 §3.2.5."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    known_sequence_set: SequenceSet | None = None
    known_uid_set: SequenceSet | None = None


@dataclass(frozen=True)
class AppendMessage:
    """One message of APPEND (several with MULTIAPPEND, RFC 3502)."""

    data: bytes
    flags: tuple[str, ...] = ()
    date: dt.datetime | None = None
    binary: bool = False  # sent as literal8 ~{n} (RFC 3516): may hold NUL and 8-bit content
    utf8: bool = False  # wrapped as UTF8 (~{n}) (RFC 6855)


# --- the commands ------------------------------------------------------------------------


@dataclass(frozen=True)
class Capability:
    tag: str


@dataclass(frozen=True)
class Noop:
    tag: str


@dataclass(frozen=True)
class Logout:
    tag: str


@dataclass(frozen=True)
class StartTls:
    tag: str


@dataclass(frozen=True)
class Authenticate:
    """AUTHENTICATE mechanism [initial-response] (SASL-IR, RFC 4959).

    initial_response is the base64 text as sent, "" for "=" (an empty response) and None when
    the client sent none.
    """

    tag: str
    mechanism: str
    initial_response: str | None = None


@dataclass(frozen=True)
class Login:
    tag: str
    user: str
    password: str


@dataclass(frozen=True)
class Unauthenticate:
    """UNAUTHENTICATE (RFC 8437)."""

    tag: str


@dataclass(frozen=True)
class Enable:
    tag: str
    capabilities: tuple[str, ...]


@dataclass(frozen=True)
class _OpenMailbox:
    tag: str
    mailbox: str
    condstore: bool = False
    qresync: QresyncParams | None = None


@dataclass(frozen=True)
class Select(_OpenMailbox):
    """SELECT mailbox [(CONDSTORE) | (QRESYNC (...))]."""


@dataclass(frozen=True)
class Examine(_OpenMailbox):
    """EXAMINE: SELECT read-only."""


@dataclass(frozen=True)
class Create:
    """CREATE mailbox [(USE (\\Drafts ...))] (RFC 6154)."""

    tag: str
    mailbox: str
    special_use: tuple[str, ...] = ()


@dataclass(frozen=True)
class Delete:
    tag: str
    mailbox: str


@dataclass(frozen=True)
class Rename:
    tag: str
    mailbox: str
    new_name: str


@dataclass(frozen=True)
class Subscribe:
    tag: str
    mailbox: str


@dataclass(frozen=True)
class Unsubscribe:
    tag: str
    mailbox: str


@dataclass(frozen=True)
class List:
    """LIST, with LIST-EXTENDED selection and return options (RFC 5258, 5819, 6154).

    return_options holds SUBSCRIBED, CHILDREN, SPECIAL-USE, MYRIGHTS; STATUS (RFC 5819) is kept
    apart in status_items, None when not asked for.
    """

    tag: str
    reference: str
    patterns: tuple[str, ...]
    selection_options: tuple[str, ...] = ()
    return_options: tuple[str, ...] = ()
    status_items: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Lsub:
    tag: str
    reference: str
    pattern: str


@dataclass(frozen=True)
class Namespace:
    tag: str


@dataclass(frozen=True)
class Status:
    tag: str
    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True)
class Append:
    tag: str
    mailbox: str
    messages: tuple[AppendMessage, ...]


@dataclass(frozen=True)
class Idle:
    tag: str


@dataclass(frozen=True)
class Check:
    tag: str


@dataclass(frozen=True)
class Close:
    tag: str


@dataclass(frozen=True)
class Unselect:
    tag: str


@dataclass(frozen=True)
class Expunge:
    tag: str


@dataclass(frozen=True)
class UidExpunge:
    """UID EXPUNGE sequence-set (UIDPLUS, RFC 4315)."""

    tag: str
    sequence: SequenceSet


@dataclass(frozen=True)
class Search:
    """SEARCH; return_options None for a plain SEARCH, a tuple (maybe empty) for ESEARCH.

    String values are decoded with the CHARSET when Python knows it; the session answers
    NO [BADCHARSET] for a charset it does not support.
    """

    tag: str
    criteria: tuple[SearchKey, ...]
    charset: str | None = None
    return_options: tuple[str, ...] | None = None
    uid: bool = False


@dataclass(frozen=True)
class Fetch:
    """FETCH set items [(CHANGEDSINCE n [VANISHED])] (RFC 9051, RFC 7162)."""

    tag: str
    sequence: SequenceSet
    items: tuple[FetchItem, ...]
    changedsince: int | None = None
    vanished: bool = False
    uid: bool = False


StoreMode = Literal["", "+", "-"]


@dataclass(frozen=True)
class Store:
    """STORE set [(UNCHANGEDSINCE n)] [+|-]FLAGS[.SILENT] flags; mode "" replaces the flags."""

    tag: str
    sequence: SequenceSet
    mode: StoreMode
    flags: tuple[str, ...]
    silent: bool = False
    unchangedsince: int | None = None
    uid: bool = False


@dataclass(frozen=True)
class Copy:
    tag: str
    sequence: SequenceSet
    mailbox: str
    uid: bool = False


@dataclass(frozen=True)
class Move:
    """MOVE (RFC 6851)."""

    tag: str
    sequence: SequenceSet
    mailbox: str
    uid: bool = False


@dataclass(frozen=True)
class Sort:
    """SORT (RFC 5256), with ESORT RETURN options (RFC 5267) when return_options is not None."""

    tag: str
    criteria: tuple[SortCriterion, ...]
    charset: str
    search: tuple[SearchKey, ...]
    return_options: tuple[str, ...] | None = None
    uid: bool = False


@dataclass(frozen=True)
class Thread:
    """THREAD algorithm charset keys (RFC 5256)."""

    tag: str
    algorithm: str
    charset: str
    search: tuple[SearchKey, ...]
    uid: bool = False


@dataclass(frozen=True)
class Id:
    """ID (RFC 2971): field/value pairs, or None for ID NIL."""

    tag: str
    params: tuple[tuple[str, str | None], ...] | None


@dataclass(frozen=True)
class GetQuota:
    tag: str
    root: str


@dataclass(frozen=True)
class GetQuotaRoot:
    tag: str
    mailbox: str


@dataclass(frozen=True)
class SetQuota:
    """SETQUOTA root ((resource limit)*) (RFC 9208)."""

    tag: str
    root: str
    limits: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Compress:
    """COMPRESS mechanism (RFC 4978)."""

    tag: str
    mechanism: str


@dataclass(frozen=True)
class GetMetadata:
    """GETMETADATA [(MAXSIZE n DEPTH d)] mailbox entries (RFC 5464)."""

    tag: str
    mailbox: str
    entries: tuple[str, ...]
    maxsize: int | None = None
    depth: Literal["0", "1", "infinity"] | None = None


@dataclass(frozen=True)
class SetMetadata:
    """SETMETADATA mailbox (entry value ...); a None value removes the entry."""

    tag: str
    mailbox: str
    entries: tuple[tuple[str, bytes | None], ...]


# RFC 5465 §5: the events NOTIFY names, in the RFC's spelling (compared case-insensitively).
NOTIFY_EVENTS = {
    name.upper(): name
    for name in (
        "MessageNew",
        "MessageExpunge",
        "FlagChange",
        "AnnotationChange",
        "MailboxName",
        "SubscriptionChange",
        "MailboxMetadataChange",
        "ServerMetadataChange",
        "QuotaChange",
    )
}
NotifyFilterName = Literal[
    "SELECTED", "SELECTED-DELAYED", "INBOXES", "PERSONAL", "SUBSCRIBED", "SUBTREE", "MAILBOXES"
]


@dataclass(frozen=True)
class NotifyEvent:
    """One event of an event group (RFC 5465 §5); a name NOTIFY_EVENTS does not know is kept
    as sent, for the session to refuse with BADEVENT."""

    name: str
    fetch_atts: tuple[FetchItem, ...] = ()  # MessageNew (fetch-att ...), selected mailbox only


@dataclass(frozen=True)
class NotifyGroup:
    """`(filter-mailboxes events)`: mailboxes for SUBTREE and MAILBOXES; no events is NONE."""

    filter: NotifyFilterName
    mailboxes: tuple[str, ...] = ()
    events: tuple[NotifyEvent, ...] = ()


@dataclass(frozen=True)
class Notify:
    """NOTIFY SET [STATUS] groups, or NOTIFY NONE when groups is empty (RFC 5465 §3.1)."""

    tag: str
    groups: tuple[NotifyGroup, ...] = ()
    status: bool = False


Command = Union[
    Capability,
    Noop,
    Logout,
    StartTls,
    Authenticate,
    Login,
    Unauthenticate,
    Enable,
    Select,
    Examine,
    Create,
    Delete,
    Rename,
    Subscribe,
    Unsubscribe,
    List,
    Lsub,
    Namespace,
    Status,
    Append,
    Idle,
    Check,
    Close,
    Unselect,
    Expunge,
    UidExpunge,
    Search,
    Fetch,
    Store,
    Copy,
    Move,
    Sort,
    Thread,
    Id,
    GetQuota,
    GetQuotaRoot,
    SetQuota,
    Compress,
    GetMetadata,
    SetMetadata,
    Notify,
]
