"""Sieve at local delivery, end to end: mail arrives over real SMTP, the account's active script
decides, and the result is read back over IMAP or from the outbound queue."""

from __future__ import annotations

import imaplib
import smtplib

import pytest

from tests.queue.conftest import LOCAL_DOMAIN, PEER_HOSTS, dns, mx_port, route_to, start_postbote  # noqa: F401
from tests.smtp.helpers import mailbox_messages

ALICE = f"alice@{LOCAL_DOMAIN}"
BOB = f"bob@{LOCAL_DOMAIN}"
OUTSIDE = "carol@example.org"


@pytest.fixture
def server(tmp_path, dns, mx_port):  # noqa: F811
    # outside mail is routed to a loopback address where nothing listens: it stays queued
    route_to(dns, "example.org", PEER_HOSTS[0])
    srv = start_postbote(tmp_path, dns, mx_port, retry_schedule=("1h",))
    srv.add_user(ALICE)
    srv.add_user(BOB)
    yield srv
    srv.stop()


def install(server, address: str, script: str) -> None:
    store = server.app.store

    async def put() -> None:
        account = await store.get_account(address)
        await store.sieve_put(account.id, "main", script)
        await store.sieve_activate(account.id, "main")

    server.run(put())


def send(server, to: str, subject: str = "hello", sender: str = OUTSIDE,
         extra: str = "", header_from: str | None = None) -> None:
    message = (f"From: {header_from or sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
               f"Message-ID: <{subject.replace(' ', '.')}@example.org>\r\n{extra}\r\n"
               f"Body of {subject}.\r\n").encode()
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as client:
        client.sendmail(sender, [to], message)


def outbound(server) -> list:
    return server.run(server.app.store.list_outbound())


def outbound_blob(server, entry) -> bytes:
    return server.run(server.app.store.read_blob(entry.blob_id))


def imap_fetch_flags(server, mailbox: str) -> list[bytes]:
    client = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=10)
    try:
        client.login(ALICE, "password123")
        typ, _ = client.select(f'"{mailbox}"')
        assert typ == "OK"
        typ, data = client.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK"
        return [part[0] + part[1] for part in data if isinstance(part, tuple)]
    finally:
        client.logout()


def test_fileinto_puts_the_message_in_that_folder_visible_over_imap(server) -> None:
    server.run(server.app.store.create_mailbox(
        server.run(server.app.store.get_account(ALICE)).id, "Lists"))
    install(server, ALICE, 'require "fileinto";\nif header :contains "subject" "[list]" '
                           '{ fileinto "Lists"; }')
    send(server, ALICE, "[list] news")
    send(server, ALICE, "personal")
    assert [b"[list] news" in m for m in mailbox_messages(server, ALICE, "Lists")] == [True]
    assert [b"personal" in m for m in mailbox_messages(server, ALICE)] == [True]
    fetched = imap_fetch_flags(server, "Lists")
    assert len(fetched) == 1 and b"[list] news" in fetched[0]


def test_fileinto_create_makes_the_folder_and_missing_folder_falls_back_to_inbox(server) -> None:
    install(server, ALICE, 'require ["fileinto", "mailbox"];\nfileinto :create "New/Sub";\n'
                           'fileinto "Does-Not-Exist";')
    send(server, ALICE, "created")
    assert len(mailbox_messages(server, ALICE, "New/Sub")) == 1
    assert len(mailbox_messages(server, ALICE)) == 1


def test_discard_stores_nothing_and_the_sender_sees_success(server) -> None:
    install(server, ALICE, 'if header :is "subject" "junk" { discard; }')
    send(server, ALICE, "junk")  # smtplib raises if the message were refused
    send(server, ALICE, "fine")
    assert [b"fine" in m for m in mailbox_messages(server, ALICE)] == [True]


def test_imap4flags_set_flagged_and_a_keyword(server) -> None:
    install(server, ALICE, 'require "imap4flags";\naddflag ["\\\\Flagged", "$Important"];')
    send(server, ALICE, "flag me")
    [fetched] = imap_fetch_flags(server, "INBOX")
    assert b"\\Flagged" in fetched and b"$Important" in fetched


def test_redirect_queues_the_message_for_the_address_with_the_original_sender(server) -> None:
    install(server, ALICE, 'redirect "dave@example.org";')
    send(server, ALICE, "forward me", sender="erin@example.net")
    [entry] = [e for e in outbound(server) if "dave@example.org" in e.recipients]
    assert entry.sender == "erin@example.net"
    assert b"forward me" in outbound_blob(server, entry)
    assert mailbox_messages(server, ALICE) == []  # redirect cancelled the implicit keep


def test_redirect_loop_between_two_accounts_ends_in_a_mailbox(server) -> None:
    install(server, ALICE, f'redirect "{BOB}";')
    install(server, BOB, f'redirect "{ALICE}";')
    send(server, ALICE, "ping pong")
    from tests.queue.conftest import wait_for
    wait_for(lambda: mailbox_messages(server, ALICE) or mailbox_messages(server, BOB),
             what="the looping message to be kept")


def test_vacation_replies_once_per_period_to_each_sender(server) -> None:
    install(server, ALICE, 'require "vacation";\nvacation :days 7 "I am away until Monday.";')
    send(server, ALICE, "first")
    send(server, ALICE, "second")
    replies = [e for e in outbound(server) if OUTSIDE in e.recipients]
    assert len(replies) == 1 and replies[0].sender == ""
    reply = outbound_blob(server, replies[0])
    assert b"Auto-Submitted: auto-replied" in reply
    assert b"Subject: Auto: first" in reply
    assert b"In-Reply-To: <first@example.org>" in reply
    assert b"I am away until Monday." in reply
    assert len(mailbox_messages(server, ALICE)) == 2  # vacation keeps the messages


def test_vacation_does_not_answer_lists_or_mail_not_addressed_to_the_account(server) -> None:
    install(server, ALICE, 'require "vacation";\nvacation "away";')
    send(server, ALICE, "list mail", extra="List-Id: <news.example.org>\r\n")
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as client:
        client.sendmail(OUTSIDE, [ALICE], b"From: x@example.org\r\nTo: someone@else.org\r\n"
                                          b"Subject: bcc\r\n\r\nhi\r\n")
    assert [e for e in outbound(server) if OUTSIDE in e.recipients] == []


def test_vacation_reply_to_a_local_sender_is_delivered_locally(server) -> None:
    install(server, ALICE, 'require "vacation";\nvacation "away";')
    send(server, ALICE, "from bob", sender=BOB)
    [reply] = mailbox_messages(server, BOB)
    assert b"Subject: Auto: from bob" in reply and b"Return-Path: <>" in reply


def test_reject_of_a_single_recipient_message_is_the_smtp_reply(server) -> None:
    # RFC 5429 §2.1: refused in the protocol where possible, so no notice can hit a forged sender.
    install(server, ALICE, 'require "reject";\nreject "No thank you.\nReally.";')
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(server, ALICE, "unwanted")
    assert refused.value.smtp_code == 550
    assert refused.value.smtp_error == b"5.7.1 No thank you. Really."
    assert outbound(server) == [] and mailbox_messages(server, ALICE) == []


def _send_to_both(server, subject: str, sender: str = OUTSIDE) -> None:
    message = (f"From: {OUTSIDE}\r\nTo: {ALICE}, {BOB}\r\nSubject: {subject}\r\n"
               f"Message-ID: <{subject}@example.org>\r\n\r\nBody.\r\n").encode()
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as client:
        client.sendmail(sender, [ALICE, BOB], message)


def test_reject_in_a_message_for_several_recipients_mails_a_refusal_to_the_sender(server) -> None:
    install(server, ALICE, 'require "reject";\nreject "No thank you.";')
    _send_to_both(server, "unwanted")  # SMTP has one reply for both: Bob's copy is accepted
    [notice] = [e for e in outbound(server) if OUTSIDE in e.recipients]
    assert notice.sender == ""
    body = outbound_blob(server, notice)
    assert b"No thank you." in body and b"disposition-notification" in body
    assert b"Message-ID: <unwanted@example.org>" in body
    assert mailbox_messages(server, ALICE) == [] and len(mailbox_messages(server, BOB)) == 1


def test_reject_never_mails_the_null_sender(server) -> None:
    install(server, ALICE, 'require "reject";\nreject "No.";')
    _send_to_both(server, "bounce", sender="")
    assert outbound(server) == []


def test_reject_over_lmtp_refuses_only_that_recipient(server) -> None:
    install(server, ALICE, 'require "ereject";\nereject "Not here.";')
    # smtplib reads one reply after DATA; LMTP gives one per recipient (RFC 2033 §4.2).
    with smtplib.LMTP("127.0.0.1", server.port("lmtp"), timeout=30) as client:
        client.ehlo("mx.example.org")
        client.mail(OUTSIDE)
        client.rcpt(ALICE)
        client.rcpt(BOB)
        assert client.docmd("DATA")[0] == 354
        client.send(f"From: {OUTSIDE}\r\nSubject: lmtp\r\n\r\nBody.\r\n.\r\n".encode())
        replies = [client.getreply(), client.getreply()]
    assert replies == [(550, b"5.7.1 Not here."), (250, replies[1][1])]
    assert outbound(server) == [] and len(mailbox_messages(server, BOB)) == 1


def test_runtime_error_still_delivers_to_inbox(server) -> None:
    install(server, ALICE, 'redirect "this is not an address";')
    send(server, ALICE, "kept anyway")
    assert len(mailbox_messages(server, ALICE)) == 1


def test_an_invalid_stored_script_still_delivers_to_inbox(server) -> None:
    install(server, ALICE, 'fileinto "x";')  # fileinto without require: invalid
    send(server, ALICE, "kept anyway")
    assert len(mailbox_messages(server, ALICE)) == 1


def test_accounts_without_a_script_are_unaffected(server) -> None:
    install(server, ALICE, "discard;")
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as client:
        client.sendmail(OUTSIDE, [ALICE, BOB], b"From: carol@example.org\r\nSubject: both\r\n\r\nhi\r\n")
    assert mailbox_messages(server, ALICE) == []
    assert len(mailbox_messages(server, BOB)) == 1


def test_keep_of_spam_goes_to_junk_unless_the_script_files_it_elsewhere(server) -> None:
    from postbote.delivery.service import Accepted, Envelope, Recipient

    account = server.run(server.app.store.get_account(ALICE))
    install(server, ALICE, 'require "fileinto";\nif header :contains "subject" "invoice" '
                           '{ fileinto "Archive"; }')
    assert server.run(server.app.store.get_mailbox(account.id, "Archive")) is not None

    def deliver(subject: str) -> list:
        raw = f"From: {OUTSIDE}\r\nSubject: {subject}\r\n\r\nspam?\r\n".encode()
        envelope = Envelope(OUTSIDE, (Recipient(ALICE, (account.id,)),), "TESTQUEUEID")
        return server.run(server.app.delivery.deliver(envelope, raw, mailbox="Junk"))

    assert deliver("cheap pills") == [Accepted(ALICE)]
    assert deliver("your invoice") == [Accepted(ALICE)]
    assert [b"cheap pills" in m for m in mailbox_messages(server, ALICE, "Junk")] == [True]
    assert [b"invoice" in m for m in mailbox_messages(server, ALICE, "Archive")] == [True]


def test_a_new_or_changed_script_applies_to_the_very_next_message(server) -> None:
    # The first delivery finds no script (and remembers that); activating one must count at once.
    send(server, ALICE, "before")
    install(server, ALICE, 'require ["fileinto", "mailbox"]; fileinto :create "First";')
    send(server, ALICE, "after")
    install(server, ALICE, 'require ["fileinto", "mailbox"]; fileinto :create "Second";')
    send(server, ALICE, "changed")
    assert [b"before" in m for m in mailbox_messages(server, ALICE)] == [True]
    assert [b"after" in m for m in mailbox_messages(server, ALICE, "First")] == [True]
    assert [b"changed" in m for m in mailbox_messages(server, ALICE, "Second")] == [True]
