"""The POP3 server over real loopback sockets, with poplib and raw transcripts: login rules,
octet-exact RETR/TOP, UIDL, UPDATE-state deletion, the maildrop lock, bad input, TLS."""

from __future__ import annotations

import base64
import hashlib
import logging
import poplib
import re
import socket
import ssl
import time

import pytest

from postbote.config import LimitSettings
from postbote.pop3 import server as pop3_server
from postbote.pop3.server import core_config, idle_timeout, plaintext_allowed
from postbote.store import DeliveryTarget
from postbote.store.types import Flag, FlagMode
from tests.harness import RunningServer, server_settings

USER, PASSWORD = "alice@localhost", "password123"


# --- helpers ---------------------------------------------------------------------------------


def client_tls() -> ssl.SSLContext:
    """The dev certificate is self-signed: no verification in tests."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def deliver(server, account, raw: bytes) -> int:
    [outcome] = server.run(server.app.store.deliver(raw, [DeliveryTarget(account.id)]))
    return outcome.uid


def inbox(server, account):
    return server.run(server.app.store.get_mailbox(account.id, "INBOX"))


def stored(server, account):
    return server.run(server.app.store.list_messages(inbox(server, account).id))


def login(server, user: str = USER, password: str = PASSWORD) -> poplib.POP3:
    pop = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    pop.user(user)
    pop.pass_(password)
    return pop


def login_when_free(server, seconds: float = 5.0) -> poplib.POP3:
    """Log in, waiting while a just-dropped session still holds the maildrop lock."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return login(server)
        except poplib.error_proto as exc:
            if b"[IN-USE]" not in exc.args[0] or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def raw_session(server, service: str = "pop3") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port(service)), timeout=10)
    assert read_line(sock).startswith(b"+OK")
    return sock


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def read_until(sock: socket.socket, end: bytes) -> bytes:
    data = b""
    while not data.endswith(end):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def command(sock: socket.socket, line: bytes) -> bytes:
    sock.sendall(line + b"\r\n")
    return read_line(sock)


def raw_login(server) -> socket.socket:
    sock = raw_session(server)
    assert command(sock, f"USER {USER}".encode()).startswith(b"+OK")
    assert command(sock, f"PASS {PASSWORD}".encode()).startswith(b"+OK")
    return sock


def on_the_wire(message: bytes) -> bytes:
    """What RETR must send, computed independently of the server: CRLF line ends, a final
    CRLF, lines starting with "." doubled (RFC 1939 §3), then the terminator."""
    body = re.sub(rb"(?<!\r)\n", b"\r\n", message)
    if body and not body.endswith(b"\r\n"):
        body = body[:-1] + b"\r\n" if body.endswith(b"\r") else body + b"\r\n"
    return re.sub(rb"(?m)^\.", b"..", body) + b".\r\n"


@pytest.fixture
def alice(server):
    return server.add_user(USER, PASSWORD)


# --- policy functions ------------------------------------------------------------------------


@pytest.mark.parametrize("ip", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_plaintext_auth_is_allowed_from_loopback(ip):
    assert plaintext_allowed(ip)
    assert core_config("h", ip, tls_available=True, implicit_tls=False).allow_plaintext_auth


@pytest.mark.parametrize("ip", ["192.0.2.1", "10.0.0.1", "::2", "2001:db8::1", "::ffff:192.0.2.1", "?"])
def test_plaintext_auth_is_refused_from_elsewhere(ip):
    assert not plaintext_allowed(ip)
    assert not core_config("h", ip, tls_available=True, implicit_tls=False).allow_plaintext_auth


def test_idle_timeout_never_goes_below_the_rfc_ten_minutes():
    assert idle_timeout(LimitSettings(command_timeout=30)) == 600
    assert idle_timeout(LimitSettings(command_timeout=1200)) == 1200


def test_implicit_tls_listener_starts_encrypted():
    config = core_config("mail.example.org", "192.0.2.1", tls_available=True, implicit_tls=True)
    assert config.tls_active and config.hostname == "mail.example.org"


# --- login -----------------------------------------------------------------------------------


def test_user_pass_login_on_loopback_without_tls(server, alice):
    deliver(server, alice, b"Subject: a\r\n\r\nhello\r\n")
    pop = login(server)
    assert pop.stat() == (1, len(b"Subject: a\r\n\r\nhello\r\n"))
    pop.quit()


def test_capa_on_loopback_offers_user_sasl_and_stls(server, alice):
    pop = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    caps = pop.capa()
    assert {"USER", "STLS", "TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"} <= caps.keys()
    assert caps["SASL"] == ["PLAIN"]
    pop.quit()


def test_plaintext_login_off_loopback_needs_stls_first(server, alice, monkeypatch):
    monkeypatch.setattr(pop3_server, "plaintext_allowed", lambda ip: False)
    pop = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    assert "USER" not in pop.capa()
    with pytest.raises(poplib.error_proto, match="STLS"):
        pop.user(USER)
    with pytest.raises(poplib.error_proto, match="STLS"):
        pop._shortcmd("AUTH PLAIN " + base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode())
    pop.stls(client_tls())
    caps = pop.capa()
    assert "USER" in caps and "STLS" not in caps
    pop.user(USER)
    assert pop.pass_(PASSWORD).startswith(b"+OK")
    pop.quit()


def test_pop3s_implicit_tls_logs_in_and_retrieves(server, alice):
    deliver(server, alice, b"Subject: tls\r\n\r\nsecret\r\n")
    pop = poplib.POP3_SSL("127.0.0.1", server.port("pop3s"), timeout=10, context=client_tls())
    assert "STLS" not in pop.capa()
    pop.user(USER)
    pop.pass_(PASSWORD)
    assert pop.retr(1)[1] == [b"Subject: tls", b"", b"secret"]
    pop.quit()


def test_auth_plain_with_initial_response(server, alice):
    pop = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    token = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    assert pop._shortcmd("AUTH PLAIN " + token).startswith(b"+OK")
    assert pop.stat() == (0, 0)
    pop.quit()


def test_auth_plain_refuses_another_authorization_identity(server, alice):
    server.add_user("bob@localhost")
    pop = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    token = base64.b64encode(f"bob@localhost\0{USER}\0{PASSWORD}".encode()).decode()
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        pop._shortcmd("AUTH PLAIN " + token)
    pop.quit()


def test_wrong_password_is_answered_with_auth_code_and_session_goes_on(server, alice):
    pop = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    pop.user(USER)
    with pytest.raises(poplib.error_proto, match=r"^b'-ERR \[AUTH\]"):
        pop.pass_("wrong password")
    pop.user(USER)
    assert pop.pass_(PASSWORD).startswith(b"+OK")
    pop.quit()


def test_locked_out_account_gets_login_delay(server, alice):
    async def lock_out() -> None:
        for _ in range(server.settings.limits.auth_failures_per_account):
            server.app.accounts.throttle.failed("192.0.2.9", USER)

    server.run(lock_out())
    pop = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    pop.user(USER)
    with pytest.raises(poplib.error_proto, match=r"\[LOGIN-DELAY\]"):
        pop.pass_(PASSWORD)
    pop.close()


def test_stls_drops_plaintext_sent_after_it(server, alice):
    """RFC 2595 §4: a command injected behind STLS must not run inside the TLS session."""
    sock = raw_session(server)
    sock.sendall(b"STLS\r\nUSER injected@localhost\r\n")
    assert read_line(sock).startswith(b"+OK")
    tls = client_tls().wrap_socket(sock)
    tls.sendall(b"PASS whatever\r\n")
    assert read_line(tls).startswith(b"-ERR send USER first")
    tls.close()


# --- transaction: exact octets ---------------------------------------------------------------


def test_retr_sends_the_stored_bytes_dot_stuffed(server, alice):
    message = b"Subject: dots\r\n\r\n.one\r\n..two\r\nmid.dle\r\n.\r\nend\r\n"
    deliver(server, alice, message)
    sock = raw_login(server)
    sock.sendall(b"RETR 1\r\n")
    reply = read_until(sock, b"\r\n.\r\n")
    status, _, body = reply.partition(b"\r\n")
    assert status == f"+OK {len(message)} octets".encode()
    assert body == message.replace(b"\r\n.", b"\r\n..") + b".\r\n"
    assert body == on_the_wire(message)


def test_bare_lf_message_is_sent_with_crlf_and_list_size_counts_it(server, alice):
    message = b"Subject: lf\n\n.first\nsecond\r\nno final newline"
    deliver(server, alice, message)
    pop = login(server)
    listed = int(pop.list(1).split()[2])
    resp, lines, octets = pop.retr(1)
    assert lines == [b"Subject: lf", b"", b".first", b"second", b"no final newline"]
    assert octets == listed == len(on_the_wire(message)) - 3 - 1  # less terminator, one stuffed dot
    assert pop.stat()[1] == listed
    pop.quit()


def test_large_message_streams_byte_exact_across_chunk_boundaries(server, alice):
    chunk = pop3_server.BLOB_CHUNK
    head = b"Subject: big\r\n\r\n"
    filler = b"".join(b"%06d %s\r\n" % (i, b"x" * (i % 97)) for i in range(10000))
    # A CRLF split by the chunking, a dot line right after a boundary, and bare LFs.
    body = filler[:chunk - len(head) - 1] + b"\r\n.dot at boundary\n" + filler + b".\nlast\n"
    message = head + body
    deliver(server, alice, message)
    sock = raw_login(server)
    sock.sendall(b"LIST 1\r\n")
    listed = int(read_line(sock).split()[2])
    sock.sendall(b"RETR 1\r\n")
    status = read_line(sock)
    body_sent = read_until(sock, b"\r\n.\r\n")
    expected = on_the_wire(message)
    assert status == f"+OK {listed} octets\r\n".encode()
    assert hashlib.sha256(body_sent).hexdigest() == hashlib.sha256(expected).hexdigest()
    assert listed == len(re.sub(rb"(?<!\r)\n", b"\r\n", message))


def test_top_sends_header_and_the_first_lines(server, alice):
    deliver(server, alice, b"Subject: t\r\nFrom: a@b\r\n\r\n.l1\r\nl2\r\nl3\r\n")
    pop = login(server)
    assert pop.top(1, 0)[1] == [b"Subject: t", b"From: a@b", b""]
    assert pop.top(1, 2)[1] == [b"Subject: t", b"From: a@b", b"", b".l1", b"l2"]
    assert pop.top(1, 99)[1] == [b"Subject: t", b"From: a@b", b"", b".l1", b"l2", b"l3"]
    pop.quit()


def test_top_of_a_message_larger_than_one_read_sends_only_the_top(server, alice):
    line = b"body line\r\n"
    deliver(server, alice, b"Subject: big\r\n\r\n" + line * (3 * pop3_server.BLOB_CHUNK // len(line)))
    pop = login(server)
    assert pop.top(1, 2)[1] == [b"Subject: big", b"", b"body line", b"body line"]
    assert pop.noop().startswith(b"+OK")
    pop.quit()


def test_uidl_is_uidvalidity_dot_uid_and_stable_across_sessions(server, alice):
    uids = [deliver(server, alice, b"Subject: %d\r\n\r\nx\r\n" % i) for i in range(3)]
    uidvalidity = inbox(server, alice).uidvalidity
    pop = login(server)
    first = pop.uidl()[1]
    pop.dele(1)
    pop.quit()
    assert first == [b"%d %d.%d" % (n, uidvalidity, uid) for n, uid in enumerate(uids, 1)]
    pop = login(server)
    assert pop.uidl()[1] == [b"1 " + first[1].split()[1], b"2 " + first[2].split()[1]]
    assert pop.uidl(2) == b"+OK 2 " + first[2].split()[1]
    pop.quit()


# --- UPDATE state ----------------------------------------------------------------------------


def test_dele_then_quit_expunges_exactly_those_messages(server, alice):
    uids = [deliver(server, alice, b"Subject: %d\r\n\r\nx\r\n" % i) for i in range(4)]
    mailbox = inbox(server, alice)
    # Flagged \Deleted by an IMAP client but not expunged: POP3 must leave it alone.
    server.run(server.app.store.store_flags(mailbox.id, [uids[3]], FlagMode.ADD, Flag.DELETED))
    before = inbox(server, alice).highestmodseq
    pop = login(server)
    pop.dele(1)
    pop.dele(3)
    assert b"(2 messages deleted)" in pop.quit()
    assert [m.uid for m in stored(server, alice)] == [uids[1], uids[3]]
    _, vanished = server.run(server.app.store.changes_since(mailbox.id, before))
    assert vanished == [uids[0], uids[2]]


def test_quit_reply_counts_deleted_messages(server, alice):
    deliver(server, alice, b"Subject: 1\r\n\r\nx\r\n")
    sock = raw_login(server)
    assert command(sock, b"DELE 1").startswith(b"+OK")
    assert command(sock, b"QUIT") == b"+OK localhost POP3 server signing off (1 messages deleted)\r\n"


def test_deletions_wake_change_feed_subscribers_as_expunges(server, alice):
    deliver(server, alice, b"Subject: 1\r\n\r\nx\r\n")

    async def subscribe():
        return server.app.store.changes.subscribe(alice.id)

    sub = server.run(subscribe())
    pop = login(server)
    pop.dele(1)
    pop.quit()

    async def kinds() -> set[str]:
        seen: set[str] = set()
        while "expunge" not in seen:
            changes = await sub.wait(timeout=5)
            assert changes, "no change published"
            for change in changes:
                seen |= change.kinds
        return seen

    assert "expunge" in server.run(kinds())
    sub.close()


def test_dropped_connection_deletes_nothing(server, alice):
    for i in range(2):
        deliver(server, alice, b"Subject: %d\r\n\r\nx\r\n" % i)
    sock = raw_login(server)
    assert command(sock, b"DELE 1").startswith(b"+OK")
    assert command(sock, b"DELE 2").startswith(b"+OK")
    sock.close()
    pop = login_when_free(server)
    assert pop.stat()[0] == 2
    pop.quit()
    assert len(stored(server, alice)) == 2


def test_rset_undoes_deletion_marks(server, alice):
    for i in range(2):
        deliver(server, alice, b"Subject: %d\r\n\r\nx\r\n" % i)
    pop = login(server)
    pop.dele(1)
    assert pop.stat()[0] == 1
    pop.rset()
    assert pop.stat()[0] == 2
    pop.quit()
    assert len(stored(server, alice)) == 2


def test_retr_marks_seen_and_top_does_not(server, alice):
    for i in range(2):
        deliver(server, alice, b"Subject: %d\r\n\r\nx\r\n" % i)
    pop = login(server)
    pop.retr(1)
    pop.top(2, 0)
    pop.quit()
    assert [m.has(Flag.SEEN) for m in stored(server, alice)] == [True, False]


def test_message_expunged_elsewhere_after_login_gives_err_and_session_goes_on(server, alice):
    uid = deliver(server, alice, b"Subject: gone\r\n\r\nx\r\n")
    deliver(server, alice, b"Subject: kept\r\n\r\ny\r\n")
    pop = login(server)
    mailbox = inbox(server, alice)
    server.run(server.app.store.store_flags(mailbox.id, [uid], FlagMode.ADD, Flag.DELETED))
    server.run(server.app.store.expunge(mailbox.id))
    server.run(server.app.store.collect_garbage())
    with pytest.raises(poplib.error_proto, match="removed by another session"):
        pop.retr(1)
    assert pop.retr(2)[1][0] == b"Subject: kept"
    pop.quit()


def test_second_session_on_the_same_account_gets_in_use(server, alice):
    first = login(server)
    second = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    second.user(USER)
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        second.pass_(PASSWORD)
    first.quit()
    second.user(USER)
    assert second.pass_(PASSWORD).startswith(b"+OK")
    second.quit()


def test_one_log_line_per_session_with_counts(server, alice, caplog):
    deliver(server, alice, b"Subject: 1\r\n\r\nx\r\n")
    caplog.set_level(logging.INFO, logger="postbote.pop3")
    pop = login(server)
    pop.retr(1)
    pop.dele(1)
    pop.quit()
    deadline = time.monotonic() + 5
    while not (lines := [r for r in caplog.records if r.getMessage() == "pop3 session"]):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    [record] = lines
    assert {k: record.fields[k] for k in ("user", "retrieved", "deleted", "end")} == {
        "user": USER, "retrieved": 1, "deleted": 1, "end": "quit"}


# --- bad input -------------------------------------------------------------------------------


def test_unknown_and_out_of_state_commands_before_login_get_err(server, alice):
    sock = raw_session(server)
    assert command(sock, b"HELO there").startswith(b"-ERR unknown command")
    assert command(sock, b"STAT").startswith(b"-ERR STAT is only valid after login")
    assert command(sock, b"PASS early").startswith(b"-ERR")
    assert command(sock, f"USER {USER}".encode()).startswith(b"+OK")
    assert command(sock, f"PASS {PASSWORD}".encode()).startswith(b"+OK")


def test_wrong_arguments_after_login_get_err_and_session_goes_on(server, alice):
    deliver(server, alice, b"Subject: 1\r\n\r\nx\r\n")
    sock = raw_login(server)
    for bad in (b"RETR", b"RETR x", b"RETR 99", b"TOP 1", b"TOP 1 -1", b"LIST 1 2", b"DELE 0",
                b"USER again", b"STLS"):
        assert command(sock, bad).startswith(b"-ERR"), bad
    assert command(sock, b"STAT") == b"+OK 1 17\r\n"
    assert command(sock, b"QUIT").startswith(b"+OK")


def test_a_100_kb_line_is_refused_and_the_session_goes_on(server, alice):
    sock = raw_session(server)
    assert command(sock, b"A" * 100_000).startswith(b"-ERR line too long")
    assert command(sock, f"USER {USER}".encode()).startswith(b"+OK")
    assert command(sock, f"PASS {PASSWORD}".encode()).startswith(b"+OK")
    assert command(sock, b"NOOP " + b"x" * 100_000).startswith(b"-ERR line too long")
    assert command(sock, b"STAT") == b"+OK 0 0\r\n"


def test_too_many_errors_close_the_connection(server, alice):
    sock = raw_session(server)
    limit = server.settings.limits.max_errors
    sock.sendall(b"BOGUS\r\n" * (limit + 5))
    replies = read_until(sock, b"\0never").split(b"\r\n")  # reads to EOF
    assert [r for r in replies if r][-1] == b"-ERR too many errors, closing connection"
    assert len([r for r in replies if r.startswith(b"-ERR unknown")]) == limit


def test_idle_client_is_logged_out_without_update(server, alice, monkeypatch):
    monkeypatch.setattr(pop3_server, "idle_timeout", lambda limits: 0.3)  # the RFC floor is 600 s
    deliver(server, alice, b"Subject: 1\r\n\r\nx\r\n")
    sock = raw_login(server)
    assert command(sock, b"RETR 1").startswith(b"+OK")
    read_until(sock, b"\r\n.\r\n")
    assert command(sock, b"DELE 1").startswith(b"+OK")
    assert read_line(sock) == b"-ERR autologout: idle for 0.3 seconds\r\n"
    assert sock.recv(1) == b""
    pop = login_when_free(server)
    assert pop.stat()[0] == 1
    pop.quit()
    assert stored(server, alice)[0].has(Flag.SEEN)


def test_commands_before_login_are_bounded(server, alice):
    sock = raw_session(server)
    sock.sendall(b"CAPA\r\n" * (pop3_server.MAX_COMMANDS_BEFORE_LOGIN + 1))
    replies = read_until(sock, b"\0never")
    assert replies.endswith(b"-ERR too many commands before login, closing connection\r\n")


def test_pipelined_commands_are_answered_in_order(server, alice):
    deliver(server, alice, b"Subject: 1\r\n\r\nx\r\n")
    sock = raw_session(server)
    sock.sendall(f"USER {USER}\r\nPASS {PASSWORD}\r\nSTAT\r\nUIDL 1\r\nQUIT\r\n".encode())
    replies = read_until(sock, b"\0never").split(b"\r\n")
    assert [r[:4] for r in replies if r] == [b"+OK "] * 5
    assert replies[2] == b"+OK 1 17"


# --- shutdown --------------------------------------------------------------------------------


def test_shutdown_ends_idle_sessions_at_once_without_update(tmp_path):
    srv = RunningServer(server_settings(tmp_path / "data")).start()
    account = srv.add_user(USER, PASSWORD)
    deliver(srv, account, b"Subject: 1\r\n\r\nx\r\n")
    sock = raw_login(srv)
    assert command(sock, b"DELE 1").startswith(b"+OK")
    started = time.monotonic()
    try:
        srv.stop(grace=20)
    finally:
        assert time.monotonic() - started < 10
    assert read_line(sock) == b"-ERR [SYS/TEMP] server shutting down, try again later\r\n"
    again = RunningServer(server_settings(tmp_path / "data")).start()
    try:
        mailbox = again.run(again.app.store.get_mailbox(account.id, "INBOX"))
        assert len(again.run(again.app.store.list_messages(mailbox.id))) == 1
    finally:
        again.stop()
