"""Sessions learning of each other's changes: EXISTS, EXPUNGE or VANISHED, FETCH FLAGS,
between commands and during IDLE (woken by a real SMTP delivery), with sequence numbers kept
right (RFC 9051 §7.5.1: no EXPUNGE during FETCH, STORE or SEARCH); the view alone at the end."""

from __future__ import annotations

import re
import socket
import time

from imapclient import IMAPClient

from postbote.imap.selected import AnnounceStyle, SelectedMailbox
from postbote.store.types import Flag, Message

from tests.harness import RunningServer, server_settings
from tests.imap.conftest import PASSWORD, USER, RawImap, deliver, message, send_smtp


def test_other_session_sees_new_message_flags_and_expunge_at_noop(server, raw):
    for n in range(3):
        deliver(server, USER, message(f"m{n}"))
    a, b = raw(), raw()
    a.command(b"SELECT INBOX")
    b.command(b"SELECT INBOX")
    a.command(b"STORE 2 +FLAGS (\\Deleted)")
    a.command(b"EXPUNGE")
    a.command(b"STORE 1 +FLAGS (\\Flagged)")
    deliver(server, USER, message("new"))
    lines = b.command(b"NOOP")
    assert b"* 2 EXPUNGE\r\n" in lines
    assert b"* 3 EXISTS\r\n" in lines
    assert any(re.match(rb"\* 1 FETCH \(UID 1 FLAGS \(\\Flagged", line) for line in lines), lines
    # numbers stay consistent: message 3 is now the new one (UID 4)
    assert b"UID 4" in b"".join(b.command(b"FETCH 3 UID"))


def test_no_expunge_during_fetch_store_or_search_but_at_the_next_noop(server, raw):
    for n in range(3):
        deliver(server, USER, message(f"m{n}"))
    a, b = raw(), raw()
    a.command(b"SELECT INBOX")
    b.command(b"SELECT INBOX")
    a.command(b"STORE 1 +FLAGS (\\Deleted)")
    a.command(b"EXPUNGE")
    for command in (b"FETCH 1:3 UID", b"STORE 3 +FLAGS (\\Seen)", b"SEARCH ALL", b"UID FETCH 1:* UID"):
        lines = b.command(command)
        assert not any(b"EXPUNGE" in line for line in lines), (command, lines)
    assert b.command(b"SEARCH ALL")[0] == b"* SEARCH 2 3\r\n"  # the expunged one no longer matches
    assert b.command(b"NOOP")[0] == b"* 1 EXPUNGE\r\n"
    assert b.command(b"FETCH 2 UID")[0] == b"* 2 FETCH (UID 3)\r\n"


def test_qresync_session_gets_vanished_instead_of_expunge(server, raw):
    for n in range(3):
        deliver(server, USER, message(f"m{n}"))
    a, b = raw(), raw()
    b.command(b"ENABLE QRESYNC")
    a.command(b"SELECT INBOX")
    b.command(b"SELECT INBOX")
    a.command(b"STORE 2:3 +FLAGS (\\Deleted)")
    a.command(b"EXPUNGE")
    assert b"* VANISHED 2:3\r\n" in b.command(b"NOOP")


def test_select_qresync_reports_vanished_earlier_and_changed_flags(server, raw):
    for n in range(4):
        deliver(server, USER, message(f"m{n}"))
    a = raw()
    status = a.command(b"STATUS INBOX (UIDVALIDITY HIGHESTMODSEQ)")[0]
    uidvalidity, modseq = re.search(rb"UIDVALIDITY (\d+) HIGHESTMODSEQ (\d+)", status).groups()
    a.command(b"SELECT INBOX")
    a.command(b"STORE 1 +FLAGS (\\Deleted)")
    a.command(b"EXPUNGE")
    a.command(b"STORE 2 +FLAGS (\\Answered)")
    b = raw()
    b.command(b"ENABLE QRESYNC")
    lines = b.command(b"SELECT INBOX (QRESYNC (%s %s 1:4))" % (uidvalidity, modseq))
    assert b"* VANISHED (EARLIER) 1\r\n" in lines
    assert any(line.startswith(b"* 2 FETCH (UID 3 FLAGS (\\Answered)") for line in lines), lines
    fetched = b.command(b"UID FETCH 1:* FLAGS (CHANGEDSINCE %s VANISHED)" % modseq)
    assert fetched[0] == b"* VANISHED (EARLIER) 1\r\n"


def test_idle_is_woken_by_an_smtp_delivery(server, user):
    with IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False, timeout=10) as client:
        client.login(USER, PASSWORD)
        client.select_folder("INBOX")
        client.idle()
        send_smtp(server, USER, message("while idling"))
        responses = client.idle_check(timeout=10)
        client.idle_done()
        assert (1, b"EXISTS") in responses
        assert client.search(["SUBJECT", "while idling"]) == [1]


def test_idle_reports_flag_changes_and_expunges_from_another_session(server, raw):
    deliver(server, USER, message("a"))
    deliver(server, USER, message("b"))
    idler, other = raw(), raw()
    idler.command(b"SELECT INBOX")
    other.command(b"SELECT INBOX")
    idler.send(b"i IDLE\r\n")
    assert idler.line().startswith(b"+ ")
    other.command(b"STORE 2 +FLAGS (\\Flagged)")
    assert idler.line().startswith(b"* 2 FETCH (UID 2 FLAGS (\\Flagged")
    other.command(b"STORE 1 +FLAGS (\\Deleted)")
    other.command(b"EXPUNGE")
    lines = [idler.line(), idler.line()]
    assert b"* 1 EXPUNGE\r\n" in lines
    idler.send(b"DONE\r\n")
    assert idler.until(b"i")[-1] == b"i OK IDLE terminated\r\n"


def test_imapclient_round_trip(server, user):
    deliver(server, USER, message("imapclient"))
    with IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False, timeout=10) as client:
        client.login(USER, PASSWORD)
        assert b"IMAP4REV2" in client.capabilities()
        info = client.select_folder("INBOX")
        assert info[b"EXISTS"] == 1
        fetched = client.fetch([1], ["ENVELOPE", "FLAGS", "BODY.PEEK[]"])
        assert fetched[1][b"ENVELOPE"].subject == b"imapclient"
        client.add_flags([1], [b"\\Seen", b"custom"])
        assert set(client.get_flags([1])[1]) >= {b"\\Seen", b"custom"}
        client.create_folder("Saved")
        client.move([1], "Saved")
        assert client.search() == []
        assert client.folder_status("Saved", ["MESSAGES"])[b"MESSAGES"] == 1
        assert ((b"\\HasNoChildren", b"\\Trash"), b"/", "Trash") in client.list_folders()
        assert client.find_special_folder(b"\\Sent") == "Sent"


def test_connection_drop_during_idle_frees_the_session(server, raw):
    client = raw()
    client.command(b"SELECT INBOX")
    client.send(b"i IDLE\r\n")
    assert client.line().startswith(b"+ ")
    client.sock.shutdown(socket.SHUT_RDWR)
    client.close()
    deliver(server, USER, message("after"))  # nobody left to notify: must not fail
    fresh = raw()
    assert b"* 1 EXISTS\r\n" in fresh.command(b"SELECT INBOX")


def test_a_new_keyword_is_announced_with_flags_before_its_fetch(server, raw):
    deliver(server, USER, message("a"))
    a, b = raw(), raw()
    a.command(b"SELECT INBOX")
    b.command(b"SELECT INBOX")
    a.command(b"STORE 1 +FLAGS ($Important)")
    lines = b.command(b"NOOP")
    flags = lines.index(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Important)\r\n")
    fetch = next(i for i, line in enumerate(lines) if line.startswith(b"* 1 FETCH"))
    assert flags < fetch and b"$Important" in lines[fetch]


def test_shutdown_says_bye_to_an_idling_client(tmp_path):
    srv = RunningServer(server_settings(tmp_path / "data")).start()
    try:
        srv.add_user(USER, PASSWORD)
        client = RawImap(srv.port("imap"))
        client.login()
        client.command(b"SELECT INBOX")
        client.send(b"i IDLE\r\n")
        assert client.line().startswith(b"+ ")
        started = time.monotonic()
    finally:
        srv.stop(grace=60)
    assert time.monotonic() - started < 30  # an idle session does not hold the drain up
    assert client.line().startswith(b"* BYE [UNAVAILABLE]")


# --- the selected-mailbox view alone ---------------------------------------------------------------


def _msg(uid: int, modseq: int, flags: Flag = Flag(0)) -> Message:
    return Message(uid, 1, uid, modseq, flags, frozenset(), 0, 10, uid)


def test_view_holds_expunges_back_until_allowed_and_numbers_stay_right():
    view = SelectedMailbox.open(1, "INBOX", False, 7, 5, 10, [1, 2, 3, 4])
    view.apply(12, [_msg(5, 11)], [2])
    assert view.announce(AnnounceStyle(), allow_expunge=False) == [b"* 5 EXISTS\r\n", b"* 0 RECENT\r\n"]
    assert view.seq_of(3) == 3  # the expunged message still holds number 2
    assert view.announce(AnnounceStyle(), allow_expunge=True) == [b"* 2 EXPUNGE\r\n"]
    assert view.seq_of(3) == 2 and view.exists == 4


def test_view_never_announces_a_message_that_came_and_went_unseen():
    view = SelectedMailbox.open(1, "INBOX", False, 7, 3, 10, [1, 2])
    view.apply(11, [_msg(3, 11)], [])
    view.apply(12, [], [3])
    assert view.announce(AnnounceStyle(), allow_expunge=True) == []


def test_view_skips_rereading_only_its_own_contiguous_change():
    view = SelectedMailbox.open(1, "INBOX", False, 7, 3, 10, [1, 2])
    view.note_own_change(_msg(1, 11, Flag.SEEN))
    assert not view.skip_own([12])  # a gap: someone else changed something first
    assert view.skip_own([11]) and view.modseq == 11
    assert view.announce(AnnounceStyle(), allow_expunge=True) == []
