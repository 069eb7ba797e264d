"""Property tests: parse(encode_command(cmd)) == cmd; no input makes the parser raise or hang."""

from __future__ import annotations

import base64
import datetime as dt
import typing

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postbote.imap import commands as c
from postbote.imap.encode import encode_command
from postbote.imap.grammar import (
    SPECIAL_USE,
    ContinuationNeeded,
    ImapCommandParser,
    ParseError,
)
from postbote.imap.sequence import SeqRange, SequenceSet

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# --- strategies ----------------------------------------------------------------------------------

tags = st.from_regex(r"[A-Za-z0-9.\]]{1,8}", fullmatch=True)
texts = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=24
)
ascii_words = st.from_regex(r"[A-Z][A-Z0-9\-]{0,9}", fullmatch=True)
header_names = st.from_regex(r"[A-Za-z][A-Za-z0-9\-]{0,12}", fullmatch=True)
keywords = st.from_regex(r"[A-Za-z$][A-Za-z0-9$_\-.\[]{0,10}", fullmatch=True)
system_flags = st.sampled_from(["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"])
flags = st.one_of(system_flags, keywords)
flag_tuples = st.lists(flags, max_size=4).map(tuple)
numbers = st.integers(1, 0xFFFFFFFF)
numbers64 = st.integers(0, 0x7FFFFFFFFFFFFFFF)
nz_numbers64 = st.integers(1, 0x7FFFFFFFFFFFFFFF)


def inbox_normalised(name: str) -> str:
    return "INBOX" if name.isascii() and name.upper() == "INBOX" else name


mailboxes = st.one_of(texts, st.sampled_from(["INBOX", "Entwürfe", "a&b", "日本語/☺"])).map(
    inbox_normalised
)
seq_numbers = st.one_of(numbers, st.none())


@st.composite
def sequence_sets(draw: st.DrawFn, star: bool = True, saved: bool = True) -> SequenceSet:
    if saved and draw(st.integers(0, 9)) == 0:
        return SequenceSet(saved=True)
    part = seq_numbers if star else numbers
    ranges = draw(st.lists(st.tuples(part, part), min_size=1, max_size=4))
    return SequenceSet(tuple(SeqRange(first, last) for first, last in ranges))


dates = st.dates(min_value=dt.date(1000, 1, 1))
datetimes = st.builds(
    lambda when, minutes: when.replace(
        microsecond=0, tzinfo=dt.timezone(dt.timedelta(minutes=minutes))
    ),
    st.datetimes(min_value=dt.datetime(1000, 1, 2), max_value=dt.datetime(9999, 12, 30)),
    st.integers(-(23 * 60 + 59), 23 * 60 + 59),
)

leaf_keys = st.one_of(
    st.builds(c.SearchFlagKey, st.sampled_from(sorted(c.FLAG_SEARCH_KEYS))),
    st.builds(c.SearchText, st.sampled_from(sorted(c.TEXT_SEARCH_KEYS)), texts),
    st.builds(c.SearchHeader, header_names, texts),
    st.builds(c.SearchKeyword, keywords, st.booleans()),
    st.builds(c.SearchDate, st.sampled_from(sorted(c.DATE_SEARCH_KEYS)), dates),
    st.builds(c.SearchSize, st.sampled_from(["LARGER", "SMALLER"]), numbers64),
    st.builds(c.SearchWithin, st.sampled_from(["OLDER", "YOUNGER"]), numbers),
    st.builds(
        c.SearchObjectId,
        st.sampled_from(["EMAILID", "THREADID"]),
        st.from_regex(r"[A-Za-z0-9_\-]{1,20}", fullmatch=True),
    ),
    st.builds(c.SearchModSeq, numbers64),
    st.builds(
        c.SearchModSeq,
        numbers64,
        flags.map(lambda flag: "/flags/" + flag),
        st.sampled_from(["PRIV", "SHARED", "ALL"]),
    ),
    st.builds(c.SearchSequence, sequence_sets()),
    st.builds(c.SearchUid, sequence_sets()),
)
search_keys = st.recursive(
    leaf_keys,
    lambda inner: st.one_of(
        st.builds(c.SearchNot, inner),
        st.builds(c.SearchOr, inner, inner),
        st.builds(c.SearchAnd, st.lists(inner, min_size=1, max_size=3).map(tuple)),
    ),
    max_leaves=8,
)
search_programs = st.lists(search_keys, min_size=1, max_size=3).map(tuple)

parts = st.lists(numbers, max_size=3).map(tuple)
SIMPLE_FETCH_NAMES = list(typing.get_args(c.SimpleFetchName))
partials = st.one_of(st.none(), st.builds(c.Partial, numbers64, nz_numbers64))


@st.composite
def sections(draw: st.DrawFn) -> c.Section:
    part = draw(parts)
    choices: list[str | None] = [None, "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT"]
    if part:
        choices.append("MIME")
    text = draw(st.sampled_from(choices))
    fields: tuple[str, ...] = ()
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        fields = tuple(draw(st.lists(header_names, min_size=1, max_size=4)))
    return c.Section(part, text, fields)  # type: ignore[arg-type]


fetch_items = st.one_of(
    st.builds(c.FetchAtt, st.sampled_from(SIMPLE_FETCH_NAMES)),
    st.builds(c.FetchBody, sections(), partials, st.booleans()),
    st.builds(c.FetchBinary, parts, partials, st.booleans()),
    st.builds(c.FetchBinarySize, parts),
    st.builds(c.FetchPreview, st.booleans()),
)


@st.composite
def fetches(draw: st.DrawFn) -> c.Fetch:
    uid = draw(st.booleans())
    changedsince = draw(st.one_of(st.none(), nz_numbers64))
    vanished = uid and changedsince is not None and draw(st.booleans())
    items = tuple(draw(st.lists(fetch_items, min_size=1, max_size=4)))
    return c.Fetch(draw(tags), draw(sequence_sets()), items, changedsince, vanished, uid)


@st.composite
def selects(draw: st.DrawFn) -> c.Select | c.Examine:
    qresync = None
    if draw(st.booleans()):
        known = draw(st.one_of(st.none(), sequence_sets(star=False, saved=False)))
        match = draw(
            st.one_of(
                st.none(),
                st.tuples(
                    sequence_sets(star=False, saved=False), sequence_sets(star=False, saved=False)
                ),
            )
        )
        qresync = c.QresyncParams(
            draw(numbers), draw(nz_numbers64), known, *(match or (None, None))
        )
    cls = draw(st.sampled_from([c.Select, c.Examine]))
    return cls(draw(tags), draw(mailboxes), draw(st.booleans()), qresync)


@st.composite
def lists(draw: st.DrawFn) -> c.List:
    selection = draw(
        st.lists(
            st.sampled_from(["SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"]), max_size=3
        )
    )
    if "RECURSIVEMATCH" in selection:
        selection.append("SUBSCRIBED")
    returns = draw(
        st.lists(st.sampled_from(["SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "MYRIGHTS"]), max_size=3)
    )
    status = draw(
        st.one_of(
            st.none(),
            st.lists(
                st.sampled_from(["MESSAGES", "UNSEEN", "UIDNEXT"]), min_size=1, max_size=3
            ).map(tuple),
        )
    )
    patterns = tuple(draw(st.lists(texts, min_size=1, max_size=3)))
    return c.List(draw(tags), draw(mailboxes), patterns, tuple(selection), tuple(returns), status)


append_messages = st.builds(
    lambda data, flag_list, date, kind: c.AppendMessage(
        data, flag_list, date, binary=kind != "plain", utf8=kind == "utf8"
    ),
    st.binary(max_size=40),
    flag_tuples,
    st.one_of(st.none(), datetimes),
    st.sampled_from(["plain", "binary", "utf8"]),
)
base64_text = st.binary(max_size=30).map(lambda raw: base64.b64encode(raw).decode("ascii"))
charsets = st.sampled_from(["UTF-8", "US-ASCII"])
metadata_values = st.one_of(st.none(), st.binary(max_size=20))

commands = st.one_of(
    st.builds(
        lambda cls, tag: cls(tag),
        st.sampled_from(
            [
                c.Capability,
                c.Noop,
                c.Logout,
                c.StartTls,
                c.Namespace,
                c.Idle,
                c.Check,
                c.Close,
                c.Unselect,
                c.Expunge,
                c.Unauthenticate,
            ]
        ),
        tags,
    ),
    st.builds(c.Authenticate, tags, ascii_words, st.one_of(st.none(), base64_text)),
    st.builds(c.Login, tags, texts, texts),
    st.builds(c.Enable, tags, st.lists(ascii_words, min_size=1, max_size=3).map(tuple)),
    selects(),
    st.builds(
        c.Create,
        tags,
        mailboxes,
        st.lists(st.sampled_from(sorted(SPECIAL_USE.values())), max_size=2).map(tuple),
    ),
    st.builds(c.Delete, tags, mailboxes),
    st.builds(c.Rename, tags, mailboxes, mailboxes),
    st.builds(c.Subscribe, tags, mailboxes),
    st.builds(c.Unsubscribe, tags, mailboxes),
    lists(),
    st.builds(c.Lsub, tags, mailboxes, texts),
    st.builds(
        c.Status,
        tags,
        mailboxes,
        st.lists(
            st.sampled_from(
                ["MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "HIGHESTMODSEQ"]
            ),
            min_size=1,
            max_size=4,
        ).map(tuple),
    ),
    st.builds(
        c.Append, tags, mailboxes, st.lists(append_messages, min_size=1, max_size=3).map(tuple)
    ),
    st.builds(c.UidExpunge, tags, sequence_sets()),
    st.builds(
        c.Search,
        tags,
        search_programs,
        st.one_of(st.none(), charsets),
        st.one_of(
            st.none(),
            st.lists(st.sampled_from(["MIN", "MAX", "ALL", "COUNT", "SAVE"]), max_size=3).map(
                tuple
            ),
        ),
        st.booleans(),
    ),
    fetches(),
    st.builds(
        c.Store,
        tags,
        sequence_sets(),
        st.sampled_from(["", "+", "-"]),
        flag_tuples,
        st.booleans(),
        st.one_of(st.none(), numbers64),
        st.booleans(),
    ),
    st.builds(c.Copy, tags, sequence_sets(), mailboxes, st.booleans()),
    st.builds(c.Move, tags, sequence_sets(), mailboxes, st.booleans()),
    st.builds(
        c.Sort,
        tags,
        st.lists(
            st.builds(
                c.SortCriterion,
                st.sampled_from(
                    ["ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM"]
                ),
                st.booleans(),
            ),
            min_size=1,
            max_size=3,
        ).map(tuple),
        charsets,
        search_programs,
        st.one_of(
            st.none(),
            st.lists(st.sampled_from(["MIN", "MAX", "ALL", "COUNT"]), max_size=2).map(tuple),
        ),
        st.booleans(),
    ),
    st.builds(
        c.Thread,
        tags,
        st.sampled_from(["REFERENCES", "ORDEREDSUBJECT"]),
        charsets,
        search_programs,
        st.booleans(),
    ),
    st.builds(
        c.Id,
        tags,
        st.one_of(
            st.none(),
            st.lists(st.tuples(texts, st.one_of(st.none(), texts)), max_size=3).map(tuple),
        ),
    ),
    st.builds(c.GetQuota, tags, texts),
    st.builds(c.GetQuotaRoot, tags, mailboxes),
    st.builds(
        c.SetQuota, tags, texts, st.lists(st.tuples(ascii_words, numbers64), max_size=2).map(tuple)
    ),
    st.builds(c.Compress, tags, ascii_words),
    st.builds(
        c.GetMetadata,
        tags,
        mailboxes,
        st.lists(texts, min_size=1, max_size=3).map(tuple),
        st.one_of(st.none(), numbers),
        st.one_of(st.none(), st.sampled_from(["0", "1", "infinity"])),
    ),
    st.builds(
        c.SetMetadata,
        tags,
        mailboxes,
        st.lists(st.tuples(texts, metadata_values), min_size=1, max_size=3).map(tuple),
    ),
)

# --- NOTIFY (RFC 5465) ---------------------------------------------------------------------------

notify_event_names = st.one_of(
    st.sampled_from(sorted(c.NOTIFY_EVENTS.values())),
    ascii_words.filter(lambda word: word not in c.NOTIFY_EVENTS and word != "NONE"),
)
notify_events = st.one_of(
    st.builds(c.NotifyEvent, notify_event_names),
    st.builds(
        c.NotifyEvent,
        st.just("MessageNew"),
        st.lists(fetch_items, min_size=1, max_size=3).map(tuple),
    ),
)


@st.composite
def notify_groups(draw: st.DrawFn) -> c.NotifyGroup:
    name = draw(
        st.sampled_from(
            ["SELECTED", "SELECTED-DELAYED", "INBOXES", "PERSONAL", "SUBSCRIBED", "SUBTREE", "MAILBOXES"]
        )
    )
    names: tuple[str, ...] = ()
    if name in ("SUBTREE", "MAILBOXES"):
        names = tuple(draw(st.lists(mailboxes, min_size=1, max_size=3)))
    events = tuple(draw(st.lists(notify_events, max_size=4)))
    return c.NotifyGroup(name, names, events)  # type: ignore[arg-type]


notifies = st.one_of(
    st.builds(c.Notify, tags),
    st.builds(
        c.Notify, tags, st.lists(notify_groups(), min_size=1, max_size=3).map(tuple), st.booleans()
    ),
)
commands = st.one_of(commands, notifies)

# --- helpers -------------------------------------------------------------------------------------


def feed(parser: ImapCommandParser, chunks: list[bytes]) -> list[object]:
    """Feed chunks, accepting every synchronizing literal; return the other events."""
    found: list[object] = []
    for chunk in chunks:
        parser.receive(chunk)
        for event in parser.events():
            if isinstance(event, ContinuationNeeded):
                parser.accept_literal()
            else:
                found.append(event)
    return found


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:])]


# --- properties ----------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(commands, st.booleans(), st.booleans())
def test_parse_of_encoded_command_gives_it_back(
    command: c.Command, utf8_names: bool, literal_plus: bool
) -> None:
    data = encode_command(command, utf8_names=utf8_names, literal_plus=literal_plus)
    parser = ImapCommandParser(utf8_names=utf8_names)
    assert feed(parser, [data]) == [command], data


@PROPERTY_SETTINGS
@given(st.lists(commands, min_size=1, max_size=3), st.lists(st.integers(0, 10_000), max_size=8))
def test_chunking_never_changes_the_events(cmds: list[c.Command], cuts: list[int]) -> None:
    data = b"".join(encode_command(command, literal_plus=True) for command in cmds)
    whole = feed(ImapCommandParser(), [data])
    assert whole == cmds
    assert feed(ImapCommandParser(), split(data, cuts)) == whole


def bounded_feed(data: bytes, chunk: int, max_line: int = 256) -> list[object]:
    """Random input must end in events or in waiting for more, never in an exception or a loop."""
    parser = ImapCommandParser(max_line=max_line, max_literal=512)
    found: list[object] = []
    for start in range(0, len(data), chunk):
        parser.receive(data[start : start + chunk])
        for event in parser.events():
            found.append(event)
            assert len(found) <= len(data) + 1
            if isinstance(event, ContinuationNeeded):
                parser.accept_literal()
    return found


@PROPERTY_SETTINGS
@given(st.binary(max_size=400), st.integers(1, 64))
def test_random_bytes_never_raise_or_hang(data: bytes, chunk: int) -> None:
    bounded_feed(data, chunk)


command_words = st.sampled_from(
    [
        b"A1",
        b" ",
        b"UID",
        b"FETCH",
        b"SEARCH",
        b"STORE",
        b"APPEND",
        b"LIST",
        b"SELECT",
        b"(",
        b")",
        b"[",
        b"]",
        b"<",
        b">",
        b"{",
        b"}",
        b"~{3}\r\n",
        b"{2+}\r\n",
        b"{1}\r\n",
        b'"',
        b"\\",
        b"*",
        b"1:*",
        b"$",
        b"NOT",
        b"OR",
        b"BODY.PEEK[",
        b"HEADER.FIELDS",
        b"\r\n",
        b"\n",
        b"INBOX",
        b"&",
        b"-",
        b"0",
        b"4294967296",
        b"+FLAGS",
        b"\\Seen",
        b"RETURN",
        b"CHARSET",
        b"NIL",
        b"\x00",
        b"\xff",
        b"QRESYNC",
        b"CHANGEDSINCE",
        b"VANISHED",
        b"DONE",
        b"UTF8",
    ]
)


@PROPERTY_SETTINGS
@given(st.lists(command_words, max_size=60), st.integers(1, 32))
def test_command_like_garbage_never_raises_or_hangs(words: list[bytes], chunk: int) -> None:
    data = b"".join(words) + b"\r\n"
    found = bounded_feed(data, chunk)
    assert all(not isinstance(event, BaseException) for event in found)


@PROPERTY_SETTINGS
@given(commands, st.integers(0, 10_000), st.binary(min_size=1, max_size=3))
def test_mutated_commands_give_a_command_or_parse_error(
    command: c.Command, position: int, junk: bytes
) -> None:
    data = encode_command(command, literal_plus=True)
    index = position % len(data)
    mutated = data[:index] + junk + data[index:]
    for event in bounded_feed(mutated + b"\r\n", 7, max_line=1 << 16):
        assert isinstance(event, (ParseError, ContinuationNeeded)) or hasattr(event, "tag")
