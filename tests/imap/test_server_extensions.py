"""IMAP extensions and revisions over real sockets: IMAP4rev2 after ENABLE, QUOTA,
COMPRESS=DEFLATE, BINARY, MULTIAPPEND, UTF8=ACCEPT, implicit CONDSTORE."""

from __future__ import annotations

import re
import zlib

import pytest

from postbote.imap.mailboxes import pattern_regex
from postbote.imap.messages import split_flags
from postbote.store.types import Flag
from tests.imap.conftest import PASSWORD, USER, deliver, message


def test_imap4rev2_after_enable_has_no_recent_and_answers_esearch(server, raw):
    deliver(server, USER, message("one"))
    client = raw()
    client.command(b"ENABLE IMAP4rev2")
    lines = client.command(b"SELECT INBOX")
    assert not any(b"RECENT" in line for line in lines)
    assert b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n' in lines
    assert client.command(b"SEARCH ALL")[0] == b'* ESEARCH (TAG "t") ALL 1\r\n'


def test_quota_of_an_account_with_a_limit(server, raw):
    server.add_user("quota@localhost", PASSWORD, quota=10 * 1024 * 1024)
    deliver(server, "quota@localhost", message("x", body="a" * 4096))
    client = raw(login=False)
    client.login("quota@localhost")
    lines = client.command(b"GETQUOTAROOT INBOX")
    assert lines[0] == b'* QUOTAROOT "INBOX" ""\r\n'
    assert lines[1] == b'* QUOTA "" (STORAGE 4 10240)\r\n'
    assert client.command(b'SETQUOTA "" (STORAGE 1)')[-1].startswith(b"t NO [NOPERM]")


def test_compress_deflate(raw):
    client = raw()
    assert client.command(b"COMPRESS DEFLATE")[-1].startswith(b"t OK")
    client.sock.settimeout(0.3)
    with pytest.raises(TimeoutError):  # no empty deflate block before any response (mbsync)
        client.sock.recv(100)
    client.sock.settimeout(10)
    deflate, inflate = zlib.compressobj(6, zlib.DEFLATED, -15), zlib.decompressobj(-15)
    client.sock.sendall(deflate.compress(b"c1 NOOP\r\nc2 SELECT INBOX\r\n") + deflate.flush(zlib.Z_SYNC_FLUSH))
    received = b""
    while b"c2 OK" not in received:
        received += inflate.decompress(client.sock.recv(4096))
    assert b"c1 OK" in received and b"* 0 EXISTS" in received


def test_pattern_regex_matches_inbox_case_insensitively():
    assert pattern_regex("inbox").fullmatch("INBOX")
    assert pattern_regex("a/%").fullmatch("a/b") and not pattern_regex("a/%").fullmatch("a/b/c")


def test_split_flags_keeps_keywords_and_ignores_recent():
    assert split_flags(["\\Seen", "\\recent", "$Junk"]) == (Flag.SEEN, frozenset({"$Junk"}))


def test_binary_content_with_nul_comes_as_literal8(server, raw):
    data = (b"From: a@example.com\r\nSubject: bin\r\nMIME-Version: 1.0\r\nContent-Type: application/x\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\nAGFiAA==\r\n")
    deliver(server, USER, data)
    client = raw()
    client.command(b"SELECT INBOX")
    lines = client.command(b"FETCH 1 BINARY.PEEK[1]")
    assert lines[0] == b"* 1 FETCH (BINARY[1] ~{4}\r\n"
    assert lines[1] == b"\x00ab\x00)\r\n"


def test_multiappend_is_all_or_nothing(raw):
    client = raw()
    good = message("good")
    client.send(b"t APPEND INBOX {%d+}\r\n%s {0+}\r\n\r\n" % (len(good), good))
    assert client.until(b"t")[-1].startswith(b"t NO [CANNOT]")
    assert b"MESSAGES 0" in client.command(b"STATUS INBOX (MESSAGES)")[0]


def test_utf8_accept_append_and_search_in_utf8(raw):
    client = raw()
    client.command(b"ENABLE UTF8=ACCEPT")
    data = "From: a@example.com\r\nSubject: Grüße aus Köln\r\n\r\nHallo\r\n".encode()
    client.send(b"t APPEND INBOX UTF8 (~{%d+}\r\n%s)\r\n" % (len(data), data))
    assert client.until(b"t")[-1].startswith(b"t OK [APPENDUID")
    client.command(b"SELECT INBOX")
    word = "GRÜSSE".encode()
    lines = client.command(b"SEARCH CHARSET UTF-8 SUBJECT {%d+}\r\n%s" % (len(word), word))
    assert lines[0] == b"* SEARCH 1\r\n"  # Unicode case folding: ß matches SS


def test_fetch_modseq_turns_condstore_on_for_later_responses(server, raw):
    deliver(server, USER, message("one"))
    client = raw()
    client.command(b"SELECT INBOX")
    assert b"MODSEQ" not in client.command(b"STORE 1 +FLAGS (\\Seen)")[0]
    assert re.match(rb"\* 1 FETCH \(MODSEQ \(\d+\)\)", client.command(b"FETCH 1 (MODSEQ)")[0])
    assert b"MODSEQ (" in client.command(b"STORE 1 +FLAGS (\\Answered)")[0]


def test_metadata_set_get_depth_and_remove(raw):
    client = raw()
    assert client.command(b'SETMETADATA INBOX (/private/comment "my inbox" /private/x/y "deep")')[-1].startswith(b"t OK")
    assert client.command(b'SETMETADATA "" (/shared/admin "mailto:root@localhost")')[-1].startswith(b"t OK")
    assert client.command(b"GETMETADATA INBOX /private/Comment")[0] == b'* METADATA "INBOX" (/private/comment "my inbox")\r\n'
    lines = client.command(b"GETMETADATA (DEPTH infinity) INBOX /private")
    assert lines[0] == b'* METADATA "INBOX" (/private/comment "my inbox" /private/x/y "deep")\r\n'
    assert client.command(b"GETMETADATA (DEPTH 1) INBOX /private")[0] == b'* METADATA "INBOX" (/private/comment "my inbox")\r\n'
    reply = client.command(b"GETMETADATA (MAXSIZE 4) INBOX /private/comment")
    assert reply == [b"t OK [METADATA LONGENTRIES 8] some values are longer than MAXSIZE\r\n"]
    assert b"mailto:root" in client.command(b'GETMETADATA "" /shared/admin')[0]
    client.command(b"SETMETADATA INBOX (/private/comment NIL)")
    assert client.command(b"GETMETADATA INBOX /private/comment") == [b"t OK completed\r\n"]
    assert client.command(b"SETMETADATA INBOX (/other/x \"v\")")[-1].startswith(b"t BAD")
    assert client.command(b"GETMETADATA Nowhere /private/comment")[-1].startswith(b"t NO [NONEXISTENT]")


def test_metadata_goes_with_a_deleted_mailbox(raw):
    client = raw()
    client.command(b"CREATE Notes")
    client.command(b'SETMETADATA Notes (/private/comment "old")')
    client.command(b"DELETE Notes")
    client.command(b"CREATE Notes")
    assert client.command(b"GETMETADATA Notes /private/comment") == [b"t OK completed\r\n"]
