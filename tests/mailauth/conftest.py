"""Fixtures for mail authentication: a DNS server on loopback, postbote's resolver
pointed at it, and DKIM keys made by postbote's own ``generate_keys``."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from postbote.config import DnsSettings
from postbote.dns import Resolver
from postbote.mailauth.keys import SigningKey, generate_keys
from tests.dnsserver import DnsServer


@pytest.fixture(scope="session")
def _shared_dns():
    srv = DnsServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def dns_server(_shared_dns: DnsServer) -> DnsServer:
    """One server for the session (stopping one takes a second), emptied for each test."""
    with _shared_dns._lock:
        _shared_dns.records.clear()
    _shared_dns.timeouts.clear()
    _shared_dns.servfail.clear()
    return _shared_dns


@pytest.fixture
def resolver(dns_server: DnsServer) -> Resolver:
    return Resolver(DnsSettings(nameservers=(dns_server.address,), timeout=1.0))


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="session")
def sender_keys(key_dir: Path) -> dict[str, SigningKey]:
    """An Ed25519 and an RSA-2048 key for the sending domain example.org."""
    keys = generate_keys(key_dir, "example.org", datetime.date(2026, 1, 1))
    return {k.algorithm: k for k in keys}


def publish(dns: DnsServer, key: SigningKey, domain: str | None = None, selector: str | None = None) -> None:
    dns.txt(f"{selector or key.selector}._domainkey.{domain or key.domain}", key.dns_record())


MESSAGE = (b"From: Alice <alice@example.org>\r\n"
           b"To: bob@example.net\r\n"
           b"Subject: quarterly numbers\r\n"
           b"Date: Mon, 30 Nov 2026 03:00:00 +0000\r\n"
           b"Message-ID: <q1@example.org>\r\n"
           b"\r\n"
           b"The numbers are in.\r\n"
           b"-- \r\nAlice\r\n")
