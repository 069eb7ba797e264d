"""Plumbing for the IMAP server tests: a logged-in imaplib client, a raw line client,
message builders and delivery through the store or over SMTP."""

from __future__ import annotations

import imaplib
import smtplib
import socket
import ssl
from collections.abc import Callable, Iterator

import pytest

from postbote.store import DeliveryTarget

USER, PASSWORD = "alice@localhost", "password123"


def client_tls() -> ssl.SSLContext:
    """The dev certificate is self-signed: no verification in tests."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def message(subject: str = "hello", body: str = "body text\r\n", sender: str = "bob@example.com",
            to: str = USER, extra: str = "", date: str = "Mon, 2 Nov 2026 10:00:00 +0000") -> bytes:
    return (f"From: Bob <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\n"
            f"Message-ID: <{abs(hash((subject, body, extra)))}@example.com>\r\n{extra}\r\n{body}").encode()


MULTIPART = (
    b"From: Carol <carol@example.com>\r\nTo: alice@localhost\r\nSubject: parts\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
    b"preamble\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nfirst part\r\n"
    b"--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"AAECAwQ=\r\n--XX--\r\n"
)


def deliver(server, address: str, raw: bytes, mailbox: str = "INBOX") -> int:
    """Store a message directly, as a delivery would (durable when this returns)."""

    async def run() -> int:
        account = await server.app.store.get_account(address)
        [outcome] = await server.app.store.deliver(raw, [DeliveryTarget(account.id, mailbox)])
        return outcome.uid

    return server.run(run())


def send_smtp(server, to: str, raw: bytes) -> None:
    """Deliver over the MX port with smtplib, the way mail really arrives."""
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as smtp:
        smtp.sendmail("bob@example.com", [to], raw)


class RawImap:
    """A line-level client for transcripts and bad input: bytes out, response lines in."""

    def __init__(self, port: int, *, tls: bool = False) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock: socket.socket = client_tls().wrap_socket(sock) if tls else sock
        self.file = self.sock.makefile("rb")
        self.greeting = self.line()

    def line(self) -> bytes:
        data = self.file.readline()
        if not data:
            raise EOFError("server closed the connection")
        return data

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def until(self, tag: bytes) -> list[bytes]:
        """Lines up to and including the tagged response (literals read inline)."""
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def command(self, text: bytes, tag: bytes = b"t") -> list[bytes]:
        self.send(tag + b" " + text + b"\r\n")
        return self.until(tag)

    def login(self, user: str = USER, password: str = PASSWORD) -> None:
        assert self.command(f'LOGIN "{user}" "{password}"'.encode())[-1].startswith(b"t OK")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def user(server) -> str:
    server.add_user(USER, PASSWORD)
    return USER


@pytest.fixture
def connect(server, user) -> Iterator[Callable[..., imaplib.IMAP4]]:
    """`connect()` gives a logged-in imaplib client; all are logged out at the end."""
    clients: list[imaplib.IMAP4] = []

    def make(login: bool = True) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=10)
        if login:
            client.login(USER, PASSWORD)
        clients.append(client)
        return client

    yield make
    for client in clients:
        try:
            client.logout()
        except (imaplib.IMAP4.error, OSError, EOFError):
            pass


@pytest.fixture
def raw(server, user) -> Iterator[Callable[..., RawImap]]:
    clients: list[RawImap] = []

    def make(login: bool = True, tls: bool = False) -> RawImap:
        client = RawImap(server.port("imaps" if tls else "imap"), tls=tls)
        if login:
            client.login()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
