"""Scripted SMTP peers for queue tests: a small server whose answers a test chooses.

Every peer of one test listens on the same port (postbote's ``outbound.port``)
on its own loopback address (127.0.0.2, 127.0.0.3 …), so DNS can route each
test domain to its own peer. ``replies`` maps a stage ("greeting", "mail",
"rcpt", "data") to a function of the attempt number giving the reply line.
"""

from __future__ import annotations

import socket
import socketserver
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

OK = "250 2.0.0 OK"


def free_port(hosts: tuple[str, ...]) -> int:
    """A port that is free on every one of ``hosts``."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
        try:
            for h in hosts:
                with socket.socket() as t:
                    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    t.bind((h, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no common free port")


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes
    tls: bool
    mail_line: str = ""
    rcpt_lines: list[str] = field(default_factory=list)


class Peer:
    def __init__(self, address: str, port: int, replies: dict[str, Callable[[int], str]] | None = None,
                 tls_context: ssl.SSLContext | None = None, extensions: tuple[str, ...] = (
                     "PIPELINING", "8BITMIME", "SMTPUTF8", "DSN", "ENHANCEDSTATUSCODES", "SIZE 10000000"),
                 delay: float = 0.0, broken_tls: bool = False) -> None:
        self.address = address
        self.port = port
        self.replies = replies or {}
        self.tls_context = tls_context
        self.extensions = extensions
        self.delay = delay
        self.broken_tls = broken_tls  # offer STARTTLS, then answer the handshake with junk
        self.messages: list[Received] = []
        self.attempts: dict[str, int] = {}
        self.connections = 0
        self.lock = threading.Lock()
        self._server: socketserver.ThreadingTCPServer | None = None

    def reply(self, stage: str, default: str) -> str:
        with self.lock:
            n = self.attempts[stage] = self.attempts.get(stage, 0) + 1
        fn = self.replies.get(stage)
        return fn(n) if fn else default

    def start(self) -> "Peer":
        peer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                # Replies are small writes in a row: without NODELAY, Nagle holds each for the
                # client's delayed ACK (40 ms), which would make every test slow, not postbote.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with peer.lock:
                    peer.connections += 1
                try:
                    _Conversation(peer, self.connection).run()
                except (OSError, ssl.SSLError):
                    pass

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer((self.address, self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True, name="test-peer").start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()


class _Conversation:
    def __init__(self, peer: Peer, sock: socket.socket) -> None:
        self.peer = peer
        self.sock = sock
        self.file = sock.makefile("rb")
        self.tls = False

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def run(self) -> None:
        peer = self.peer
        greeting = peer.reply("greeting", "220 peer.test ESMTP")
        self.send(greeting)
        if not greeting.startswith("220"):
            self._drain_until_quit()
            return
        sender, rcpts, mail_line, rcpt_lines = None, [], "", []
        while True:
            raw = self.file.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb = line[:4].upper()
            if verb == "EHLO":
                offer_tls = (peer.tls_context or peer.broken_tls) and not self.tls
                exts = list(peer.extensions) + (["STARTTLS"] if offer_tls else [])
                lines = ["peer.test", *exts]
                self.send("\r\n".join(f"250{'-' if i < len(lines) - 1 else ' '}{t}" for i, t in enumerate(lines)))
            elif verb == "HELO":
                self.send("250 peer.test")
            elif verb == "STAR" and peer.broken_tls:
                self.send("220 2.0.0 go ahead")
                self.sock.sendall(b"this is not TLS\r\n" * 20)
                return
            elif verb == "STAR" and peer.tls_context:
                self.send("220 2.0.0 go ahead")
                self.sock = peer.tls_context.wrap_socket(self.sock, server_side=True)
                self.file = self.sock.makefile("rb")
                self.tls = True
            elif verb == "MAIL":
                reply = peer.reply("mail", "250 2.1.0 OK")
                if reply.startswith("250"):
                    sender, rcpts, mail_line, rcpt_lines = line[10:].split(">")[0].lstrip("<"), [], line, []
                self.send(reply)
            elif verb == "RCPT":
                reply = peer.reply("rcpt", "250 2.1.5 OK")
                rcpt_lines.append(line)
                if reply.startswith("250"):
                    rcpts.append(line[8:].split(">")[0].lstrip("<"))
                self.send(reply)
            elif verb == "DATA":
                if not rcpts:
                    self.send("554 5.5.1 No valid recipients")
                    continue
                self.send("354 go")
                data = self._read_data()
                if peer.delay:
                    threading.Event().wait(peer.delay)
                reply = peer.reply("data", OK)
                if reply.startswith("250"):
                    with peer.lock:
                        peer.messages.append(Received(sender or "", rcpts, data, self.tls, mail_line, rcpt_lines))
                self.send(reply)
                sender, rcpts = None, []
            elif verb == "RSET":
                sender, rcpts = None, []
                self.send("250 2.0.0 OK")
            elif verb == "QUIT":
                self.send("221 2.0.0 Bye")
                return
            else:
                self.send("502 5.5.1 Not implemented")

    def _read_data(self) -> bytes:
        lines = []
        while True:
            raw = self.file.readline()
            if not raw or raw == b".\r\n":
                break
            lines.append(raw[1:] if raw.startswith(b"..") else raw)
        return b"".join(lines)

    def _drain_until_quit(self) -> None:
        while True:
            raw = self.file.readline()
            if not raw:
                return
            if raw[:4].upper() == b"QUIT":
                self.send("221 bye")
                return
            self.send("503 5.5.1 go away")
