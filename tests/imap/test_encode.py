"""Every server response, byte for byte (RFC 9051 §7 examples where there is one)."""

from __future__ import annotations

import datetime as dt
import tracemalloc

import pytest

from postbote.imap import encode as e
from postbote.imap.commands import FetchBody, Partial, Section
from postbote.imap.encode import Atom, Mailbox, ResponseCode, StreamedLiteral, ThreadNode
from postbote.imap.sequence import SequenceSet

PDT = dt.timezone(-dt.timedelta(hours=7))

# --- the value writer ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (None, b"NIL"),
        (0, b"0"),
        (4294967295, b"4294967295"),
        ("", b'""'),
        ("hello world", b'"hello world"'),
        ('say "hi" \\o/', b'"say \\"hi\\" \\\\o/"'),
        ("two\r\nlines", b"{10}\r\ntwo\r\nlines"),
        ("tab\there", b"{8}\r\ntab\there"),
        ("Grüße", b"{7}\r\nGr\xc3\xbc\xc3\x9fe"),
        (b"raw", b"{3}\r\nraw"),
        (b"nul\x00inside", b"~{10}\r\nnul\x00inside"),
        (Atom("\\Seen"), b"\\Seen"),
        ([Atom("\\Seen"), "x", None, 3, []], b'(\\Seen "x" NIL 3 ())'),
        ((("a", None), ("b",)), b'(("a" NIL) ("b"))'),
        (dt.datetime(1996, 7, 17, 2, 44, 25, tzinfo=PDT), b'"17-Jul-1996 02:44:25 -0700"'),
        (dt.datetime(2024, 1, 5, 9, 0, 0), b'"05-Jan-2024 09:00:00 +0000"'),
        (SequenceSet.parse("1:4,7"), b"1:4,7"),
        (Mailbox("Entwürfe"), b'"Entw&APw-rfe"'),
        (e.Raw(b"(x)"), b"(x)"),
    ],
)
def test_write_value(value: object, wire: bytes) -> None:
    assert e.write_value(value) == wire


def test_long_strings_become_literals() -> None:
    text = "x" * (e.MAX_QUOTED + 1)
    assert e.write_value(text) == b"{%d}\r\n" % len(text) + text.encode()
    assert e.write_value("x" * e.MAX_QUOTED).startswith(b'"')


def test_utf8_sessions_get_utf8_in_quoted_strings_and_names() -> None:
    assert e.write_value("Grüße", utf8=True) == '"Grüße"'.encode()
    assert e.write_value(Mailbox("Entwürfe"), utf8=True) == '"Entwürfe"'.encode()
    assert e.write_value(Mailbox("a&b"), utf8=True) == b'"a&b"'
    assert e.write_value(Mailbox("a&b")) == b'"a&-b"'


def test_envelope_as_nested_lists() -> None:
    # RFC 9051 §7.5.2 example, shortened
    envelope = [
        "Wed, 17 Jul 1996 02:23:25 -0700 (PDT)",
        "IMAP4rev2 WG mtg summary and minutes",
        [["Terry Gray", None, "gray", "cac.washington.edu"]],
        None,
        ["x"],
        None,
        None,
        None,
        None,
        "<B27397-0100000@cac.washington.edu>",
    ]
    assert e.write_value(envelope) == (
        b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev2 WG mtg summary and minutes" '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) NIL ("x") NIL NIL NIL NIL '
        b'"<B27397-0100000@cac.washington.edu>")'
    )


def test_unknown_values_are_a_programming_error() -> None:
    with pytest.raises(TypeError):
        e.write_value(True)
    with pytest.raises(TypeError):
        e.write_value(object())


# --- status responses ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (e.ok("a1"), b"a1 OK completed\r\n"),
        (
            e.ok("A142", "SELECT completed", e.READ_WRITE),
            b"A142 OK [READ-WRITE] SELECT completed\r\n",
        ),
        (e.no("A3", "no such mailbox", e.TRYCREATE), b"A3 NO [TRYCREATE] no such mailbox\r\n"),
        (e.bad("A4", "unknown command"), b"A4 BAD unknown command\r\n"),
        (e.bad(None, "missing tag"), b"* BAD missing tag\r\n"),
        (e.tagged("a", "NO", "line\r\nbreak"), b"a NO line break\r\n"),
        (e.tagged("a", "OK", ""), b"a OK ok\r\n"),
        (
            e.untagged("OK", "ready", e.code_uidvalidity(3857529045)),
            b"* OK [UIDVALIDITY 3857529045] ready\r\n",
        ),
        (e.untagged("OK", "predicted", e.code_uidnext(4392)), b"* OK [UIDNEXT 4392] predicted\r\n"),
        (e.untagged("OK", "first", e.code_unseen(12)), b"* OK [UNSEEN 12] first\r\n"),
        (
            e.untagged("OK", "h", e.code_highestmodseq(715194045007)),
            b"* OK [HIGHESTMODSEQ 715194045007] h\r\n",
        ),
        (
            e.untagged("OK", "Limited", e.code_permanentflags(["\\Deleted", "\\Seen", "\\*"])),
            b"* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n",
        ),
        (e.untagged("NO", "disk", e.ALERT), b"* NO [ALERT] disk\r\n"),
        (e.bye("Autologout; idle for too long"), b"* BYE Autologout; idle for too long\r\n"),
        (e.untagged("OK", "x", e.CLOSED), b"* OK [CLOSED] x\r\n"),
        (
            e.ok("A003", "APPEND completed", e.code_appenduid(38505, 3955)),
            b"A003 OK [APPENDUID 38505 3955] APPEND completed\r\n",
        ),
        (
            e.ok("A", "done", e.code_appenduid(1, [5, 6, 7, 9])),
            b"A OK [APPENDUID 1 5:7,9] done\r\n",
        ),
        (
            e.ok(
                "A004", "COPY completed", e.code_copyuid(38505, [304, 319, 320], [3956, 3957, 3958])
            ),
            b"A004 OK [COPYUID 38505 304,319:320 3956:3958] COPY completed\r\n",
        ),
        (e.ok("d105", "done", e.code_modified([7, 9])), b"d105 OK [MODIFIED 7,9] done\r\n"),
        (
            e.no("a", "charset", e.code_badcharset(["UTF-8"])),
            b"a NO [BADCHARSET (UTF-8)] charset\r\n",
        ),
        (e.no("a", "charset", e.code_badcharset()), b"a NO [BADCHARSET] charset\r\n"),
        (
            e.ok("a", "ok", e.code_mailboxid("F2212ea87-6097")),
            b"a OK [MAILBOXID (F2212ea87-6097)] ok\r\n",
        ),
        (e.ok("a", "ok", e.code_appendlimit(1024)), b"a OK [APPENDLIMIT 1024] ok\r\n"),
        (
            e.ok("a", "ok", e.code_capability(["IMAP4rev2", "IDLE"])),
            b"a OK [CAPABILITY IMAP4rev2 IDLE] ok\r\n",
        ),
    ],
)
def test_status_responses(wire: bytes, expected: bytes) -> None:
    assert wire == expected


@pytest.mark.parametrize(
    "code",
    [
        e.READ_ONLY,
        e.ALERT,
        e.PARSE,
        e.NONEXISTENT,
        e.ALREADYEXISTS,
        e.AUTHENTICATIONFAILED,
        e.AUTHORIZATIONFAILED,
        e.EXPIRED,
        e.PRIVACYREQUIRED,
        e.CONTACTADMIN,
        e.TOOBIG,
        e.LIMIT,
        e.OVERQUOTA,
        e.CANNOT,
        e.NOPERM,
        e.INUSE,
        e.SERVERBUG,
        e.CLIENTBUG,
        e.UNAVAILABLE,
        e.EXPUNGEISSUED,
        e.CORRUPTION,
        e.NOTSAVED,
        e.HASCHILDREN,
        e.NOMODSEQ,
        e.UNKNOWN_CTE,
        e.UIDNOTSTICKY,
        e.COMPRESSIONACTIVE,
        e.USEATTR,
    ],
)
def test_plain_response_codes(code: ResponseCode) -> None:
    assert e.no("t", "why", code) == b"t NO [" + code.name.encode() + b"] why\r\n"


def test_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError):
        e.tagged("a", "BYE", "x")
    with pytest.raises(ValueError):
        e.untagged("MAYBE", "x")


def test_greeting_and_preauth() -> None:
    assert e.greeting("postbote ready", capabilities=["IMAP4rev2", "STARTTLS"]) == (
        b"* OK [CAPABILITY IMAP4rev2 STARTTLS] postbote ready\r\n"
    )
    assert e.greeting("welcome", preauth=True) == b"* PREAUTH welcome\r\n"


def test_continuations() -> None:
    assert e.continuation() == b"+ Ready\r\n"
    assert e.continuation("idling") == b"+ idling\r\n"
    assert e.continuation_data(b"") == b"+ \r\n"
    assert e.continuation_data(b"<1896.697170952@postoffice>") == (
        b"+ PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2U+\r\n"
    )


# --- untagged data -------------------------------------------------------------------------------


def test_capability_and_enabled() -> None:
    assert e.capability(["IMAP4rev2", "AUTH=PLAIN"]) == b"* CAPABILITY IMAP4rev2 AUTH=PLAIN\r\n"
    assert e.enabled(["CONDSTORE"]) == b"* ENABLED CONDSTORE\r\n"
    assert e.enabled([]) == b"* ENABLED\r\n"


def test_mailbox_size_and_message_updates() -> None:
    assert (
        e.flags(["\\Answered", "\\Flagged", "$Forwarded"])
        == b"* FLAGS (\\Answered \\Flagged $Forwarded)\r\n"
    )
    assert e.exists(23) == b"* 23 EXISTS\r\n"
    assert e.recent(5) == b"* 5 RECENT\r\n"
    assert e.expunge(3) == b"* 3 EXPUNGE\r\n"


def test_vanished() -> None:
    assert (
        e.vanished([405, 411, *range(300, 311)], earlier=True)
        == b"* VANISHED (EARLIER) 300:310,405,411\r\n"
    )
    assert e.vanished(SequenceSet.parse("7")) == b"* VANISHED 7\r\n"


def test_list_responses() -> None:
    assert (
        e.list_response("INBOX", "/", ["\\HasNoChildren"])
        == b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n'
    )
    assert e.list_response("", "/", ["\\Noselect"]) == b'* LIST (\\Noselect) "/" ""\r\n'
    assert e.list_response("Flat", None) == b'* LIST () NIL "Flat"\r\n'
    assert e.list_response("Bar", "\\") == b'* LIST () "\\\\" "Bar"\r\n'
    assert (
        e.list_response("Entwürfe", "/", ["\\Drafts"])
        == b'* LIST (\\Drafts) "/" "Entw&APw-rfe"\r\n'
    )
    assert e.list_response("Entwürfe", "/", utf8=True) == '* LIST () "/" "Entwürfe"\r\n'.encode()
    assert e.lsub_response("news", ".") == b'* LSUB () "." "news"\r\n'


def test_list_extended_items() -> None:
    # RFC 5258 CHILDINFO and RFC 9051 §7.3.1 OLDNAME
    assert e.list_response("Foo", "/", [], childinfo=["SUBSCRIBED"]) == (
        b'* LIST () "/" "Foo" ("CHILDINFO" ("SUBSCRIBED"))\r\n'
    )
    assert e.list_response("NewName", "/", [], oldname="Töchter") == (
        b'* LIST () "/" "NewName" ("OLDNAME" ("T&APY-chter"))\r\n'
    )


def test_status() -> None:
    assert e.status("blurdybloop", [("MESSAGES", 231), ("UIDNEXT", 44292)]) == (
        b'* STATUS "blurdybloop" (MESSAGES 231 UIDNEXT 44292)\r\n'
    )


def test_search_and_sort() -> None:
    assert e.search([2, 84, 882]) == b"* SEARCH 2 84 882\r\n"
    assert e.search([]) == b"* SEARCH\r\n"
    assert e.search([2, 5, 6], modseq=917162500) == b"* SEARCH 2 5 6 (MODSEQ 917162500)\r\n"
    assert e.search([], modseq=5) == b"* SEARCH\r\n"  # RFC 7162 §3.1.5: no MODSEQ without matches
    assert e.sort([5, 3, 4]) == b"* SORT 5 3 4\r\n"
    assert e.sort([]) == b"* SORT\r\n"


def test_esearch() -> None:
    # RFC 4731 examples
    assert e.esearch("A282", min=2, count=3) == b'* ESEARCH (TAG "A282") MIN 2 COUNT 3\r\n'
    assert e.esearch("A283", all=[2, 10, 11]) == b'* ESEARCH (TAG "A283") ALL 2,10:11\r\n'
    assert e.esearch("A284", uid=True) == b'* ESEARCH (TAG "A284") UID\r\n'
    assert (
        e.esearch("A285", uid=True, min=7, max=3800)
        == b'* ESEARCH (TAG "A285") UID MIN 7 MAX 3800\r\n'
    )
    assert e.esearch("a", all=[], count=0) == b'* ESEARCH (TAG "a") COUNT 0\r\n'
    assert e.esearch("a", max=9, modseq=42) == b'* ESEARCH (TAG "a") MAX 9 MODSEQ 42\r\n'


def test_thread() -> None:
    # RFC 5256 examples
    forest = [
        ThreadNode(2),
        ThreadNode(
            3,
            (
                ThreadNode(
                    6,
                    (
                        ThreadNode(4, (ThreadNode(23),)),
                        ThreadNode(44, (ThreadNode(7, (ThreadNode(96),)),)),
                    ),
                ),
            ),
        ),
    ]
    assert e.thread(forest) == b"* THREAD (2)(3 6 (4 23)(44 7 96))\r\n"
    assert e.thread([ThreadNode(None, (ThreadNode(3), ThreadNode(5)))]) == b"* THREAD ((3)(5))\r\n"
    assert e.thread([]) == b"* THREAD\r\n"


def test_fetch_simple_items() -> None:
    items = [
        ("FLAGS", ["\\Seen", "$Forwarded"]),
        ("UID", 4827313),
        ("MODSEQ", 624140003),
        ("INTERNALDATE", dt.datetime(1996, 7, 17, 2, 44, 25, tzinfo=PDT)),
        ("RFC822.SIZE", 44827),
        ("EMAILID", "M6d99ac3275bb4e"),
        ("THREADID", None),
        ("SAVEDATE", None),
        ("PREVIEW", "Hello Joe"),
    ]
    assert e.fetch(12, items) == (
        b"* 12 FETCH (FLAGS (\\Seen $Forwarded) UID 4827313 MODSEQ (624140003) "
        b'INTERNALDATE "17-Jul-1996 02:44:25 -0700" RFC822.SIZE 44827 EMAILID (M6d99ac3275bb4e) '
        b'THREADID NIL SAVEDATE NIL PREVIEW "Hello Joe")\r\n'
    )


def test_fetch_body_section_literal_uses_the_response_name() -> None:
    item = FetchBody(Section((), "HEADER.FIELDS", ("From",)), Partial(0, 100), peek=True)
    wire = e.fetch(1, [(item.response_name(), b"From: a@b\r\n\r\n"), ("UID", 9)])
    assert wire == b"* 1 FETCH (BODY[HEADER.FIELDS (From)]<0> {13}\r\nFrom: a@b\r\n\r\n UID 9)\r\n"


def test_fetch_binary_with_nul_uses_literal8_and_missing_section_is_nil() -> None:
    assert e.fetch(2, [("BINARY[1]", b"\x00\x01"), ("BINARY.SIZE[1]", 2)]) == (
        b"* 2 FETCH (BINARY[1] ~{2}\r\n\x00\x01 BINARY.SIZE[1] 2)\r\n"
    )
    assert e.fetch(3, [("BODY[5]", None)]) == b"* 3 FETCH (BODY[5] NIL)\r\n"


def test_fetch_bodystructure() -> None:
    structure = ["TEXT", "PLAIN", ["CHARSET", "US-ASCII"], None, None, "7BIT", 3028, 92]
    assert e.fetch(5, [("BODYSTRUCTURE", structure)]) == (
        b'* 5 FETCH (BODYSTRUCTURE ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" '
        b"3028 92))\r\n"
    )


def test_streamed_literal_is_written_in_chunks() -> None:
    chunks = [b"a" * 10, b"b" * 5]
    parts = list(e.iter_fetch(7, [("UID", 1), ("BODY[]", StreamedLiteral(15, iter(chunks)))]))
    assert parts == [b"* 7 FETCH (UID 1 BODY[] {15}\r\n", b"a" * 10, b"b" * 5, b")\r\n"]


def test_streamed_literal_of_the_wrong_length_is_caught() -> None:
    with pytest.raises(ValueError):
        e.fetch(1, [("BODY[]", StreamedLiteral(3, [b"ab"]))])
    with pytest.raises(ValueError):
        e.fetch(1, [("BODY[]", StreamedLiteral(1, [b"ab"]))])


def test_streaming_a_large_body_holds_only_one_chunk() -> None:
    chunk = b"x" * 65536
    count = 160  # 10 MiB in total

    def blob() -> object:
        for _ in range(count):
            yield chunk

    tracemalloc.start()
    try:
        sent = 0
        for part in e.iter_fetch(1, [("BODY[]", StreamedLiteral(len(chunk) * count, blob()))]):
            sent += len(part)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sent > len(chunk) * count
    assert peak < 2 * 1024 * 1024


def test_namespace_id_quota_metadata() -> None:
    assert e.namespace([("", "/")]) == b'* NAMESPACE (("" "/")) NIL NIL\r\n'
    assert e.namespace([("", "/")], [("~", "/")], [("#shared/", "/"), ("#public/", "/")]) == (
        b'* NAMESPACE (("" "/")) (("~" "/")) (("#shared/" "/") ("#public/" "/"))\r\n'
    )
    assert (
        e.id_response({"name": "postbote", "version": None})
        == b'* ID ("name" "postbote" "version" NIL)\r\n'
    )
    assert e.id_response(None) == b"* ID NIL\r\n"
    assert e.quota("", [("STORAGE", 10, 512)]) == b'* QUOTA "" (STORAGE 10 512)\r\n'
    assert e.quotaroot("INBOX", [""]) == b'* QUOTAROOT "INBOX" ""\r\n'
    assert e.metadata("INBOX", [("/private/comment", "My comment"), ("/shared/x", None)]) == (
        b'* METADATA "INBOX" (/private/comment "My comment" /shared/x NIL)\r\n'
    )


def test_fetch_of_100000_messages_can_be_written_one_at_a_time() -> None:
    total = 0
    for number in range(1, 100_001):
        total += len(e.fetch(number, [("UID", number), ("FLAGS", ["\\Seen"])]))
    assert total > 3_000_000


def test_format_helpers() -> None:
    assert e.format_date(dt.date(1994, 2, 1)) == "1-Feb-1994"
    east = dt.timezone(dt.timedelta(hours=5, minutes=30))
    assert (
        e.format_datetime(dt.datetime(2020, 12, 31, 23, 59, 59, tzinfo=east))
        == "31-Dec-2020 23:59:59 +0530"
    )
    assert e.mailbox_name("日本語", False) == "&ZeVnLIqe-"


def test_thread_with_a_very_long_reply_chain() -> None:
    node = ThreadNode(20000)
    for number in range(19999, 0, -1):
        node = ThreadNode(number, (node,))
    wire = e.thread([node])
    assert wire.startswith(b"* THREAD (1 2 3 ") and wire.endswith(b" 19999 20000)\r\n")
