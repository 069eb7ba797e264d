"""Spam and virus filtering tests: a postbote MX on loopback with its own DNS server."""

from __future__ import annotations

import dataclasses
import smtplib
from collections.abc import Callable, Iterator

import pytest

from postbote.config import DnsSettings, SpamSettings
from tests.dnsserver import DnsServer
from tests.harness import RunningServer, server_settings

USER = "bob@example.net"


@pytest.fixture
def dns_zone() -> Iterator[DnsServer]:
    srv = DnsServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def make_mx(tmp_path, dns_zone) -> Iterator[Callable[..., RunningServer]]:
    """Start a server with ``spam=`` field overrides (and any other settings overrides)."""
    started: list[RunningServer] = []

    def start(spam: dict | None = None, **overrides: object) -> RunningServer:
        base = server_settings(tmp_path / f"data{len(started)}",
                               dns=DnsSettings(nameservers=(dns_zone.address,), timeout=1.0),
                               domains=("localhost", "example.net"), **overrides)
        settings = dataclasses.replace(base, spam=dataclasses.replace(SpamSettings(), **(spam or {})))
        srv = RunningServer(settings).start()
        srv.add_user(USER)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


def send(mx: RunningServer, message: bytes, sender: str = "alice@example.org", rcpt: str = USER) -> None:
    with smtplib.SMTP("127.0.0.1", mx.port("smtp"), local_hostname="mail.example.org", timeout=30) as client:
        client.sendmail(sender, [rcpt], message)


def stored(mx: RunningServer, mailbox: str = "INBOX", address: str = USER) -> list[bytes]:
    store = mx.app.store

    async def read() -> list[bytes]:
        account = await store.get_account(address)
        box = await store.get_mailbox(account.id, mailbox)
        return [await store.read_blob(m.blob_id) for m in await store.list_messages(box.id)]

    return mx.run(read())


def header(message: bytes, name: bytes) -> list[bytes]:
    head = message.split(b"\r\n\r\n", 1)[0].replace(b"\r\n\t", b" ").replace(b"\r\n ", b" ")
    return [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
            if line.lower().startswith(name.lower() + b":")]


def message(subject: str = "Lunch on Friday", body: str = "Shall we meet at noon?",
            extra: str = "", date: bool = True, sender: str = "alice@example.org") -> bytes:
    fields = f"From: Alice <{sender}>\r\nTo: {USER}\r\nSubject: {subject}\r\n"
    if date:
        fields += "Date: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <m.%d@example.org>\r\n" % abs(hash(body + subject))
    return (fields + extra + "\r\n" + body + "\r\n").encode()
