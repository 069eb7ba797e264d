"""A real Postfix as the remote MX: DKIM signatures that dkimpy and OpenDKIM verify, and bounces.

opendkim-testmsg has no option for a DNS server: it asks the system
resolver (libresolv), which only talks to port 53 of the addresses in
/etc/resolv.conf. So the test serves the test zones on 127.0.53.1:53 too (a
relay into the test DNS server) and runs opendkim-testmsg in a private mount
namespace (``unshare --mount``) where /etc/resolv.conf is a bind mount of a
file naming that address. The system's resolver configuration is never
touched.
"""

from __future__ import annotations

import email
import email.policy
import shutil
import socket
import socketserver
import struct
import subprocess
import tempfile
import threading
from pathlib import Path

import dkim
import dns.resolver
import pytest

from postbote.mailauth.keys import generate_keys
from tests.conftest import require
from tests.queue.conftest import LOCAL_DOMAIN, PEER_HOSTS, queue_entries, route_to, start_postbote, wait_for
from tests.queue.peers import free_port
from tests.queue.postfix import Postfix, available
from tests.smtp.helpers import mailbox_messages, submit

ALICE = f"alice@{LOCAL_DOMAIN}"
RESOLVER_ADDRESS = "127.0.53.1"


@pytest.fixture(scope="module")
def postfix():
    """One Postfix for the module (starting one takes seconds); each test has its own recipients."""
    require(available(), "Postfix (Debian postfix) and root are needed for a private Postfix instance")
    root = Path(tempfile.mkdtemp(prefix="postbote-postfix-"))
    users = ["bob", "carol", "dan", "erin", "frank"]
    pf = Postfix(root, PEER_HOSTS[1], free_port(PEER_HOSTS), domains={"remote.test": users}).start()
    yield pf
    pf.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def server(tmp_path, dns, postfix):
    route_to(dns, "remote.test", PEER_HOSTS[1])
    srv = start_postbote(tmp_path, dns, postfix.port)
    srv.add_user(ALICE)
    yield srv
    srv.stop()


def publish_keys(server, dns) -> list:
    keys = generate_keys(server.settings.data_path, LOCAL_DOMAIN)
    for key in keys:
        dns.txt(f"{key.selector}._domainkey.{LOCAL_DOMAIN}", key.dns_record())
    return keys


def send(server, to: list[str], subject: str = "signed") -> None:
    client = submit(server, ALICE)
    body = "A line.\r\n.a line with a leading dot\r\n" + "x" * 200 + "\r\n"
    client.sendmail(ALICE, to, f"From: Alice <{ALICE}>\r\nTo: {', '.join(to)}\r\nSubject: {subject}\r\n\r\n{body}"
                    .encode())
    client.quit()


def crlf(message: bytes) -> bytes:
    return message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_submitted_message_arrives_at_postfix_with_signatures_dkimpy_and_opendkim_verify(server, dns, postfix):
    keys = publish_keys(server, dns)
    send(server, ["bob@remote.test"])
    [raw] = wait_for(lambda: postfix.maildir("bob@remote.test"), what="delivery to Postfix")
    message = crlf(raw)
    assert b"leading dot" in message
    verifier = dkim.DKIM(message)
    resolver = dns_resolver(dns)
    signatures = [v for k, v in email.message_from_bytes(message, policy=email.policy.compat32).items()
                  if k.lower() == "dkim-signature"]
    assert len(signatures) == len(keys) == 2
    algorithms = {s.split("a=", 1)[1].split(";", 1)[0].strip() for s in signatures}
    assert algorithms == {"ed25519-sha256", "rsa-sha256"}
    for i in range(len(signatures)):
        assert verifier.verify(idx=i, dnsfunc=resolver), f"dkimpy rejects signature {i}"
    # opendkim-testmsg passes a message when any one signature verifies: give it one at a time.
    for single in one_signature_each(message):
        opendkim_verify(dns, single)


def test_tampered_message_fails_opendkim_verification(server, dns, postfix):
    """The control for the test above: opendkim-testmsg really checks, through our DNS."""
    publish_keys(server, dns)
    send(server, ["dan@remote.test"])
    [raw] = wait_for(lambda: postfix.maildir("dan@remote.test"), what="delivery to Postfix")
    for single in one_signature_each(crlf(raw).replace(b"A line.", b"B line.")):
        with pytest.raises(AssertionError, match="status"):
            opendkim_verify(dns, single)


def test_opendkim_checks_each_signature_against_its_published_key(server, dns, postfix):
    """A second control: with the RSA key's record replaced, only the Ed25519 signature verifies."""
    keys = publish_keys(server, dns)
    rsa = next(k for k in keys if k.algorithm == "rsa-sha256")
    dns.clear(f"{rsa.selector}._domainkey.{LOCAL_DOMAIN}")
    dns.txt(f"{rsa.selector}._domainkey.{LOCAL_DOMAIN}", generate_keys(server.settings.data_path / "other",
                                                                      LOCAL_DOMAIN)[1].dns_record())
    send(server, ["erin@remote.test"])
    [raw] = wait_for(lambda: postfix.maildir("erin@remote.test"), what="delivery to Postfix")
    results = {}
    for single in one_signature_each(crlf(raw)):
        algorithm = b"ed25519" if b"a=ed25519-sha256" in single else b"rsa"
        try:
            opendkim_verify(dns, single)
            results[algorithm] = True
        except AssertionError:
            results[algorithm] = False
    assert results == {b"ed25519": True, b"rsa": False}


def test_recipient_postfix_refuses_gets_a_dsn_and_the_other_the_message(server, dns, postfix):
    send(server, ["carol@remote.test", "nobody@remote.test"], subject="half")
    wait_for(lambda: postfix.maildir("carol@remote.test"), what="delivery of the good recipient")
    dsn = wait_for(lambda: [m for m in mailbox_messages(server, ALICE) if b"multipart/report" in m], what="DSN")[0]
    parsed = email.message_from_bytes(dsn, policy=email.policy.default)
    status = next(p for p in parsed.walk() if p.get_content_type() == "message/delivery-status")
    text = "\n".join(str(b) for b in status.get_payload())
    assert "Final-Recipient: rfc822; nobody@remote.test" in text
    assert "carol@remote.test" not in text
    assert "Status: 5.1.1" in text and "Action: failed" in text
    assert "Remote-MTA: dns; mx.remote.test" in text
    original = next(p for p in parsed.walk() if p.get_content_type() == "message/rfc822")
    assert "Subject: half" in original.as_string()
    wait_for(lambda: not queue_entries(server), what="empty queue")


def one_signature_each(message: bytes) -> list[bytes]:
    """One copy of ``message`` per DKIM-Signature field, keeping only that field."""
    head, sep, body = message.partition(b"\r\n\r\n")
    fields: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        else:
            fields.append(line)
    signatures = [i for i, f in enumerate(fields) if f.lower().startswith(b"dkim-signature:")]
    return [b"\r\n".join(f for i, f in enumerate(fields) if i == keep or i not in signatures) + sep + body
            for keep in signatures]


# -- DNS for the two verifiers ------------------------------------------------------

def dns_resolver(server):
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = server.port

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        answer = resolver.resolve(name.decode().rstrip("."), "TXT")
        return b"".join(b"".join(r.strings) for r in answer)

    return dnsfunc


class Port53Relay:
    """The test zones on RESOLVER_ADDRESS:53 (UDP and TCP), answered by the test DNS server."""

    def __init__(self, dns_server) -> None:
        answer = dns_server.answer

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                reply = answer(data)
                if reply is not None:
                    sock.sendto(reply, self.client_address)

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                head = sock.recv(2)
                if len(head) < 2:
                    return
                size = struct.unpack("!H", head)[0]
                data = b""
                while len(data) < size and (chunk := sock.recv(size - len(data))):
                    data += chunk
                reply = answer(data)
                if reply is not None:
                    sock.sendall(struct.pack("!H", len(reply)) + reply)

        socketserver.TCPServer.allow_reuse_address = True
        self.servers = [socketserver.ThreadingUDPServer((RESOLVER_ADDRESS, 53), Udp),
                        socketserver.ThreadingTCPServer((RESOLVER_ADDRESS, 53), Tcp)]
        for s in self.servers:
            s.daemon_threads = True
            threading.Thread(target=s.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        for s in self.servers:
            s.shutdown()
            s.server_close()


def opendkim_verify(dns_server, message: bytes) -> None:
    require(shutil.which("opendkim-testmsg") is not None, "opendkim-testmsg (Debian opendkim-tools) is missing")
    require(shutil.which("unshare") is not None, "unshare (util-linux) is missing")
    relay = Port53Relay(dns_server)
    folder = Path(tempfile.mkdtemp(prefix="postbote-opendkim-"))
    try:
        resolv = folder / "resolv.conf"
        resolv.write_text(f"nameserver {RESOLVER_ADDRESS}\noptions timeout:2 attempts:2\n")
        (folder / "message").write_bytes(message)
        script = (f"mount --bind {resolv} /etc/resolv.conf && "
                  f"exec opendkim-testmsg < {folder / 'message'}")
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0 and "mount" in r.stderr and "permission" in r.stderr.lower():
            require(False, f"no mount namespace for opendkim-testmsg: {r.stderr.strip()}")
        # opendkim-testmsg: silent and status 0 when every signature verifies.
        assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
            f"opendkim-testmsg: status {r.returncode}: {r.stdout} {r.stderr}"
    finally:
        relay.stop()
        shutil.rmtree(folder, ignore_errors=True)
