"""An authoritative DNS server on loopback for tests, built on dnspython.

Tests point postbote's resolver (``dns.nameservers``) at it and publish the
records a case needs (MX, A, TXT for SPF/DKIM/DMARC, TLSA …). Names listed
in ``timeouts`` get no answer at all and names in ``servfail`` get SERVFAIL,
so temporary failures can be tested too. UDP and TCP on the same port.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections import defaultdict

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class DnsServer:
    def __init__(self, authenticated: bool = False, negative_ttl: int = 0) -> None:
        # negative_ttl > 0: negative answers carry an SOA, as every real zone's do
        # (RFC 2308 §3), so resolvers may cache them; off by default, because a
        # test that adds a record after a lookup must see it at once.
        self.negative_ttl = negative_ttl
        self.records: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.timeouts: set[str] = set()
        self.servfail: set[str] = set()
        self.authenticated = authenticated  # set AD on every answer (as a validating resolver would)
        self.queries: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._udp: socketserver.ThreadingUDPServer | None = None
        self._tcp: socketserver.ThreadingTCPServer | None = None
        self.port = 0

    # -- records -----------------------------------------------------------------
    def add(self, name: str, rdtype: str, *values: str) -> "DnsServer":
        """Publish records: ``add("example.com", "MX", "10 mx.example.com.")``."""
        with self._lock:
            self.records[(_norm(name), rdtype.upper())].extend(values)
        return self

    def txt(self, name: str, *texts: str) -> "DnsServer":
        """TXT records, split into 255-octet strings as RFC 7208 §3.3 allows."""
        for text in texts:
            chunks = [text[i:i + 255] for i in range(0, len(text), 255)] or [""]
            self.add(name, "TXT", " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"'
                                           for c in chunks))
        return self

    def clear(self, name: str, rdtype: str | None = None) -> None:
        with self._lock:
            for key in list(self.records):
                if key[0] == _norm(name) and (rdtype is None or key[1] == rdtype.upper()):
                    del self.records[key]

    # -- answering ---------------------------------------------------------------
    def answer(self, wire: bytes) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        if not query.question:
            return None
        q = query.question[0]
        name = _norm(q.name.to_text())
        rdtype = dns.rdatatype.to_text(q.rdtype)
        with self._lock:
            self.queries.append((name, rdtype))
        if name in self.timeouts:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if self.authenticated:
            response.flags |= dns.flags.AD
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response.to_wire()
        with self._lock:
            self._fill(response, name, rdtype, depth=0)
        return response.to_wire(max_size=65535)

    def _fill(self, response: dns.message.Message, name: str, rdtype: str, depth: int) -> None:
        values = self.records.get((name, rdtype))
        if values:
            response.answer.append(dns.rrset.from_text_list(name + ".", 300, "IN", rdtype, values))
            return
        cname = self.records.get((name, "CNAME"))
        if cname and depth < 8:
            response.answer.append(dns.rrset.from_text_list(name + ".", 300, "IN", "CNAME", cname))
            self._fill(response, _norm(cname[0]), rdtype, depth + 1)
            return
        if not any(key[0] == name or key[0].endswith("." + name) for key in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        if self.negative_ttl:
            soa = f"ns.{name}. hostmaster.{name}. 1 3600 600 86400 {self.negative_ttl}"
            response.authority.append(dns.rrset.from_text(name + ".", self.negative_ttl, "IN", "SOA", soa))

    # -- serving -----------------------------------------------------------------
    def start(self) -> "DnsServer":
        server = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                reply = server.answer(data)
                if reply is not None:
                    if len(reply) > 512 and not dns.message.from_wire(data).edns >= 0:
                        reply = _truncated(data)
                    sock.sendto(reply, self.client_address)

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                while True:
                    head = _recv_exact(sock, 2)
                    if head is None:
                        return
                    data = _recv_exact(sock, struct.unpack("!H", head)[0])
                    if data is None:
                        return
                    reply = server.answer(data)
                    if reply is None:
                        return
                    sock.sendall(struct.pack("!H", len(reply)) + reply)

        for _ in range(20):
            udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Udp)
            try:
                tcp = socketserver.ThreadingTCPServer(("127.0.0.1", udp.server_address[1]), Tcp)
            except OSError:
                udp.server_close()
                continue
            break
        else:
            raise RuntimeError("no free port for the test DNS server")
        udp.daemon_threads = tcp.daemon_threads = True
        self._udp, self._tcp = udp, tcp
        self.port = udp.server_address[1]
        for srv in (udp, tcp):
            threading.Thread(target=srv.serve_forever, daemon=True, name="test-dns").start()
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        for srv in (self._udp, self._tcp):
            if srv is not None:
                srv.shutdown()
                srv.server_close()


def _norm(name: str) -> str:
    return name.rstrip(".").lower()


def _truncated(query_wire: bytes) -> bytes:
    response = dns.message.make_response(dns.message.from_wire(query_wire))
    response.flags |= dns.flags.TC
    return response.to_wire()


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


_shared: DnsServer | None = None


def shared() -> DnsServer:
    """One empty DNS server per test process: every name is NXDOMAIN unless a
    test publishes it. Servers under test point at it by default, so no test
    ever queries a resolver off this machine."""
    global _shared
    if _shared is None:
        _shared = DnsServer().start()
    return _shared
