"""SEARCH (every kind of key), ESEARCH, SEARCHRES, SORT and THREAD over one mailbox, set up
once for the module: the queries only read it."""

from __future__ import annotations

import imaplib
import re

import pytest

from tests.harness import RunningServer, server_settings
from tests.imap.conftest import PASSWORD, USER, RawImap, deliver, message


@pytest.fixture(scope="module")
def search_server(tmp_path_factory):
    srv = RunningServer(server_settings(tmp_path_factory.mktemp("imap-search") / "data")).start()
    srv.add_user(USER, PASSWORD)
    deliver(srv, USER, message("Lunch on Friday", body="let us eat pizza\r\n", sender="bob@example.com"))
    deliver(srv, USER, message("Re: Lunch on Friday", body="yes please\r\n", sender="carol@example.org",
                               date="Tue, 3 Nov 2026 10:00:00 +0000"))
    deliver(srv, USER, message("Report", body="numbers inside\r\n", sender="dave@example.net",
                               extra="X-Priority: 1\r\n", date="Sun, 1 Nov 2026 10:00:00 +0000"))
    client = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=10)
    client.login(USER, PASSWORD)
    client.select("INBOX")  # claims \Recent: later sessions see none
    client.store("2", "+FLAGS", "(\\Seen $Work)")
    client.logout()
    yield srv
    srv.stop()


@pytest.fixture
def searchable(search_server):
    client = imaplib.IMAP4("127.0.0.1", search_server.port("imap"), timeout=10)
    client.login(USER, PASSWORD)
    client.select("INBOX", readonly=True)
    yield client
    client.logout()


@pytest.fixture
def raw_search(search_server):
    client = RawImap(search_server.port("imap"))
    client.login()
    client.command(b"EXAMINE INBOX")
    yield client
    client.close()


# --------------------------------------------------------------------------


@pytest.mark.parametrize("criteria, expected", [
    (("ALL",), b"1 2 3"),
    (("SUBJECT", "lunch"), b"1 2"),
    (("FROM", "carol"), b"2"),
    (("BODY", "PIZZA"), b"1"),
    (("TEXT", "X-Priority"), b"3"),
    (("HEADER", "X-Priority", '""'), b"3"),
    (("SEEN",), b"2"),
    (("UNSEEN", "NOT", "FROM", "dave"), b"1"),
    (("OR", "FROM", "dave", "BODY", "yes"), b"2 3"),
    (("KEYWORD", "$Work"), b"2"),
    (("SENTBEFORE", "2-Nov-2026"), b"3"),
    (("SENTON", "3-Nov-2026"), b"2"),
    (("2:3", "UID", "1:2"), b"2"),
    (("LARGER", "1"), b"1 2 3"),
    (("SMALLER", "10"), b""),
    (("NEW",), b""),  # \\Recent went to the first session
    (("OLD",), b"1 2 3"),
    (("YOUNGER", "3600"), b"1 2 3"),
])
def test_search_keys(searchable, criteria, expected):
    typ, data = searchable.search(None, *criteria)
    assert typ == "OK" and data == [expected]


def test_search_with_unknown_charset_says_badcharset(searchable):
    typ, data = searchable.search("X-NOPE", "ALL")
    assert typ == "NO" and data[0].startswith(b"[BADCHARSET")


def test_esearch_and_searchres(raw_search):
    client = raw_search
    assert client.command(b"SEARCH RETURN (MIN MAX COUNT) SUBJECT lunch")[0] == b'* ESEARCH (TAG "t") MIN 1 MAX 2 COUNT 2\r\n'
    assert client.command(b"UID SEARCH RETURN () ALL")[0] == b'* ESEARCH (TAG "t") UID ALL 1:3\r\n'
    assert client.command(b"SEARCH RETURN (SAVE) FROM carol") == [b"t OK completed\r\n"]
    assert b"UID 2" in b"".join(client.command(b"FETCH $ (UID)"))


def test_search_modseq_reports_highest(raw_search):
    client = raw_search
    line = client.command(b"SEARCH MODSEQ 1")[0]
    assert re.match(rb"\* SEARCH 1 2 3 \(MODSEQ \d+\)", line), line


def test_sort_and_thread(raw_search):
    client = raw_search
    assert client.command(b"SORT (SUBJECT) UTF-8 ALL")[0] == b"* SORT 1 2 3\r\n"
    assert client.command(b"SORT (REVERSE DATE) UTF-8 ALL")[0] == b"* SORT 2 1 3\r\n"
    assert client.command(b"SORT (FROM) UTF-8 ALL")[0] == b"* SORT 1 2 3\r\n"
    assert client.command(b"THREAD ORDEREDSUBJECT UTF-8 ALL")[0] == b"* THREAD (3)(1 2)\r\n"
    assert client.command(b"THREAD REFERENCES UTF-8 ALL")[0] == b"* THREAD (3)(1 2)\r\n"  # RFC 5256 §2.4 step 5
