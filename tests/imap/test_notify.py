"""NOTIFY (RFC 5465) over real sockets: unsolicited STATUS, EXISTS, FETCH, EXPUNGE and LIST
lines arrive while the client sends nothing, from changes made by other sessions and by SMTP."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest

from postbote.imap import commands as c
from postbote.imap.grammar import ImapCommandParser, ParseError

from .conftest import USER, RawImap, deliver, message, send_smtp

QUIET = 0.7  # seconds of silence that show nothing was sent


class Watcher(RawImap):
    """A raw client whose reads may time out and go on (a socket file cannot)."""

    def __init__(self, port: int) -> None:
        self._buffer = b""
        super().__init__(port)

    def line(self) -> bytes:
        while b"\n" not in self._buffer:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("server closed the connection")
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line + b"\n"


@pytest.fixture
def raw(server, user) -> Iterator[Callable[..., Watcher]]:
    clients: list[Watcher] = []

    def make(login: bool = True) -> Watcher:
        client = Watcher(server.port("imap"))
        if login:
            client.login()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def unsolicited(client: RawImap, want: bytes, timeout: float = 10.0) -> list[bytes]:
    """Lines the server sends on its own, up to the first one containing `want`."""
    client.sock.settimeout(timeout)
    lines: list[bytes] = []
    try:
        while True:
            line = client.line()
            lines.append(line)
            if want in line:
                return lines
    except (TimeoutError, socket.timeout):
        raise AssertionError(f"no line with {want!r}; got {lines!r}") from None
    finally:
        client.sock.settimeout(10)


def silent(client: RawImap, seconds: float = QUIET) -> list[bytes]:
    """Whatever arrives within `seconds` (nothing, when the server stays quiet)."""
    client.sock.settimeout(seconds)
    lines: list[bytes] = []
    try:
        while True:
            lines.append(client.line())
    except (TimeoutError, socket.timeout):
        return lines
    finally:
        client.sock.settimeout(10)


def ok(lines: list[bytes]) -> list[bytes]:
    assert lines[-1].startswith(b"t OK"), lines
    return lines


# --- grammar -------------------------------------------------------------------------------------


def parse(line: bytes) -> object:
    parser = ImapCommandParser()
    parser.receive(line + b"\r\n")
    return next(parser.events())


def test_notify_set_parses_filters_events_and_fetch_attributes() -> None:
    cmd = parse(b"a NOTIFY SET STATUS (selected-delayed (MessageNew (UID BODY.PEEK[HEADER]) "
                b"MessageExpunge)) (subtree Lists (messagenew messageexpunge flagchange)) "
                b"(mailboxes (A B) (MailboxName)) (personal NONE)")
    assert isinstance(cmd, c.Notify) and cmd.status
    selected, subtree, named, personal = cmd.groups
    assert selected.filter == "SELECTED-DELAYED"
    assert selected.events[0] == c.NotifyEvent(
        "MessageNew", (c.FetchAtt("UID"), c.FetchBody(c.Section((), "HEADER"), None, True)))
    assert [e.name for e in subtree.events] == ["MessageNew", "MessageExpunge", "FlagChange"]
    assert subtree.mailboxes == ("Lists",) and named.mailboxes == ("A", "B")
    assert personal.events == ()
    assert parse(b"b notify none") == c.Notify("b")


def test_malformed_notify_is_a_parse_error() -> None:
    for line in (b"a NOTIFY", b"a NOTIFY SET", b"a NOTIFY SET (personal ())",
                 b"a NOTIFY SET (elsewhere (MessageNew))", b"a NOTIFY SET (subtree (MessageNew))",
                 b"a NOTIFY SET personal (MessageNew)", b"a NOTIFY MAYBE"):
        assert isinstance(parse(line), ParseError), line


# --- the server ------------------------------------------------------------------------------------


def test_notify_is_advertised_after_login(raw) -> None:
    client = raw(login=False)
    assert b"NOTIFY" not in b"".join(client.command(b"CAPABILITY"))
    client.login()
    assert b" NOTIFY" in b"".join(client.command(b"CAPABILITY"))


def test_delivery_to_an_unselected_mailbox_sends_status_without_a_command(server, raw) -> None:
    client = raw()
    ok(client.command(b"NOTIFY SET (personal (MessageNew MessageExpunge))"))
    send_smtp(server, USER, message("over smtp"))
    lines = unsolicited(client, b'* STATUS "INBOX"')
    assert b"MESSAGES 1 " in lines[-1] and b"UIDNEXT 2 " in lines[-1] and b"UNSEEN 1" in lines[-1]
    assert b"UIDVALIDITY " in lines[-1]


def test_append_by_another_session_reaches_inboxes_filter(server, raw) -> None:
    watcher, other = raw(), raw()
    ok(other.command(b"CREATE Elsewhere"))
    ok(watcher.command(b"NOTIFY SET (inboxes (MessageNew MessageExpunge))"))
    deliver(server, USER, message("a"), "Elsewhere")  # not an inbox: nothing
    assert silent(watcher) == []
    other.send(b"a APPEND INBOX {%d+}\r\n" % len(message("b")) + message("b") + b"\r\n")
    assert other.until(b"a")[-1].startswith(b"a OK")
    assert b"MESSAGES 1" in unsolicited(watcher, b'* STATUS "INBOX"')[-1]


def test_new_message_in_selected_mailbox_gives_exists_and_the_requested_fetch(server, raw) -> None:
    client = raw()
    ok(client.command(b"SELECT INBOX"))
    ok(client.command(b"NOTIFY SET (selected (MessageNew (UID BODY.PEEK[HEADER.FIELDS (Subject)]) "
                      b"MessageExpunge FlagChange)) (personal (MessageNew MessageExpunge))"))
    deliver(server, USER, message("fresh news"))
    lines = unsolicited(client, b"Subject: fresh news")
    assert b"* 1 EXISTS\r\n" in lines
    fetch = [line for line in lines if b"FETCH" in line][0]
    assert fetch.startswith(b"* 1 FETCH (UID 1 BODY[HEADER.FIELDS (Subject)]")
    assert not any(b"STATUS" in line for line in lines)  # the selected mailbox gets no STATUS
    # the fetch was a peek: the message stays unseen
    assert b"\\Seen" not in b"".join(client.command(b"FETCH 1 FLAGS"))


def test_flag_changes_by_another_session_give_fetch_or_status(server, raw) -> None:
    deliver(server, USER, message("one"))
    ok(raw().command(b"CREATE Other"))
    deliver(server, USER, message("two"), "Other")
    watcher, other = raw(), raw()
    ok(watcher.command(b"ENABLE CONDSTORE"))
    ok(watcher.command(b"SELECT INBOX"))
    ok(watcher.command(b"NOTIFY SET (selected (MessageNew MessageExpunge FlagChange)) "
                       b"(personal (MessageNew MessageExpunge FlagChange))"))
    ok(other.command(b"SELECT INBOX"))
    ok(other.command(b"STORE 1 +FLAGS.SILENT (\\Flagged)"))
    line = unsolicited(watcher, b"FETCH")[-1]
    assert line.startswith(b"* 1 FETCH (UID 1 FLAGS (\\Flagged") and b"MODSEQ (" in line
    ok(other.command(b"SELECT Other"))
    ok(other.command(b"STORE 1 +FLAGS.SILENT (\\Seen)"))
    line = unsolicited(watcher, b'* STATUS "Other"')[-1]
    assert b"UNSEEN 0" in line and b"HIGHESTMODSEQ " in line


def test_flag_changes_are_not_pushed_without_flagchange(server, raw) -> None:
    deliver(server, USER, message("one"))
    watcher, other = raw(), raw()
    ok(watcher.command(b"SELECT INBOX"))
    ok(watcher.command(b"NOTIFY SET (selected (MessageNew MessageExpunge))"))
    ok(other.command(b"SELECT INBOX"))
    ok(other.command(b"STORE 1 +FLAGS.SILENT (\\Flagged)"))
    assert silent(watcher) == []
    assert any(b"FETCH (UID 1 FLAGS (\\Flagged" in line for line in watcher.command(b"NOOP"))


def test_expunge_by_another_session_gives_expunge_or_vanished(server, raw) -> None:
    for n in range(3):
        deliver(server, USER, message(f"m{n}"))
    plain, qresync, other = raw(), raw(), raw()
    ok(plain.command(b"SELECT INBOX"))
    ok(plain.command(b"NOTIFY SET (selected (MessageNew MessageExpunge))"))
    ok(qresync.command(b"ENABLE QRESYNC"))
    ok(qresync.command(b"SELECT INBOX"))
    ok(qresync.command(b"NOTIFY SET (selected (MessageNew MessageExpunge))"))
    ok(other.command(b"SELECT INBOX"))
    ok(other.command(b"STORE 2 +FLAGS.SILENT (\\Deleted)"))
    ok(other.command(b"EXPUNGE"))
    assert unsolicited(plain, b"EXPUNGE")[-1] == b"* 2 EXPUNGE\r\n"
    assert unsolicited(qresync, b"VANISHED")[-1] == b"* VANISHED 2\r\n"


def test_selected_delayed_holds_expunges_until_a_command_allows_them(server, raw) -> None:
    for n in range(2):
        deliver(server, USER, message(f"m{n}"))
    watcher, other = raw(), raw()
    ok(watcher.command(b"SELECT INBOX"))
    ok(watcher.command(b"NOTIFY SET (selected-delayed (MessageNew MessageExpunge))"))
    ok(other.command(b"SELECT INBOX"))
    ok(other.command(b"STORE 1 +FLAGS.SILENT (\\Deleted)"))
    ok(other.command(b"EXPUNGE"))
    assert not any(b"EXPUNGE" in line for line in silent(watcher))
    deliver(server, USER, message("late"))
    assert b"* 3 EXISTS\r\n" in unsolicited(watcher, b"EXISTS")  # the expunged one keeps its number
    assert b"* 1 EXPUNGE\r\n" in ok(watcher.command(b"NOOP"))


def test_mailbox_create_rename_delete_give_list_lines(server, raw) -> None:
    watcher, other = raw(), raw()
    ok(watcher.command(b"NOTIFY SET (personal (MailboxName))"))
    ok(other.command(b"CREATE Projects"))
    assert unsolicited(watcher, b"LIST")[-1] == b'* LIST (\\HasNoChildren) "/" "Projects"\r\n'
    ok(other.command(b"RENAME Projects Archive2"))
    line = unsolicited(watcher, b"LIST")[-1]
    assert line == b'* LIST (\\HasNoChildren) "/" "Archive2" ("OLDNAME" ("Projects"))\r\n'
    ok(other.command(b"DELETE Archive2"))
    assert unsolicited(watcher, b"LIST")[-1] == b'* LIST (\\NonExistent) "/" "Archive2"\r\n'


def test_subscription_changes_give_list_lines(server, raw) -> None:
    watcher, other = raw(), raw()
    ok(other.command(b"CREATE News"))
    ok(watcher.command(b"NOTIFY SET (personal (SubscriptionChange))"))
    ok(other.command(b"SUBSCRIBE News"))
    assert unsolicited(watcher, b"LIST")[-1] == b'* LIST (\\Subscribed) "/" "News"\r\n'
    ok(other.command(b"UNSUBSCRIBE News"))
    assert unsolicited(watcher, b"LIST")[-1] == b'* LIST () "/" "News"\r\n'


def test_subscribed_filter_matches_only_subscribed_mailboxes(server, raw) -> None:
    client = raw()
    ok(client.command(b"CREATE Watched"))
    ok(client.command(b"CREATE Ignored"))
    ok(client.command(b"SUBSCRIBE Watched"))
    ok(client.command(b"NOTIFY SET (subscribed (MessageNew MessageExpunge))"))
    deliver(server, USER, message("x"), "Ignored")
    deliver(server, USER, message("y"), "Watched")
    lines = unsolicited(client, b'* STATUS "Watched"')
    assert not any(b"Ignored" in line for line in lines)


def test_notify_set_status_sends_initial_statuses(server, raw) -> None:
    client = raw()
    ok(client.command(b"CREATE Lists"))
    ok(client.command(b"CREATE Lists/Python"))
    ok(client.command(b"CREATE Other"))
    deliver(server, USER, message("x"), "Lists/Python")
    lines = ok(client.command(b"NOTIFY SET STATUS (subtree Lists (MessageNew MessageExpunge))"))
    statuses = [line for line in lines if line.startswith(b"* STATUS")]
    assert len(statuses) == 2, lines
    assert statuses[0].startswith(b'* STATUS "Lists" (MESSAGES 0 UIDNEXT 1 UIDVALIDITY ')
    assert statuses[0].endswith(b" UNSEEN 0)\r\n")
    assert statuses[1].startswith(b'* STATUS "Lists/Python" (MESSAGES 1 UIDNEXT 2 ')


def test_notify_none_silences(server, raw) -> None:
    client = raw()
    ok(client.command(b"NOTIFY SET (personal (MessageNew MessageExpunge MailboxName))"))
    ok(client.command(b"NOTIFY NONE"))
    deliver(server, USER, message("x"))
    ok(raw().command(b"CREATE Quiet"))
    assert silent(client) == []


def test_unsupported_events_are_refused_with_badevent(raw) -> None:
    client = raw()
    for events in (b"AnnotationChange", b"MailboxMetadataChange", b"ServerMetadataChange", b"Frobnicate"):
        line = client.command(b"NOTIFY SET (personal (MessageNew MessageExpunge " + events + b"))")[-1]
        assert line.startswith(b"t NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName "
                               b"SubscriptionChange)]"), line


def test_rule_breaking_and_malformed_notify_is_bad(raw) -> None:
    client = raw()
    for text in (b"NOTIFY SET (personal (MessageNew))", b"NOTIFY SET (personal (FlagChange))",
                 b"NOTIFY SET (personal (MessageNew (UID) MessageExpunge))",
                 b"NOTIFY SET (selected (MessageNew MessageExpunge)) (selected-delayed NONE)",
                 b"NOTIFY SET (personal MessageNew)", b"NOTIFY SET"):
        assert client.command(text)[-1].startswith(b"t BAD"), text
    ok(client.command(b"NOOP"))


def test_idle_with_notify_reports_other_mailboxes(server, raw) -> None:
    client = raw()
    ok(client.command(b"CREATE Side"))
    ok(client.command(b"SELECT INBOX"))
    ok(client.command(b"NOTIFY SET (selected (MessageNew MessageExpunge)) (personal (MessageNew MessageExpunge))"))
    client.send(b"i IDLE\r\n")
    assert client.line().startswith(b"+ ")
    deliver(server, USER, message("side"), "Side")
    assert b"MESSAGES 1" in unsolicited(client, b'* STATUS "Side"')[-1]
    deliver(server, USER, message("main"))
    assert unsolicited(client, b"EXISTS")[-1] == b"* 1 EXISTS\r\n"
    client.send(b"DONE\r\n")
    assert client.until(b"i")[-1].startswith(b"i OK")


def test_no_notification_inside_a_literal_in_progress(server, raw) -> None:
    client = raw()
    ok(client.command(b"NOTIFY SET (personal (MessageNew MessageExpunge))"))
    data = message("literal")
    client.send(b"a APPEND INBOX {%d}\r\n" % len(data))
    assert client.line().startswith(b"+ ")
    client.send(data[:10])
    deliver(server, USER, message("meanwhile"))
    assert silent(client) == []  # the APPEND is still being received
    client.send(data[10:] + b"\r\n")
    lines = client.until(b"a")
    assert lines[-1].startswith(b"a OK")
    assert any(b'* STATUS "INBOX"' in line for line in lines + silent(client))
