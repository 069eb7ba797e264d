"""The SMTP servers over real sockets, with smtplib and raw bytes."""

from __future__ import annotations

import asyncio
import smtplib
import socket

import pytest

from .helpers import insecure_context, mailbox_messages, submit

MESSAGE = b"From: bob@example.org\r\nTo: alice@localhost\r\nSubject: hi\r\n\r\nHello Alice.\r\n"


class Raw:
    """A line-oriented raw SMTP client, for what smtplib will not send."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> str:
        lines = []
        while True:
            line = self.file.readline().decode()
            assert line, "connection closed"
            lines.append(line.rstrip("\r\n"))
            if line[3:4] != "-":
                return "\n".join(lines)

    def cmd(self, line: str) -> str:
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.sock.close()


def test_mx_delivers_to_local_user_with_trace_headers_byte_exact(server):
    server.add_user("alice@localhost")
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as c:
        c.sendmail("bob@example.org", ["alice@localhost"], MESSAGE)
    [stored] = mailbox_messages(server, "alice@localhost")
    assert stored.startswith(b"Return-Path: <bob@example.org>\r\nReceived: from ")
    trace = stored[: len(stored) - len(MESSAGE)]
    assert b"by localhost (postbote) with ESMTP id" in trace
    assert b"for <alice@localhost>" in trace
    assert stored.endswith(MESSAGE)  # the message itself is untouched


def test_unknown_user_is_refused_at_rcpt(server):
    server.add_user("alice@localhost")
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as c:
        c.ehlo()
        c.mail("bob@example.org")
        code, text = c.rcpt("nobody@localhost")
        assert code == 550 and b"5.1.1" in text


def test_relay_is_denied_on_mx_port(server):
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as c:
        c.ehlo()
        c.mail("bob@example.org")
        code, text = c.rcpt("someone@elsewhere.example")
        assert code == 554 and b"5.7.1" in text


def test_no_auth_offered_before_tls_on_mx_and_offered_after(server):
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as c:
        c.ehlo()
        assert not c.has_extn("auth") and c.has_extn("starttls")
        c.starttls(context=insecure_context())
        c.ehlo()
        assert c.has_extn("auth")


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_submission_starttls_then_auth_and_local_delivery(server, mechanism):
    server.add_user("alice@localhost")
    server.add_user("carol@localhost")
    c = smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=30)
    c.starttls(context=insecure_context())
    c.ehlo()
    c.user, c.password = "alice@localhost", "password123"
    code, _ = c.auth(mechanism, getattr(c, f"auth_{mechanism.lower()}"))
    assert code == 235
    c.sendmail("alice@localhost", ["carol@localhost"], b"Subject: from alice\r\n\r\nhi\r\n")
    c.quit()
    [stored] = mailbox_messages(server, "carol@localhost")
    assert b"with ESMTPSA" in stored and b"(using TLSv1.3 with cipher" in stored


def test_wrong_password_gives_535_5_7_8(server):
    server.add_user("alice@localhost")
    c = smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=30)
    c.starttls(context=insecure_context())
    with pytest.raises(smtplib.SMTPAuthenticationError) as err:
        c.login("alice@localhost", "wrong-password")
    assert err.value.smtp_code == 535 and b"5.7.8" in err.value.smtp_error
    c.close()


def test_submission_requires_auth(server):
    c = smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=30)
    c.starttls(context=insecure_context())
    c.ehlo()
    code, text = c.mail("alice@localhost")
    assert code == 530 and b"5.7.0" in text
    c.close()


def test_submission_refuses_a_sender_the_user_does_not_own(server):
    server.add_user("alice@localhost")
    c = submit(server, "alice@localhost")
    code, text = c.mail("boss@localhost")
    assert code == 553 and b"5.7.1" in text
    c.close()


def test_submission_may_send_as_an_alias_of_the_user(server):
    server.add_user("alice@localhost")
    server.run(server.app.store.add_alias("info@localhost", "alice@localhost"))
    c = submit(server, "alice@localhost")
    assert c.mail("info@localhost")[0] == 250
    c.close()


def test_submission_adds_message_id_and_date_when_missing(server):
    server.add_user("alice@localhost")
    c = submit(server, "alice@localhost", port_name="submissions")
    c.sendmail("alice@localhost", ["alice@localhost"], b"Subject: bare\r\n\r\nno id\r\n")
    c.quit()
    [stored] = mailbox_messages(server, "alice@localhost")
    header = stored.split(b"\r\n\r\n")[0]
    assert b"\r\nMessage-ID: <" in header and b"\r\nDate: " in header
    assert stored.endswith(b"Subject: bare\r\n\r\nno id\r\n")


def test_authenticated_remote_recipients_are_queued(server):
    server.add_user("alice@localhost")
    c = submit(server, "alice@localhost")
    c.sendmail("alice@localhost", ["friend@remote.example"], b"Subject: out\r\n\r\nbye\r\n")
    c.quit()
    [entry] = server.run(server.app.store.list_outbound())
    assert entry.domain == "remote.example" and entry.recipients == ("friend@remote.example",)
    assert entry.sender == "alice@localhost"


def test_aliases_catch_all_and_subaddress_give_one_copy_per_mailbox(server):
    server.add_user("alice@localhost")
    server.add_user("bob@localhost")
    store = server.app.store
    server.run(store.add_alias("team@localhost", "alice@localhost"))
    server.run(store.add_alias("team@localhost", "bob@localhost"))
    server.run(store.add_alias("@localhost", "bob@localhost"))
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as c:
        c.sendmail("x@example.org", ["team@localhost", "alice+news@localhost", "whoever@localhost"],
                   b"Subject: many\r\n\r\nbody\r\n")
    assert len(mailbox_messages(server, "alice@localhost")) == 1
    assert len(mailbox_messages(server, "bob@localhost")) == 1


def test_full_mailbox_is_refused_at_rcpt_with_452(server):
    server.add_user("alice@localhost", quota=100)
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as c:
        c.sendmail("x@example.org", ["alice@localhost"], b"Subject: fill\r\n\r\n" + b"x" * 200 + b"\r\n")
        c.mail("x@example.org")
        code, text = c.rcpt("alice@localhost")
    assert code == 452 and b"4.2.2" in text


def test_size_limit_at_mail_and_during_data(server):
    server.add_user("alice@localhost")
    limit = server.settings.limits.max_message_size
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=60) as c:
        c.ehlo()
        assert int(c.esmtp_features["size"]) == limit
        code, text = c.mail("x@example.org", [f"SIZE={limit + 1}"])
        assert code == 552 and b"5.3.4" in text
        c.rset()
        c.mail("x@example.org")
        c.rcpt("alice@localhost")
        code, text = c.data(b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * (limit // 1000 + 10))
        assert code == 552
    assert mailbox_messages(server, "alice@localhost") == []


def test_pipelined_commands_in_one_packet(server):
    server.add_user("alice@localhost")
    raw = Raw(server.port("smtp"))
    raw.cmd("EHLO client.example")
    raw.send(b"MAIL FROM:<x@example.org>\r\nRCPT TO:<alice@localhost>\r\nRCPT TO:<nobody@localhost>\r\nDATA\r\n")
    assert raw.reply().startswith("250")
    assert raw.reply().startswith("250")
    assert raw.reply().startswith("550")
    assert raw.reply().startswith("354")
    raw.send(b"Subject: piped\r\n\r\nhello\r\n.\r\nQUIT\r\n")
    assert raw.reply().startswith("250")
    assert raw.reply().startswith("221")
    raw.close()
    assert len(mailbox_messages(server, "alice@localhost")) == 1


def test_bdat_chunks_deliver_exact_bytes(server):
    server.add_user("alice@localhost")
    raw = Raw(server.port("smtp"))
    assert "CHUNKING" in raw.cmd("EHLO client.example")
    raw.cmd("MAIL FROM:<x@example.org>")
    raw.cmd("RCPT TO:<alice@localhost>")
    part1 = b"Subject: chunks\r\n\r\n.leading dot kept\r\n"
    part2 = b"second chunk\r\n"
    raw.send(b"BDAT %d\r\n" % len(part1) + part1)
    assert raw.reply().startswith("250")
    raw.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
    assert raw.reply().startswith("250")
    raw.close()
    [stored] = mailbox_messages(server, "alice@localhost")
    assert stored.endswith(part1 + part2)


def test_utf8_address_round_trip(server):
    server.add_user("jörg@localhost")
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as c:
        c.ehlo()
        assert c.has_extn("smtputf8")
        msg = "From: zoë@exämple.org\r\nSubject: grüße\r\n\r\nhallo\r\n".encode()
        c.sendmail("zoë@exämple.org", ["jörg@localhost"], msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    [stored] = mailbox_messages(server, "jörg@localhost")
    assert "Return-Path: <zoë@exämple.org>".encode() in stored
    assert stored.endswith(msg)


@pytest.mark.parametrize("smuggle", [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r"])
def test_smuggling_attempts_do_not_end_data(server, smuggle):
    server.add_user("alice@localhost")
    server.add_user("victim@localhost")
    raw = Raw(server.port("smtp"))
    raw.cmd("EHLO attacker.example")
    raw.cmd("MAIL FROM:<x@example.org>")
    raw.cmd("RCPT TO:<alice@localhost>")
    assert raw.cmd("DATA").startswith("354")
    raw.send(b"Subject: one\r\n\r\nfirst" + smuggle +
             b"MAIL FROM:<admin@localhost>\r\nRCPT TO:<victim@localhost>\r\nDATA\r\nSubject: smuggled\r\n\r\n.\r\n")
    reply = raw.reply()
    raw.close()
    # Either refused as bare CR/LF, or accepted as one message: never two.
    assert reply.startswith("250") or reply.startswith("550")
    assert mailbox_messages(server, "victim@localhost") == []
    assert len(mailbox_messages(server, "alice@localhost")) <= 1


def test_starttls_command_injection_is_discarded(server):
    raw = Raw(server.port("smtp"))
    raw.cmd("EHLO client.example")
    raw.send(b"STARTTLS\r\nRSET\r\n")
    assert raw.reply().startswith("220")
    tls = insecure_context().wrap_socket(raw.sock, server_hostname="localhost")
    tls.sendall(b"NOOP\r\n")
    reply = tls.recv(4096).decode()
    # Only the NOOP's reply: the RSET sent in plaintext was never executed.
    assert reply.startswith("250") and reply.count("\r\n") == 1
    tls.close()


def test_lmtp_answers_once_per_recipient(server):
    server.add_user("alice@localhost")
    server.add_user("bob@localhost")
    with smtplib.LMTP("127.0.0.1", server.port("lmtp"), timeout=30) as c:
        c.ehlo()  # smtplib's LMTP sends LHLO
        c.mail("x@example.org")
        assert c.rcpt("alice@localhost")[0] == 250
        assert c.rcpt("bob@localhost")[0] == 250
        assert c.rcpt("nobody@localhost")[0] == 550
        c.putcmd("data")
        assert c.getreply()[0] == 354
        c.send(b"Subject: lmtp\r\n\r\nhello\r\n.\r\n")
        replies = [c.getreply(), c.getreply()]
    assert [code for code, _ in replies] == [250, 250]  # one per accepted recipient
    assert len(mailbox_messages(server, "alice@localhost")) == 1
    assert len(mailbox_messages(server, "bob@localhost")) == 1


def test_thousand_concurrent_connections_are_served(server):
    async def many() -> list[bool]:
        port = server.port("smtp")
        # Open all 1000 first, then talk: they are really concurrent.
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(1000)]
        greetings = await asyncio.gather(*(r.readline() for r, _ in conns))
        for _, w in conns:
            w.write(b"QUIT\r\n")
        byes = await asyncio.gather(*(r.readline() for r, _ in conns))
        for _, w in conns:
            w.close()
        return [g.startswith(b"220") and b.startswith(b"221") for g, b in zip(greetings, byes)]

    results = asyncio.run(many())
    assert all(results) and len(results) == 1000


def test_garbage_and_long_lines_get_errors_not_crashes(server):
    raw = Raw(server.port("smtp"))
    assert raw.cmd("HELLO?").startswith("500")
    raw.send(b"EHLO " + b"a" * 100_000 + b"\r\n")
    assert raw.reply().startswith("500")
    raw.send(b"\x00\xff\xfe garbage\r\n")
    assert raw.reply()[0] == "5"
    assert raw.cmd("NOOP").startswith("250")  # still usable
    raw.close()


def test_too_many_errors_disconnects(server):
    raw = Raw(server.port("smtp"))
    for _ in range(server.settings.limits.max_errors):
        assert raw.cmd("BOGUS").startswith("500")
    assert raw.reply().startswith("421 4.7.0")
    assert raw.file.readline() == b""  # closed
    raw.close()


def test_implicit_tls_port_speaks_tls_from_the_start(server):
    ctx = insecure_context()
    with socket.create_connection(("127.0.0.1", server.port("submissions")), timeout=15) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as tls:
            assert tls.recv(1024).startswith(b"220 ")
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_drain_lets_the_transaction_in_flight_finish_and_refuses_new_connections(server):
    server.add_user("alice@localhost")
    port = server.port("smtp")
    idle = Raw(port)
    busy = Raw(port)
    busy.cmd("EHLO client.example")
    busy.cmd("MAIL FROM:<x@example.org>")
    busy.cmd("RCPT TO:<alice@localhost>")
    assert busy.cmd("DATA").startswith("354")
    busy.send(b"Subject: in flight\r\n\r\nfirst half\r\n")
    stopping = asyncio.run_coroutine_threadsafe(server.app.stop(grace=20), server.loop)
    assert idle.reply().startswith("421")  # the idle session is told at once
    busy.send(b"second half\r\n.\r\n")
    assert busy.reply().startswith("250")  # the transaction in flight completes
    assert busy.reply().startswith("421")
    stopping.result(30)
    server.app = None  # stopped already
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    idle.close()
    busy.close()


@pytest.mark.parametrize("size", [1_000, 600_000])
def test_small_and_spilled_large_messages_arrive_exact_and_leave_no_spool_file(server, size):
    from postbote.smtp.server import SPOOL_MEMORY

    server.add_user("alice@localhost")
    line = b"0123456789" * 7 + b"\r\n"
    body = line * (size // len(line))
    message = b"From: bob@example.org\r\nSubject: sized\r\n\r\n" + body
    assert (len(message) > SPOOL_MEMORY) == (size > SPOOL_MEMORY)
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=60) as c:
        c.sendmail("bob@example.org", ["alice@localhost"], message)
    [stored] = mailbox_messages(server, "alice@localhost")
    assert stored.endswith(message)
    head = stored[: len(stored) - len(message)]
    assert head.startswith(b"Return-Path: <bob@example.org>\r\nReceived: ")
    assert b"\r\nAuthentication-Results: localhost;" in head  # a filter's field, written in both paths
    assert list((server.settings.data_path / "spool").iterdir()) == []
