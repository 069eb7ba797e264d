"""Bounces and notices (RFC 3464 DSNs) from outbound delivery, against scripted peers."""

from __future__ import annotations

import smtplib

from tests.queue.conftest import LOCAL_DOMAIN, PEER_HOSTS, queue_entries, route_to, start_postbote, wait_for
from tests.queue.scripted import ALICE, dsns, message, peer, send, status_fields
from tests.smtp.helpers import mailbox_messages


def test_mx_answering_5xx_bounces_with_a_dsn_to_the_sender(server, dns, mx_port, peers):
    route_to(dns, "strict.test", PEER_HOSTS[0])
    peer(peers, mx_port, replies={"rcpt": lambda n: "550 5.1.1 <dave@strict.test>: no such user"})
    send(server, ["dave@strict.test"], message("dave@strict.test", "lost letter"), mail_options=["RET=HDRS"])
    [dsn] = wait_for(lambda: dsns(server), what="DSN")
    assert dsn["From"].addresses[0].username == "MAILER-DAEMON"
    assert dsn.get_content_type() == "multipart/report" and dsn.get_param("report-type") == "delivery-status"
    fields = status_fields(dsn)
    assert "Final-Recipient: rfc822; dave@strict.test" in fields
    assert "Action: failed" in fields and "Status: 5.1.1" in fields
    assert "550 5.1.1" in fields
    returned = [p for p in dsn.walk() if p.get_content_type() == "text/rfc822-headers"]
    assert returned and "Subject: lost letter" in returned[0].get_content()
    raw = mailbox_messages(server, ALICE)[-1]
    assert raw.startswith(b"Return-Path: <>")
    wait_for(lambda: not queue_entries(server), what="empty queue")


def test_null_mx_domain_fails_at_once(server, dns, mx_port, peers):
    dns.add("nomail.test", "MX", "0 .")
    send(server, ["erin@nomail.test"])
    [dsn] = wait_for(lambda: dsns(server), timeout=5, what="DSN")
    fields = status_fields(dsn)
    assert "Status: 5.1.10" in fields and "null MX" in fields
    assert not queue_entries(server)


def test_notify_never_gets_no_dsn(server, dns, mx_port, peers):
    route_to(dns, "strict.test", PEER_HOSTS[0])
    p = peer(peers, mx_port, replies={"rcpt": lambda n: "550 5.1.1 no such user"})
    send(server, ["dave@strict.test"], rcpt_options=["NOTIFY=NEVER"])
    wait_for(lambda: p.attempts.get("rcpt"), what="attempt")
    wait_for(lambda: not queue_entries(server), what="empty queue")
    assert dsns(server) == []


def test_dsn_parameters_are_passed_on_to_a_server_that_offers_dsn(server, dns, mx_port, peers):
    route_to(dns, "remote.test", PEER_HOSTS[0])
    p = peer(peers, mx_port)
    send(server, ["bob@remote.test"], mail_options=["RET=FULL", "ENVID=abc+2Bdef"],
         rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;bob@remote.test"])
    [got] = wait_for(lambda: p.messages, what="delivery")
    assert "RET=FULL" in got.mail_line and "ENVID=abc+2Bdef" in got.mail_line
    assert "NOTIFY=SUCCESS,FAILURE" in got.rcpt_lines[0] and "ORCPT=rfc822;bob@remote.test" in got.rcpt_lines[0]


def test_success_notify_to_a_server_without_dsn_gets_a_relayed_dsn(server, dns, mx_port, peers):
    route_to(dns, "remote.test", PEER_HOSTS[0])
    peer(peers, mx_port, extensions=("PIPELINING", "8BITMIME"))
    send(server, ["bob@remote.test"], rcpt_options=["NOTIFY=SUCCESS"])
    [dsn] = wait_for(lambda: dsns(server), what="relayed DSN")
    assert "Action: relayed" in status_fields(dsn)


def test_failure_of_a_null_sender_message_is_never_bounced(server, dns, mx_port, peers):
    """A message from <> forwarded by an alias to a server that refuses it: no DSN, no loop."""
    route_to(dns, "strict.test", PEER_HOSTS[0])
    p = peer(peers, mx_port, replies={"rcpt": lambda n: "550 5.1.1 no such user"})
    server.run(server.app.store.add_alias(f"fwd@{LOCAL_DOMAIN}", "dave@strict.test"))
    client = smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30)
    client.sendmail("", [f"fwd@{LOCAL_DOMAIN}"], b"From: <>\r\nSubject: bounce\r\n\r\nbody\r\n")
    client.quit()
    wait_for(lambda: p.attempts.get("rcpt"), what="attempt")
    wait_for(lambda: not queue_entries(server), what="empty queue")
    assert dsns(server) == []


def test_long_deferred_message_gets_one_delay_notice_then_bounces_when_it_expires(tmp_path, dns, mx_port, peers):
    srv = start_postbote(tmp_path, dns, mx_port, delay_notice_after=1, give_up_after=3)
    try:
        srv.add_user(ALICE)
        route_to(dns, "busy.test", PEER_HOSTS[0])
        peer(peers, mx_port, replies={"rcpt": lambda n: "452 4.2.2 Mailbox busy"})
        send(srv, ["frank@busy.test"])
        [delayed] = wait_for(lambda: dsns(srv), what="delay notice")
        fields = status_fields(delayed)
        assert "Action: delayed" in fields and "Will-Retry-Until:" in fields and "Status: 4.2.2" in fields
        assert queue_entries(srv)
        wait_for(lambda: len(dsns(srv)) == 2, what="the final bounce")
        final = status_fields(dsns(srv)[1])
        assert "Action: failed" in final and "Status: 4.4.7" in final and "452 4.2.2" in final and "gave up" in final
        assert not queue_entries(srv)
        assert sum("Action: delayed" in status_fields(d) for d in dsns(srv)) == 1
    finally:
        srv.stop()
