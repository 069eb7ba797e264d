"""Outbound delivery against scripted SMTP peers on loopback, routed by the test DNS server."""

from __future__ import annotations

import asyncio

from postbote import metrics
from postbote.store.sqlite import SqliteStore
from tests.queue.conftest import PEER_HOSTS, queue_entries, route_to, start_postbote, wait_for
from tests.queue.scripted import ALICE, dsns, message, peer, send, status_fields


def sent_metric() -> float:
    return metrics.REGISTRY.get_sample_value("postbote_messages_sent_total", {"result": "sent"}) or 0.0

def test_remote_recipient_is_delivered_to_the_domains_mx_without_our_return_path(server, dns, mx_port, peers):
    route_to(dns, "remote.test", PEER_HOSTS[0])
    p = peer(peers, mx_port)
    before = sent_metric()
    send(server, ["bob@remote.test"])
    [got] = wait_for(lambda: p.messages, what="delivery")
    assert got.sender == ALICE and got.recipients == ["bob@remote.test"]
    wait_for(lambda: sent_metric() == before + 1, what="the sent counter")
    assert not got.data.lower().startswith(b"return-path:")
    assert b"Subject: hello" in got.data and b"Received: from" in got.data
    wait_for(lambda: not queue_entries(server), what="empty queue")


def test_mx_answering_4xx_is_retried_and_then_accepted(server, dns, mx_port, peers):
    route_to(dns, "slow.test", PEER_HOSTS[0])
    p = peer(peers, mx_port, replies={"rcpt": lambda n: "451 4.7.1 Greylisted, come back later" if n == 1
                                      else "250 2.1.5 OK"})
    send(server, ["carol@slow.test"])
    [entry] = wait_for(lambda: [e for e in queue_entries(server) if e.attempts], what="deferred entry")
    assert "451 4.7.1" in entry.last_reply
    [got] = wait_for(lambda: p.messages, what="delivery on retry")
    assert got.recipients == ["carol@slow.test"]
    wait_for(lambda: not queue_entries(server), what="empty queue")
    assert p.attempts["rcpt"] == 2
    assert dsns(server) == []


def test_smtputf8_message_to_a_server_without_smtputf8_bounces(server, dns, mx_port, peers):
    route_to(dns, "ascii.test", PEER_HOSTS[0])
    p = peer(peers, mx_port, extensions=("PIPELINING", "8BITMIME"))
    send(server, ["bob@ascii.test"], message("bob@ascii.test", body="Grüße\r\n").replace(b"hello", "héllo".encode()),
         mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    [dsn] = wait_for(lambda: dsns(server), what="DSN")
    assert "Status: 5.6.7" in status_fields(dsn)
    assert p.messages == []


def test_several_queued_messages_share_one_pipelined_connection(tmp_path, dns, mx_port, peers):
    srv = start_postbote(tmp_path, dns, mx_port, retry_schedule=("1h",))
    try:
        srv.add_user(ALICE)
        route_to(dns, "remote.test", PEER_HOSTS[0])
        for i in range(5):
            send(srv, [f"u{i}@remote.test"])
        wait_for(lambda: all(e.attempts for e in queue_entries(srv)) and len(queue_entries(srv)) == 5,
                 what="first attempts to fail (no peer yet)")
        p = peer(peers, mx_port)
        srv.run(srv.app.store.retry_outbound(None, 0))
        wait_for(lambda: len(p.messages) == 5, what="five deliveries")
        assert p.connections == 1
    finally:
        srv.stop()


def test_unreachable_first_mx_falls_back_to_the_next_one(server, dns, mx_port, peers):
    dns.add("two.test", "MX", "10 mx1.two.test.", "20 mx2.two.test.")
    dns.add("mx1.two.test", "A", PEER_HOSTS[0])  # nothing listens there
    dns.add("mx2.two.test", "A", PEER_HOSTS[1])
    p = peer(peers, mx_port, n=1)
    send(server, ["bob@two.test"])
    wait_for(lambda: p.messages, what="delivery via the second MX")


def test_domain_without_mx_is_delivered_to_its_address(server, dns, mx_port, peers):
    dns.add("plain.test", "A", PEER_HOSTS[0])
    p = peer(peers, mx_port)
    send(server, ["bob@plain.test"])
    wait_for(lambda: p.messages, what="delivery to the implicit MX")


def test_stop_waits_for_the_transaction_in_flight_and_records_it(tmp_path, dns, mx_port, peers):
    srv = start_postbote(tmp_path, dns, mx_port)
    srv.add_user(ALICE)
    route_to(dns, "remote.test", PEER_HOSTS[0])
    p = peer(peers, mx_port, delay=1.0)  # the final reply comes a second after the data
    send(srv, ["bob@remote.test"])
    wait_for(lambda: p.attempts.get("rcpt"), what="the transaction to start")
    srv.stop(grace=10)
    assert len(p.messages) == 1

    async def left() -> list:
        store = SqliteStore(tmp_path / "data")
        await store.open()
        try:
            return await store.list_outbound()
        finally:
            await store.close()

    assert asyncio.run(left()) == []  # recorded as sent before the store closed: never sent twice


def test_opportunistic_tls_that_fails_is_retried_in_the_clear(server, dns, mx_port, peers):
    route_to(dns, "oldtls.test", PEER_HOSTS[0])
    p = peer(peers, mx_port, broken_tls=True)
    send(server, ["bob@oldtls.test"])
    [got] = wait_for(lambda: p.messages, what="delivery without TLS")
    assert not got.tls and p.connections == 2
