"""Every IMAP command parsed from the wire (RFC examples and real client traffic)."""

from __future__ import annotations

import datetime as dt

import pytest

from postbote.imap import commands as c
from postbote.imap.grammar import ContinuationNeeded, ImapCommandParser, ParseError
from postbote.imap.sequence import SequenceSet


def events(data: bytes, *, utf8_names: bool = False) -> list[object]:
    """Feed the bytes, accept every synchronizing literal, return all other events."""
    parser = ImapCommandParser(utf8_names=utf8_names)
    parser.receive(data)
    found = []
    for event in parser.events():
        if isinstance(event, ContinuationNeeded):
            parser.accept_literal()
        else:
            found.append(event)
    return found


def parse(line: str | bytes, *, utf8_names: bool = False) -> object:
    data = line if isinstance(line, bytes) else line.encode("utf-8")
    if not data.endswith(b"\n"):
        data += b"\r\n"
    found = events(data, utf8_names=utf8_names)
    assert len(found) == 1, found
    return found[0]


def bad(line: str | bytes, **kw: bool) -> ParseError:
    result = parse(line, **kw)
    assert isinstance(result, ParseError), result
    return result


def seq(text: str) -> SequenceSet:
    return SequenceSet.parse(text)


ZONE_MINUS_7 = dt.timezone(-dt.timedelta(hours=7))

# --- commands without arguments -------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("a1 CAPABILITY", c.Capability("a1")),
        ("a1 capability", c.Capability("a1")),
        ("a2 NOOP", c.Noop("a2")),
        ("a3 LOGOUT", c.Logout("a3")),
        ("a4 STARTTLS", c.StartTls("a4")),
        ("a5 NAMESPACE", c.Namespace("a5")),
        ("a6 IDLE", c.Idle("a6")),
        ("a7 CHECK", c.Check("a7")),
        ("a8 CLOSE", c.Close("a8")),
        ("a9 UNSELECT", c.Unselect("a9")),
        ("b1 EXPUNGE", c.Expunge("b1")),
        ("b2 UNAUTHENTICATE", c.Unauthenticate("b2")),
        ("1.1 CAPABILITY", c.Capability("1.1")),  # Apple Mail's tags
        ("A]1 NOOP", c.Noop("A]1")),  # "]" is an ASTRING-CHAR, so allowed in a tag
    ],
)
def test_commands_without_arguments(line: str, expected: object) -> None:
    assert parse(line) == expected


@pytest.mark.parametrize("line", ["a1 NOOP x", "a1 CAPABILITY ", "a1 LOGOUT\t"])
def test_arguments_to_a_command_without_arguments_are_bad(line: str) -> None:
    assert bad(line).tag == "a1"


# --- authentication -------------------------------------------------------------------------


def test_authenticate_without_initial_response() -> None:
    assert parse("a1 AUTHENTICATE plain") == c.Authenticate("a1", "PLAIN", None)


def test_authenticate_with_sasl_ir() -> None:
    line = "a1 AUTHENTICATE PLAIN AGJvYgBzZWNyZXQ="
    assert parse(line) == c.Authenticate("a1", "PLAIN", "AGJvYgBzZWNyZXQ=")


def test_authenticate_with_empty_initial_response_equals_sign() -> None:
    # RFC 4959: "=" stands for an empty initial response
    assert parse("a1 AUTHENTICATE EXTERNAL =") == c.Authenticate("a1", "EXTERNAL", "")


@pytest.mark.parametrize("ir", ["AGJvYg", "not*base64", "A=B=", ""])
def test_authenticate_refuses_invalid_base64(ir: str) -> None:
    assert bad(f"a1 AUTHENTICATE PLAIN {ir}").tag == "a1"


def test_login_with_atoms() -> None:
    assert parse("a001 LOGIN SMITH SESAME") == c.Login("a001", "SMITH", "SESAME")


def test_login_with_quoted_strings_and_escapes() -> None:
    assert parse(r'a1 LOGIN "fred@x.org" "pa\"ss\\w"') == c.Login("a1", "fred@x.org", 'pa"ss\\w')


def test_login_with_literals() -> None:
    data = b"a1 LOGIN {11}\r\nFRED FOOBAR {7}\r\nfat man\r\n"
    assert events(data) == [c.Login("a1", "FRED FOOBAR", "fat man")]


def test_login_password_in_utf8_is_decoded() -> None:
    assert parse('a1 LOGIN jörg "pässwörd"'.replace("jörg", '"jörg"')) == c.Login(
        "a1", "jörg", "pässwörd"
    )


def test_login_password_bytes_that_are_not_utf8_survive() -> None:
    login = parse(b'a1 LOGIN bob "p\xe4ss"')
    assert isinstance(login, c.Login)
    assert login.password.encode("utf-8", "surrogateescape") == b"p\xe4ss"


def test_enable_uppercases_capabilities() -> None:
    assert parse("t ENABLE condstore qresync") == c.Enable("t", ("CONDSTORE", "QRESYNC"))


def test_enable_needs_a_capability() -> None:
    assert bad("t ENABLE").tag == "t"


# --- mailboxes ------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["INBOX", "inbox", "InBoX", '"inbox"', "{5}\r\niNbOx"])
def test_inbox_is_case_insensitive(spelling: str) -> None:
    assert parse(f"a1 SELECT {spelling}") == c.Select("a1", "INBOX")


def test_only_inbox_itself_is_normalised() -> None:
    assert parse("a1 SELECT inbox/sub") == c.Select("a1", "inbox/sub")
    assert parse('a1 SELECT "ınbox"') != c.Select("a1", "INBOX")  # dotless i is not ASCII


def test_select_condstore() -> None:
    assert parse("a1 SELECT INBOX (CONDSTORE)") == c.Select("a1", "INBOX", condstore=True)


def test_examine_is_its_own_command() -> None:
    result = parse("a1 EXAMINE Archive")
    assert result == c.Examine("a1", "Archive") and not isinstance(result, c.Select)


def test_select_qresync_rfc7162_example() -> None:
    result = parse("A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))")
    assert result == c.Select(
        "A02",
        "INBOX",
        qresync=c.QresyncParams(67890007, 20050715194045000, seq("41,43:211,214:541")),
    )


def test_select_qresync_with_sequence_match_data() -> None:
    line = "B02 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500 15000,22500)))"
    assert parse(line) == c.Select(
        "B02",
        "INBOX",
        qresync=c.QresyncParams(
            67890007, 90060115194045000, seq("1:29997"), seq("5000,7500"), seq("15000,22500")
        ),
    )


def test_select_qresync_match_data_without_known_uids() -> None:
    result = parse("a SELECT INBOX (QRESYNC (1 2 (1:3 5:7)))")
    assert result == c.Select(
        "a", "INBOX", qresync=c.QresyncParams(1, 2, None, seq("1:3"), seq("5:7"))
    )


@pytest.mark.parametrize(
    "line",
    [
        "a SELECT INBOX (QRESYNC (1 2 1:*))",  # RFC 7162: no "*" in known-uids
        "a SELECT INBOX (QRESYNC (0 2))",  # UIDVALIDITY is non-zero
        "a SELECT INBOX (QRESYNC (1 0))",  # so is the modseq
        "a SELECT INBOX (FOO)",
        "a SELECT INBOX ()",
        "a SELECT INBOX (CONDSTORE",
    ],
)
def test_select_parameters_errors(line: str) -> None:
    assert bad(line).tag == "a"


def test_modified_utf7_names_are_decoded() -> None:
    assert parse("a1 CREATE Entw&APw-rfe") == c.Create("a1", "Entwürfe")
    assert parse('a1 DELETE "~peter/mail/&U,BTFw-/&ZeVnLIqe-"') == c.Delete(
        "a1", "~peter/mail/台北/日本語"
    )


@pytest.mark.parametrize("name", ['"Entw\xfcrfe"', "&Jjo", '"&AGE-"', "{3}\r\na\tb"])
def test_invalid_modified_utf7_names_are_bad(name: str) -> None:
    error = bad(f"a1 SELECT {name}")
    assert error.tag == "a1" and "mailbox name" in error.text


def test_utf8_names_after_utf8_accept() -> None:
    assert parse('a1 SELECT "Entwürfe"', utf8_names=True) == c.Select("a1", "Entwürfe")
    # the ampersand is just a character in UTF-8 names (RFC 6855)
    assert parse('a1 SELECT "Tom &- Jerry"', utf8_names=True) == c.Select("a1", "Tom &- Jerry")


def test_utf8_names_must_be_valid_utf8() -> None:
    assert bad(b'a1 SELECT "\xff\xfe"', utf8_names=True).tag == "a1"


def test_create_with_special_use() -> None:
    # RFC 6154
    assert parse("t1 CREATE MySpecial (USE (\\drafts \\Sent))") == c.Create(
        "t1", "MySpecial", ("\\Drafts", "\\Sent")
    )


def test_rename_subscribe_unsubscribe() -> None:
    assert parse("A683 RENAME blurdybloop sarasoop") == c.Rename("A683", "blurdybloop", "sarasoop")
    assert parse("A002 SUBSCRIBE #news.comp.mail.mime") == c.Subscribe(
        "A002", "#news.comp.mail.mime"
    )
    assert parse('A003 UNSUBSCRIBE "x y"') == c.Unsubscribe("A003", "x y")


# --- LIST, LSUB, STATUS, NAMESPACE ------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('A101 LIST "" ""', c.List("A101", "", ("",))),
        ('A102 LIST #news.comp.mail.misc ""', c.List("A102", "#news.comp.mail.misc", ("",))),
        ('A103 LIST /usr/staff/jones ""', c.List("A103", "/usr/staff/jones", ("",))),
        ("A202 LIST ~/Mail/ %", c.List("A202", "~/Mail/", ("%",))),
        ('a LIST "" *', c.List("a", "", ("*",))),
        ('a LIST "" INBOX.%]', c.List("a", "", ("INBOX.%]",))),
        ('A01 LIST (SUBSCRIBED) "" "*"', c.List("A01", "", ("*",), ("SUBSCRIBED",))),
        (
            'A02 LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)',
            c.List("A02", "", ("%",), ("SUBSCRIBED", "RECURSIVEMATCH"), ("CHILDREN",)),
        ),
        (
            'A03 LIST "" ("INBOX" "Drafts" "Sent/%")',
            c.List("A03", "", ("INBOX", "Drafts", "Sent/%")),
        ),
        (
            'A04 LIST "" % RETURN (STATUS (MESSAGES UNSEEN))',
            c.List("A04", "", ("%",), status_items=("MESSAGES", "UNSEEN")),
        ),
        ('t1 LIST (SPECIAL-USE) "" "*"', c.List("t1", "", ("*",), ("SPECIAL-USE",))),
        ('t2 list "" "*" return (special-use)', c.List("t2", "", ("*",), (), ("SPECIAL-USE",))),
        ('a LIST () "" % RETURN ()', c.List("a", "", ("%",))),
        ('a LIST "" "Entw&APw-rfe/%"', c.List("a", "", ("Entwürfe/%",))),
    ],
)
def test_list(line: str, expected: c.List) -> None:
    assert parse(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        'a LIST (RECURSIVEMATCH) "" %',  # RFC 5258: not on its own
        'a LIST (REMOTE RECURSIVEMATCH) "" %',
        'a LIST (BOGUS) "" %',
        'a LIST "" % RETURN (BOGUS)',
        'a LIST "" % (CHILDREN)',
        'a LIST "" ()',
        'a LIST ""',
    ],
)
def test_list_errors(line: str) -> None:
    assert bad(line).tag == "a"


def test_lsub() -> None:
    assert parse('A002 LSUB "#news." "comp.mail.*"') == c.Lsub("A002", "#news.", "comp.mail.*")


def test_status_rfc_example() -> None:
    assert parse("A042 STATUS blurdybloop (UIDNEXT MESSAGES)") == c.Status(
        "A042", "blurdybloop", ("UIDNEXT", "MESSAGES")
    )


def test_status_extension_items() -> None:
    line = (
        "a STATUS INBOX (messages uidnext uidvalidity unseen deleted size highestmodseq "
        "appendlimit mailboxid)"
    )
    result = parse(line)
    assert isinstance(result, c.Status)
    assert result.items[-3:] == ("HIGHESTMODSEQ", "APPENDLIMIT", "MAILBOXID")


@pytest.mark.parametrize("line", ["a STATUS INBOX ()", "a STATUS INBOX (BOGUS)", "a STATUS INBOX"])
def test_status_errors(line: str) -> None:
    assert bad(line).tag == "a"


# --- APPEND -------------------------------------------------------------------------------------

RFC_MESSAGE = (
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
    b"From: Fred Foobar <foobar@Blurdybloop.example>\r\n"
    b"Subject: afternoon meeting\r\n"
    b"\r\n"
    b"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
)


def test_append_rfc_example() -> None:
    head = b'A003 APPEND saved-messages (\\Seen) "07-Feb-1994 21:52:25 -0800" {%d}\r\n'
    data = head % len(RFC_MESSAGE) + RFC_MESSAGE + b"\r\n"
    date = dt.datetime(1994, 2, 7, 21, 52, 25, tzinfo=dt.timezone(dt.timedelta(hours=-8)))
    assert events(data) == [
        c.Append("A003", "saved-messages", (c.AppendMessage(RFC_MESSAGE, ("\\Seen",), date),))
    ]


def test_append_with_only_the_literal() -> None:
    assert events(b"a APPEND INBOX {3}\r\nabc\r\n") == [
        c.Append("a", "INBOX", (c.AppendMessage(b"abc"),))
    ]


def test_append_space_padded_day_in_date_time() -> None:
    data = b'a APPEND INBOX " 7-Feb-1994 21:52:25 +0000" {1}\r\nx\r\n'
    [append] = events(data)
    assert isinstance(append, c.Append)
    assert append.messages[0].date == dt.datetime(1994, 2, 7, 21, 52, 25, tzinfo=dt.timezone.utc)


def test_multiappend_rfc3502_example() -> None:
    data = b"A003 APPEND saved-messages (\\Seen) {3}\r\none (\\Seen) {3}\r\ntwo {5+}\r\nthree\r\n"
    assert events(data) == [
        c.Append(
            "A003",
            "saved-messages",
            (
                c.AppendMessage(b"one", ("\\Seen",)),
                c.AppendMessage(b"two", ("\\Seen",)),
                c.AppendMessage(b"three"),
            ),
        )
    ]


def test_append_literal8_for_binary_content() -> None:
    # RFC 3516: ~{n} may carry NUL
    assert events(b"a APPEND INBOX ~{3}\r\na\x00b\r\n") == [
        c.Append("a", "INBOX", (c.AppendMessage(b"a\x00b", binary=True),))
    ]


def test_append_utf8_wrapper() -> None:
    # RFC 6855
    assert events(b"a APPEND INBOX UTF8 (~{2}\r\n\xc3\xa4)\r\n") == [
        c.Append("a", "INBOX", (c.AppendMessage(b"\xc3\xa4", binary=True, utf8=True),))
    ]


@pytest.mark.parametrize(
    "data",
    [
        b"a APPEND INBOX\r\n",
        b"a APPEND INBOX (\\Seen)\r\n",
        b'a APPEND INBOX "7-Feb-1994 21:52:25 -0800" {1+}\r\nx\r\n',  # day must be 2 wide
        b'a APPEND INBOX "31-Feb-1994 21:52:25 -0800" {1+}\r\nx\r\n',  # no such day
        b'a APPEND INBOX "07-Foo-1994 21:52:25 -0800" {1+}\r\nx\r\n',
        b'a APPEND INBOX "07-Feb-1994 21:52:25 -0860" {1+}\r\nx\r\n',
        b"a APPEND INBOX {1+}\r\nx junk\r\n",
        b"a APPEND INBOX UTF8 ({1+}\r\nx)\r\n",  # must be literal8
        b"a APPEND INBOX (\\Seen {1+}\r\nx\r\n",
    ],
)
def test_append_errors(data: bytes) -> None:
    # non-synchronizing literals, so the whole command arrives before it is judged
    [error] = events(data)
    assert isinstance(error, ParseError) and error.tag == "a"


# --- SEARCH -------------------------------------------------------------------------------------

FEB_1994 = dt.date(1994, 2, 1)


def test_search_rfc_example() -> None:
    assert parse('A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"') == c.Search(
        "A282",
        (
            c.SearchFlagKey("FLAGGED"),
            c.SearchDate("SINCE", FEB_1994),
            c.SearchNot(c.SearchText("FROM", "Smith")),
        ),
    )


def test_search_charset_with_literal() -> None:
    data = "A284 SEARCH CHARSET UTF-8 TEXT {5}\r\nJörg\r\n".encode()
    assert events(data) == [c.Search("A284", (c.SearchText("TEXT", "Jörg"),), "UTF-8")]


def test_search_string_in_another_charset_is_decoded() -> None:
    data = b"A SEARCH CHARSET ISO-8859-1 SUBJECT {4}\r\nJ\xf6rg\r\n"
    assert events(data) == [c.Search("A", (c.SearchText("SUBJECT", "Jörg"),), "ISO-8859-1")]


def test_search_with_unknown_charset_still_parses_for_badcharset() -> None:
    result = parse("A SEARCH CHARSET X-UNKNOWN TEXT abc")
    assert isinstance(result, c.Search) and result.charset == "X-UNKNOWN"


def test_esearch_return_options() -> None:
    result = parse('A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"')
    assert isinstance(result, c.Search)
    assert result.return_options == ("MIN", "COUNT") and len(result.criteria) == 3


def test_esearch_empty_return_means_all() -> None:
    result = parse("A283 UID SEARCH RETURN () 1:100")
    assert result == c.Search("A283", (c.SearchSequence(seq("1:100")),), None, (), uid=True)


def test_searchres_save_and_dollar() -> None:
    # RFC 5182
    assert parse("A282 SEARCH RETURN (SAVE) FLAGGED") == c.Search(
        "A282", (c.SearchFlagKey("FLAGGED"),), None, ("SAVE",)
    )
    fetch = parse("A283 UID FETCH $ (UID FLAGS)")
    assert isinstance(fetch, c.Fetch) and fetch.sequence.saved
    assert parse("A284 SEARCH UID $ SEEN") == c.Search(
        "A284", (c.SearchUid(SequenceSet(saved=True)), c.SearchFlagKey("SEEN"))
    )


def test_search_modseq_rfc7162_example() -> None:
    assert parse('a SEARCH MODSEQ "/flags/\\\\draft" all 620162338') == c.Search(
        "a", (c.SearchModSeq(620162338, "/flags/\\draft", "ALL"),)
    )
    assert parse("a SEARCH MODSEQ 0") == c.Search("a", (c.SearchModSeq(0),))


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("ALL", c.SearchFlagKey("ALL")),
        ("answered", c.SearchFlagKey("ANSWERED")),
        ("DELETED", c.SearchFlagKey("DELETED")),
        ("DRAFT", c.SearchFlagKey("DRAFT")),
        ("FLAGGED", c.SearchFlagKey("FLAGGED")),
        ("NEW", c.SearchFlagKey("NEW")),
        ("OLD", c.SearchFlagKey("OLD")),
        ("RECENT", c.SearchFlagKey("RECENT")),
        ("SEEN", c.SearchFlagKey("SEEN")),
        ("UNANSWERED", c.SearchFlagKey("UNANSWERED")),
        ("UNDELETED", c.SearchFlagKey("UNDELETED")),
        ("UNDRAFT", c.SearchFlagKey("UNDRAFT")),
        ("UNFLAGGED", c.SearchFlagKey("UNFLAGGED")),
        ("UNSEEN", c.SearchFlagKey("UNSEEN")),
        ("SAVEDATESUPPORTED", c.SearchFlagKey("SAVEDATESUPPORTED")),
        ("BCC x", c.SearchText("BCC", "x")),
        ("BODY x", c.SearchText("BODY", "x")),
        ("CC x", c.SearchText("CC", "x")),
        ('FROM "a b"', c.SearchText("FROM", "a b")),
        ("SUBJECT x", c.SearchText("SUBJECT", "x")),
        ("TEXT x", c.SearchText("TEXT", "x")),
        ("TO x", c.SearchText("TO", "x")),
        ('HEADER Message-ID "<a@b>"', c.SearchHeader("Message-ID", "<a@b>")),
        ('HEADER X-Spam ""', c.SearchHeader("X-Spam", "")),
        ("KEYWORD $Forwarded", c.SearchKeyword("$Forwarded")),
        ("UNKEYWORD $Junk", c.SearchKeyword("$Junk", present=False)),
        ("BEFORE 1-Feb-1994", c.SearchDate("BEFORE", FEB_1994)),
        ('ON "01-feb-1994"', c.SearchDate("ON", FEB_1994)),
        ("SINCE 1-Feb-1994", c.SearchDate("SINCE", FEB_1994)),
        ("SENTBEFORE 1-Feb-1994", c.SearchDate("SENTBEFORE", FEB_1994)),
        ("SENTON 1-Feb-1994", c.SearchDate("SENTON", FEB_1994)),
        ("SENTSINCE 1-Feb-1994", c.SearchDate("SENTSINCE", FEB_1994)),
        ("SAVEDBEFORE 1-Feb-1994", c.SearchDate("SAVEDBEFORE", FEB_1994)),
        ("SAVEDON 1-Feb-1994", c.SearchDate("SAVEDON", FEB_1994)),
        ("SAVEDSINCE 1-Feb-1994", c.SearchDate("SAVEDSINCE", FEB_1994)),
        ("LARGER 1024", c.SearchSize("LARGER", 1024)),
        ("SMALLER 9999999999", c.SearchSize("SMALLER", 9999999999)),  # number64
        ("OLDER 3600", c.SearchWithin("OLDER", 3600)),
        ("YOUNGER 60", c.SearchWithin("YOUNGER", 60)),
        ("EMAILID M6d99ac3275bb4e", c.SearchObjectId("EMAILID", "M6d99ac3275bb4e")),
        ("THREADID T64b478a75b7ea9", c.SearchObjectId("THREADID", "T64b478a75b7ea9")),
        ("UID 1:*", c.SearchUid(seq("1:*"))),
        ("2,4:7", c.SearchSequence(seq("2,4:7"))),
        ("*", c.SearchSequence(seq("*"))),
        ("NOT SEEN", c.SearchNot(c.SearchFlagKey("SEEN"))),
        ("OR SEEN FLAGGED", c.SearchOr(c.SearchFlagKey("SEEN"), c.SearchFlagKey("FLAGGED"))),
        (
            "(SEEN FROM x)",
            c.SearchAnd((c.SearchFlagKey("SEEN"), c.SearchText("FROM", "x"))),
        ),
        (
            "OR (FROM a TO b) NOT (SEEN)",
            c.SearchOr(
                c.SearchAnd((c.SearchText("FROM", "a"), c.SearchText("TO", "b"))),
                c.SearchNot(c.SearchAnd((c.SearchFlagKey("SEEN"),))),
            ),
        ),
    ],
)
def test_every_search_key(text: str, key: c.SearchKey) -> None:
    assert parse(f"a SEARCH {text}") == c.Search("a", (key,))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "BOGUS",
        "FROM",
        "SINCE 31-Feb-1994",
        "SINCE 1-Foo-1994",
        "SINCE 1994-02-01",
        "LARGER x",
        "LARGER 99999999999999999999999",
        "OR SEEN",
        "NOT",
        "(SEEN",
        "SEEN)",
        "()",
        "0",
        "1:",
        "KEYWORD \\Seen",
        'MODSEQ "/flags/\\\\Seen" bogus 5',
        'MODSEQ "/other" all 5',
        "OLDER 0",
        "EMAILID a*b",
        "CHARSET UTF-8",
        "RETURN (BOGUS) ALL",
        "SEEN  FLAGGED",
    ],
)
def test_search_errors(text: str) -> None:
    assert bad(f"a SEARCH {text}").tag == "a"


def test_deeply_nested_search_is_refused_not_recursed() -> None:
    error = bad("a SEARCH " + "NOT " * 5000 + "SEEN")
    assert "nested" in error.text
    assert bad("a SEARCH " + "(" * 5000 + "SEEN" + ")" * 5000).tag == "a"


# --- FETCH --------------------------------------------------------------------------------------


def fetch_items(text: str) -> tuple[c.FetchItem, ...]:
    result = parse(f"a FETCH 1 {text}")
    assert isinstance(result, c.Fetch), result
    return result.items


@pytest.mark.parametrize("macro", ["ALL", "FAST", "FULL", "all"])
def test_fetch_macros_expand(macro: str) -> None:
    assert fetch_items(macro) == c.FETCH_MACROS[macro.upper()]


def test_fetch_macro_inside_a_list_is_bad() -> None:
    assert bad("a FETCH 1 (ALL)").tag == "a"


@pytest.mark.parametrize(
    ("text", "item"),
    [
        ("ENVELOPE", c.FetchAtt("ENVELOPE")),
        ("FLAGS", c.FetchAtt("FLAGS")),
        ("INTERNALDATE", c.FetchAtt("INTERNALDATE")),
        ("RFC822", c.FetchAtt("RFC822")),
        ("RFC822.HEADER", c.FetchAtt("RFC822.HEADER")),
        ("RFC822.SIZE", c.FetchAtt("RFC822.SIZE")),
        ("RFC822.TEXT", c.FetchAtt("RFC822.TEXT")),
        ("BODY", c.FetchAtt("BODY")),
        ("BODYSTRUCTURE", c.FetchAtt("BODYSTRUCTURE")),
        ("UID", c.FetchAtt("UID")),
        ("MODSEQ", c.FetchAtt("MODSEQ")),
        ("SAVEDATE", c.FetchAtt("SAVEDATE")),
        ("EMAILID", c.FetchAtt("EMAILID")),
        ("THREADID", c.FetchAtt("THREADID")),
        ("body[]", c.FetchBody()),
        ("BODY.PEEK[]", c.FetchBody(peek=True)),
        ("BODY[HEADER]", c.FetchBody(c.Section(text="HEADER"))),
        ("BODY[TEXT]", c.FetchBody(c.Section(text="TEXT"))),
        ("BODY[1]", c.FetchBody(c.Section((1,)))),
        ("BODY[1.2.3]", c.FetchBody(c.Section((1, 2, 3)))),
        ("BODY[4.2.MIME]", c.FetchBody(c.Section((4, 2), "MIME"))),
        ("BODY[3.HEADER]", c.FetchBody(c.Section((3,), "HEADER"))),
        ("BODY[1.TEXT]", c.FetchBody(c.Section((1,), "TEXT"))),
        (
            "BODY[HEADER.FIELDS (DATE FROM)]",
            c.FetchBody(c.Section((), "HEADER.FIELDS", ("DATE", "FROM"))),
        ),
        (
            'BODY.PEEK[2.header.fields.not (Received "X-Spam")]',
            c.FetchBody(c.Section((2,), "HEADER.FIELDS.NOT", ("Received", "X-Spam")), peek=True),
        ),
        ("BODY[]<0.2048>", c.FetchBody(partial=c.Partial(0, 2048))),
        ("BODY.PEEK[TEXT]<100.50>", c.FetchBody(c.Section(text="TEXT"), c.Partial(100, 50), True)),
        ("BINARY[1]", c.FetchBinary((1,))),
        ("BINARY[]", c.FetchBinary(())),
        ("BINARY.PEEK[1.2]<0.10>", c.FetchBinary((1, 2), c.Partial(0, 10), peek=True)),
        ("BINARY.SIZE[3]", c.FetchBinarySize((3,))),
        ("PREVIEW", c.FetchPreview()),
        ("PREVIEW (LAZY)", c.FetchPreview(lazy=True)),
    ],
)
def test_every_fetch_attribute(text: str, item: c.FetchItem) -> None:
    assert fetch_items(text) == (item,)
    assert fetch_items(f"({text} UID)") == (item, c.FetchAtt("UID"))


def test_fetch_rfc_example() -> None:
    assert parse("A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])") == c.Fetch(
        "A654",
        seq("2:4"),
        (c.FetchAtt("FLAGS"), c.FetchBody(c.Section((), "HEADER.FIELDS", ("DATE", "FROM")))),
    )


def test_fetch_changedsince_and_vanished() -> None:
    # RFC 7162 §3.2.6
    result = parse("A UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)")
    assert result == c.Fetch(
        "A", seq("300:500"), (c.FetchAtt("FLAGS"),), changedsince=12345, vanished=True, uid=True
    )


def test_fetch_single_attribute_with_modifier() -> None:
    result = parse("s100 UID FETCH 1:* FLAGS (CHANGEDSINCE 12345)")
    assert isinstance(result, c.Fetch) and result.changedsince == 12345


def test_preview_followed_by_fetch_modifiers() -> None:
    result = parse("a FETCH 1 PREVIEW (CHANGEDSINCE 5)")
    assert result == c.Fetch("a", seq("1"), (c.FetchPreview(),), changedsince=5)


def test_response_names_drop_peek_and_partial_length() -> None:
    body = c.FetchBody(c.Section((1,), "HEADER.FIELDS", ("From", "X Y")), c.Partial(10, 20), True)
    assert body.response_name() == 'BODY[1.HEADER.FIELDS (From "X Y")]<10>'
    assert c.FetchBinary((1, 2), None, True).response_name() == "BINARY[1.2]"
    assert c.FetchBinarySize(()).response_name() == "BINARY.SIZE[]"


@pytest.mark.parametrize(
    "text",
    [
        "1 ()",
        "1 (FLAGS",
        "1 FLAGS)",
        "1 BOGUS",
        "1 BODY[",
        "1 BODY[MIME]",  # MIME needs a part number
        "1 BODY[0]",
        "1 BODY[1.]",
        "1 BODY[HEADER.FIELDS]",
        "1 BODY[HEADER.FIELDS ()]",
        "1 BODY[]<0>",
        "1 BODY[]<0.0>",
        "1 BODY.PEEK",
        "1 BINARY",
        "1 BINARY[TEXT]",
        "1 FLAGS (VANISHED)",  # RFC 7162: VANISHED only with UID FETCH
        "1 FLAGS (CHANGEDSINCE 0)",
        "1 FLAGS (CHANGEDSINCE 1 VANISHED)",
        "1 FLAGS (BOGUS)",
        "0 FLAGS",
        "1: FLAGS",
        "*:*x FLAGS",
        "1,,2 FLAGS",
        "FLAGS",
        "1",
    ],
)
def test_fetch_errors(text: str) -> None:
    assert bad(f"a FETCH {text}").tag == "a"


# --- STORE, COPY, MOVE, EXPUNGE ------------------------------------------------------------------


def test_store_rfc_example() -> None:
    assert parse("A003 STORE 2:4 +FLAGS (\\Deleted)") == c.Store(
        "A003", seq("2:4"), "+", ("\\Deleted",)
    )


def test_store_flags_without_parentheses_and_silent() -> None:
    assert parse("a STORE 1 flags.silent \\seen $Label1") == c.Store(
        "a", seq("1"), "", ("\\Seen", "$Label1"), silent=True
    )


def test_store_unchangedsince_rfc7162_example() -> None:
    result = parse("d105 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)")
    assert result == c.Store(
        "d105", seq("7,5,9"), "+", ("\\Deleted",), True, unchangedsince=320162338
    )


def test_store_remove_all_and_uid() -> None:
    assert parse("a UID STORE 5 -FLAGS ()") == c.Store("a", seq("5"), "-", (), uid=True)


@pytest.mark.parametrize(
    "text",
    [
        "1 +FLAGS",
        "1 *FLAGS (\\Seen)",
        "1 FLAGS (\\*)",
        "1 FLAGS (\\Seen",
        "1 (UNCHANGEDSINCE) FLAGS ()",
        "1 (BOGUS 1) FLAGS ()",
        "1 X-GM-LABELS (a)",
    ],
)
def test_store_errors(text: str) -> None:
    assert bad(f"a STORE {text}").tag == "a"


def test_copy_move_and_uid_forms() -> None:
    assert parse("A003 COPY 2:4 MEETING") == c.Copy("A003", seq("2:4"), "MEETING")
    assert parse('a UID MOVE 42:69 "Trash"') == c.Move("a", seq("42:69"), "Trash", uid=True)
    assert parse("a UID COPY 1 INBOX") == c.Copy("a", seq("1"), "INBOX", uid=True)


def test_uid_expunge() -> None:
    assert parse("A202 UID EXPUNGE 3000:3002") == c.UidExpunge("A202", seq("3000:3002"))


@pytest.mark.parametrize("line", ["a UID NOOP", "a UID", "a UID EXPUNGE", "a UID LOGIN x y"])
def test_uid_with_a_command_that_has_no_uid_form_is_bad(line: str) -> None:
    assert bad(line).tag == "a"


# --- SORT, THREAD --------------------------------------------------------------------------------


def test_sort_rfc5256_examples() -> None:
    assert parse("A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994") == c.Sort(
        "A282", (c.SortCriterion("SUBJECT"),), "UTF-8", (c.SearchDate("SINCE", FEB_1994),)
    )
    assert parse("C283 UID SORT (SUBJECT REVERSE DATE) UTF-8 ALL") == c.Sort(
        "C283",
        (c.SortCriterion("SUBJECT"), c.SortCriterion("DATE", reverse=True)),
        "UTF-8",
        (c.SearchFlagKey("ALL"),),
        uid=True,
    )


def test_esort_return_and_display_keys() -> None:
    result = parse("a UID SORT RETURN (MIN COUNT) (DISPLAYFROM) US-ASCII UNSEEN")
    assert isinstance(result, c.Sort)
    assert result.return_options == ("MIN", "COUNT")
    assert result.criteria == (c.SortCriterion("DISPLAYFROM"),)


@pytest.mark.parametrize(
    "text",
    ["() UTF-8 ALL", "(SUBJECT) ALL", "(BOGUS) UTF-8 ALL", "(REVERSE) UTF-8 ALL", "(DATE) UTF-8"],
)
def test_sort_errors(text: str) -> None:
    assert bad(f"a SORT {text}").tag == "a"


def test_thread_rfc5256_example() -> None:
    assert parse("A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000") == c.Thread(
        "A283", "ORDEREDSUBJECT", "UTF-8", (c.SearchDate("SINCE", dt.date(2000, 3, 5)),)
    )
    assert parse("A284 UID THREAD references US-ASCII ALL") == c.Thread(
        "A284", "REFERENCES", "US-ASCII", (c.SearchFlagKey("ALL"),), uid=True
    )


# --- ID, QUOTA, COMPRESS, METADATA ---------------------------------------------------------------


def test_id_rfc2971_example() -> None:
    line = 'a023 ID ("name" "sodr" "version" "19.34" "vendor" "Pink Floyd Music Limited")'
    assert parse(line) == c.Id(
        "a023", (("name", "sodr"), ("version", "19.34"), ("vendor", "Pink Floyd Music Limited"))
    )


def test_id_nil_and_nil_values() -> None:
    assert parse("a ID NIL") == c.Id("a", None)
    assert parse('a ID ("name" NIL)') == c.Id("a", (("name", None),))
    assert parse("a ID ()") == c.Id("a", ())


@pytest.mark.parametrize("text", ["", '("name")', '("name" "x"', "FOO"])
def test_id_errors(text: str) -> None:
    assert bad(f"a ID {text}").tag == "a"


def test_quota_commands() -> None:
    assert parse('G0001 GETQUOTA "!partition/sda4"') == c.GetQuota("G0001", "!partition/sda4")
    assert parse("A003 GETQUOTAROOT INBOX") == c.GetQuotaRoot("A003", "INBOX")
    assert parse('S0000 SETQUOTA "#user/alice" (storage 510 MESSAGE 100)') == c.SetQuota(
        "S0000", "#user/alice", (("STORAGE", 510), ("MESSAGE", 100))
    )


def test_compress() -> None:
    assert parse("a COMPRESS deflate") == c.Compress("a", "DEFLATE")
    assert bad("a COMPRESS").tag == "a"


def test_getmetadata_rfc5464_examples() -> None:
    assert parse('C: a GETMETADATA "" /private/comment'.removeprefix("C: ")) == c.GetMetadata(
        "a", "", ("/private/comment",)
    )
    assert parse(
        "a GETMETADATA (MAXSIZE 1024 DEPTH infinity) INBOX (/shared/comment /private/comment)"
    ) == c.GetMetadata(
        "a", "INBOX", ("/shared/comment", "/private/comment"), maxsize=1024, depth="infinity"
    )


def test_setmetadata_values() -> None:
    data = (
        b'a SETMETADATA INBOX (/private/comment "My comment" /shared/x NIL '
        b"/shared/y ~{2}\r\n\x00\x01)\r\n"
    )
    assert events(data) == [
        c.SetMetadata(
            "a",
            "INBOX",
            (("/private/comment", b"My comment"), ("/shared/x", None), ("/shared/y", b"\x00\x01")),
        )
    ]


# --- general syntax errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "tag"),
    [
        ("a1 FROBNICATE", "a1"),
        ("a1", "a1"),
        ("a1 ", "a1"),
        ("+a1 NOOP", None),
        ("a+1 NOOP", None),
        ("(a1 NOOP", None),
        ("a1 LOGIN", "a1"),
        ("a1 LOGIN bob", "a1"),
        ('a1 LOGIN "bob pw', "a1"),
        ('a1 LOGIN "bob\\x" pw', "a1"),  # only \" and \\ may be escaped
        ("a1  NOOP", "a1"),
        ("a1 SELECT", "a1"),
        ("a1 RENAME a", "a1"),
        ("a1 COPY 1:* ", "a1"),
        ("   ", None),
        ("a1 LOGIN {5}x", "a1"),  # literal marker not at the end of the line
    ],
)
def test_malformed_commands(line: str, tag: str | None) -> None:
    assert bad(line).tag == tag


def test_nul_is_refused_in_quoted_string_and_string_literal() -> None:
    assert bad(b'a LOGIN "b\x00b" pw').tag == "a"
    [error] = events(b"a LOGIN {3}\r\nb\x00b pw\r\n")
    assert isinstance(error, ParseError) and error.tag == "a"


def test_literal8_where_a_string_is_expected_is_bad_before_upload() -> None:
    parser = ImapCommandParser()
    parser.receive(b"a LOGIN ~{3}\r\n")
    [error] = parser.events()
    assert isinstance(error, ParseError) and error.tag == "a"
    assert not parser.awaiting_literal


# --- traffic as real clients send it -------------------------------------------------------------

THUNDERBIRD = [
    "1 capability",
    "2 authenticate PLAIN",
    '3 ID ("name" "Thunderbird" "version" "115.6.0")',
    '4 select "INBOX" (CONDSTORE)',
    '5 getquotaroot "INBOX"',
    "6 UID fetch 1:* (FLAGS)",
    "7 UID fetch 1:* (FLAGS) (CHANGEDSINCE 4)",
    "8 UID fetch 4 (UID RFC822.SIZE FLAGS BODY.PEEK[])",
    "9 uid store 3 +Flags (\\Seen)",
    '10 uid copy 3 "Trash"',
    '11 list (subscribed) "" "*" return (special-use)',
    '12 lsub "" "*"',
    "13 IDLE",
    "14 expunge",
    "15 UID fetch 3:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject "
    "Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type "
    "Reply-To)])",
    "16 uid store 3 +FLAGS ($Forwarded)",
    '17 uid move 5 "Archives/2024"',
    "18 UID fetch 3 (UID RFC822.SIZE BODY.PEEK[1.2]<0.32768>)",
]
APPLE_MAIL = [
    "1.1 CAPABILITY",
    '2.1 ID ("name" "Mac OS X Mail" "version" "16.0 (3731.500.231)" "os" "Mac OS X" '
    '"os-version" "13.4 (22F66)" "vendor" "Apple Inc.")',
    '3.1 LIST "" ""',
    "4.1 ENABLE QRESYNC",
    "5.1 STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)",
    "6.1 SELECT INBOX (QRESYNC (1700000000 12345 1:300))",
    "7.1 UID FETCH 1:* (FLAGS UID) (CHANGEDSINCE 12345 VANISHED)",
    "8.1 UID FETCH 290:300 (BODYSTRUCTURE BODY.PEEK[HEADER] INTERNALDATE RFC822.SIZE FLAGS)",
    "9.1 UID FETCH 299 (BODY.PEEK[2]<0.4096>)",
    '10.1 UID MOVE 299 "Deleted Messages"',
    "11.1 UID SEARCH UNDELETED SINCE 1-Jan-2024",
    "12.1 NOOP",
]
OUTLOOK = [
    "A001 CAPABILITY",
    'A002 LOGIN "someone@example.com" "p@ss word"',
    'A003 LIST "" "*"',
    'A004 SELECT "INBOX"',
    "A005 UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE FROM "
    "SUBJECT CONTENT-TYPE X-MS-TNEF-Correlator CONTENT-CLASS IMPORTANCE PRIORITY X-PRIORITY "
    "THREAD-TOPIC REPLY-TO)])",
    "A006 UID FETCH 12 BODY.PEEK[]",
    "A007 UID STORE 12 +FLAGS.SILENT (\\Seen)",
    'A008 UID COPY 12 "Deleted Items"',
    "A009 EXPUNGE",
    "A010 LOGOUT",
]
MUTT = [
    "a0001 CAPABILITY",
    "a0002 AUTHENTICATE PLAIN",
    'a0003 LIST "" ""',
    'a0004 LSUB "" "*"',
    'a0005 STATUS "INBOX" (MESSAGES)',
    'a0006 SELECT "INBOX"',
    "a0007 FETCH 1:5 (UID FLAGS)",
    "a0008 UID FETCH 1:4294967295 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS "
    "(DATE FROM SENDER SUBJECT TO CC MESSAGE-ID REFERENCES CONTENT-TYPE CONTENT-DESCRIPTION "
    "IN-REPLY-TO REPLY-TO LINES LIST-POST X-LABEL X-ORIGINAL-TO)])",
    "a0009 UID STORE 3 +FLAGS.SILENT (\\Seen)",
    'a0010 UID MOVE 3 "Archive"',
    "a0011 UID SEARCH OR OR FROM x SUBJECT x TO x",
    "a0012 CLOSE",
]


@pytest.mark.parametrize("line", THUNDERBIRD + APPLE_MAIL + OUTLOOK + MUTT)
def test_real_client_commands_parse(line: str) -> None:
    result = parse(line)
    assert not isinstance(result, ParseError), result
    assert result.tag == line.split(" ", 1)[0]  # type: ignore[attr-defined]


def test_thunderbird_header_fetch_keeps_field_names_as_sent() -> None:
    result = parse(THUNDERBIRD[14])
    assert isinstance(result, c.Fetch) and result.uid and result.sequence == seq("3:*")
    body = result.items[-1]
    assert isinstance(body, c.FetchBody) and body.peek
    assert body.section.fields[:3] == ("From", "To", "Cc") and len(body.section.fields) == 14


def test_outlook_single_body_peek_without_list() -> None:
    assert parse(OUTLOOK[5]) == c.Fetch("A006", seq("12"), (c.FetchBody(peek=True),), uid=True)
