"""MTA-STS (RFC 8461) and DANE (RFC 7672) against real TLS peers and a real HTTPS policy server."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from tests.dnsserver import DnsServer
from tests.queue.conftest import LOCAL_DOMAIN, PEER_HOSTS, queue_entries, route_to, start_postbote, wait_for
from tests.queue.peers import Peer, free_port
from tests.queue.tlscerts import TestCa
from tests.smtp.helpers import submit

ALICE = f"alice@{LOCAL_DOMAIN}"
POLICY_HOST = "127.0.0.9"
ENFORCE = "version: STSv1\r\nmode: enforce\r\nmx: mx.sts.test\r\nmax_age: 86400\r\n"


class PolicyServer:
    """https://mta-sts.DOMAIN/.well-known/mta-sts.txt on loopback, with a certificate of the test CA."""

    def __init__(self, ca: TestCa, domain: str, policy: str) -> None:
        issued = ca.issue(f"mta-sts.{domain}")
        body = policy.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/.well-known/mta-sts.txt":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.port = free_port((POLICY_HOST,))
        self.httpd = http.server.ThreadingHTTPServer((POLICY_HOST, self.port), Handler)
        self.httpd.socket = issued.context().wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def ca(tmp_path):
    return TestCa(tmp_path / "ca")


def send(server, to: str) -> None:
    client = submit(server, ALICE)
    client.sendmail(ALICE, [to], f"From: <{ALICE}>\r\nTo: <{to}>\r\nSubject: tls\r\n\r\nsecret\r\n".encode())
    client.quit()


def sts_setup(tmp_path, dns, mx_port, ca):
    route_to(dns, "sts.test", PEER_HOSTS[0])
    dns.txt("_mta-sts.sts.test", "v=STSv1; id=20261130")
    dns.add("mta-sts.sts.test", "A", POLICY_HOST)
    policy = PolicyServer(ca, "sts.test", ENFORCE)
    srv = start_postbote(tmp_path, dns, mx_port, tls_ca_file=str(ca.path), mta_sts_port=policy.port)
    srv.add_user(ALICE)
    return srv, policy


def test_mta_sts_enforce_domain_whose_mx_offers_no_tls_is_not_delivered_to(tmp_path, dns, mx_port, ca, peers):
    srv, policy = sts_setup(tmp_path, dns, mx_port, ca)
    try:
        p = Peer(PEER_HOSTS[0], mx_port).start()  # no STARTTLS
        peers.append(p)
        send(srv, "bob@sts.test")
        [entry] = wait_for(lambda: [e for e in queue_entries(srv) if e.attempts], what="a failed attempt")
        assert "STARTTLS" in entry.last_reply and entry.last_reply.startswith("451")
        time.sleep(1.5)  # the retry schedule is 1 s: later attempts must not send either
        assert p.messages == [] and p.attempts.get("mail") is None
        assert queue_entries(srv)
    finally:
        srv.stop()
        policy.stop()


def test_mta_sts_enforce_refuses_a_certificate_not_valid_for_the_mx(tmp_path, dns, mx_port, ca, peers):
    srv, policy = sts_setup(tmp_path, dns, mx_port, ca)
    try:
        p = Peer(PEER_HOSTS[0], mx_port, tls_context=ca.issue("mx.sts.test", self_signed=True).context()).start()
        peers.append(p)
        send(srv, "bob@sts.test")
        [entry] = wait_for(lambda: [e for e in queue_entries(srv) if e.attempts], what="a failed attempt")
        assert "TLS" in entry.last_reply
        assert p.messages == []
    finally:
        srv.stop()
        policy.stop()


def test_mta_sts_enforce_delivers_over_verified_tls(tmp_path, dns, mx_port, ca, peers):
    srv, policy = sts_setup(tmp_path, dns, mx_port, ca)
    try:
        p = Peer(PEER_HOSTS[0], mx_port, tls_context=ca.issue("mx.sts.test").context()).start()
        peers.append(p)
        send(srv, "bob@sts.test")
        [got] = wait_for(lambda: p.messages, what="delivery")
        assert got.tls
    finally:
        srv.stop()
        policy.stop()


def test_mta_sts_policy_cached_before_a_restart_holds_when_the_txt_record_is_hidden(
        tmp_path, dns, mx_port, ca, peers):
    srv, policy = sts_setup(tmp_path, dns, mx_port, ca)
    try:
        good = Peer(PEER_HOSTS[0], mx_port, tls_context=ca.issue("mx.sts.test").context()).start()
        send(srv, "bob@sts.test")
        wait_for(lambda: good.messages, what="delivery over verified TLS")
    finally:
        srv.stop()
        policy.stop()
        good.stop()
    # An attacker hides the policy and strips STARTTLS; postbote restarts meanwhile.
    dns.clear("_mta-sts.sts.test")
    stripped = Peer(PEER_HOSTS[0], mx_port).start()
    peers.append(stripped)
    srv = start_postbote(tmp_path, dns, mx_port, tls_ca_file=str(ca.path), mta_sts_port=policy.port)
    try:
        send(srv, "bob@sts.test")
        [entry] = wait_for(lambda: [e for e in queue_entries(srv) if e.attempts], what="a failed attempt")
        # RFC 8461 §5.1: the cached policy stays in force until its max_age ends.
        assert "STARTTLS" in entry.last_reply
        assert stripped.messages == []
    finally:
        srv.stop()


def test_mta_sts_enforce_skips_mx_hosts_the_policy_does_not_list(tmp_path, dns, mx_port, ca, peers):
    srv, policy = sts_setup(tmp_path, dns, mx_port, ca)
    try:
        dns.clear("sts.test", "MX")
        dns.add("sts.test", "MX", "10 rogue.example.", "20 mx.sts.test.")
        dns.add("rogue.example", "A", PEER_HOSTS[1])
        rogue = Peer(PEER_HOSTS[1], mx_port, tls_context=ca.issue("rogue.example").context()).start()
        good = Peer(PEER_HOSTS[0], mx_port, tls_context=ca.issue("mx.sts.test").context()).start()
        peers += [rogue, good]
        send(srv, "bob@sts.test")
        wait_for(lambda: good.messages, what="delivery to the listed MX")
        assert rogue.connections == 0
    finally:
        srv.stop()
        policy.stop()


@pytest.fixture
def signed_dns():
    srv = DnsServer(authenticated=True).start()
    yield srv
    srv.stop()


def test_dane_delivers_when_the_certificate_matches_the_tlsa_record(tmp_path, signed_dns, mx_port, ca, peers):
    issued = ca.issue("mx.dane.test", self_signed=True)  # DANE-EE: no CA needed
    route_to(signed_dns, "dane.test", PEER_HOSTS[0])
    signed_dns.add(f"_{mx_port}._tcp.mx.dane.test", "TLSA", issued.tlsa_311())
    p = Peer(PEER_HOSTS[0], mx_port, tls_context=issued.context()).start()
    peers.append(p)
    srv = start_postbote(tmp_path, signed_dns, mx_port)
    try:
        srv.add_user(ALICE)
        send(srv, "bob@dane.test")
        [got] = wait_for(lambda: p.messages, what="delivery")
        assert got.tls
    finally:
        srv.stop()


def test_dane_refuses_a_certificate_that_matches_no_tlsa_record(tmp_path, signed_dns, mx_port, ca, peers):
    route_to(signed_dns, "dane.test", PEER_HOSTS[0])
    signed_dns.add(f"_{mx_port}._tcp.mx.dane.test", "TLSA", ca.issue("other.test").tlsa_311())
    p = Peer(PEER_HOSTS[0], mx_port, tls_context=ca.issue("mx.dane.test", self_signed=True).context()).start()
    peers.append(p)
    srv = start_postbote(tmp_path, signed_dns, mx_port)
    try:
        srv.add_user(ALICE)
        send(srv, "bob@dane.test")
        [entry] = wait_for(lambda: [e for e in queue_entries(srv) if e.attempts], what="a failed attempt")
        assert "TLSA" in entry.last_reply
        assert p.messages == []
    finally:
        srv.stop()


def test_tlsa_records_without_dnssec_are_ignored(tmp_path, dns, mx_port, ca, peers):
    route_to(dns, "dane.test", PEER_HOSTS[0])
    dns.add(f"_{mx_port}._tcp.mx.dane.test", "TLSA", ca.issue("other.test").tlsa_311())
    p = Peer(PEER_HOSTS[0], mx_port, tls_context=ca.issue("mx.dane.test", self_signed=True).context()).start()
    peers.append(p)
    srv = start_postbote(tmp_path, dns, mx_port)
    try:
        srv.add_user(ALICE)
        send(srv, "bob@dane.test")
        [got] = wait_for(lambda: p.messages, what="opportunistic delivery")
        assert got.tls
    finally:
        srv.stop()
