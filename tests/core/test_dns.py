"""The resolver against a real DNS server on loopback."""

from __future__ import annotations

import pytest

from postbote.config import DnsSettings
from postbote.dns import NoRecords, NxDomain, Resolver, TempFailure
from tests.dnsserver import DnsServer


@pytest.fixture
def dns_server():
    srv = DnsServer().start()
    yield srv
    srv.stop()


def resolver(srv: DnsServer, timeout: float = 2.0) -> Resolver:
    return Resolver(DnsSettings(nameservers=(srv.address,), timeout=timeout))


async def test_mx_sorted_by_preference_and_addresses(dns_server):
    dns_server.add("example.com", "MX", "20 mx2.example.com.", "10 mx1.example.com.")
    dns_server.add("mx1.example.com", "A", "127.0.0.2").add("mx1.example.com", "AAAA", "::1")
    r = resolver(dns_server)
    assert await r.mx("example.com") == [(10, "mx1.example.com"), (20, "mx2.example.com")]
    assert sorted(await r.addresses("mx1.example.com")) == ["127.0.0.2", "::1"]


async def test_long_txt_strings_are_joined(dns_server):
    text = "v=DKIM1; k=rsa; p=" + "A" * 400
    dns_server.txt("sel._domainkey.example.com", text)
    assert await resolver(dns_server).txt("sel._domainkey.example.com") == [text]


async def test_nxdomain_noanswer_and_timeout_are_told_apart(dns_server):
    dns_server.add("example.com", "A", "127.0.0.9")
    dns_server.timeouts.add("slow.example.com")
    dns_server.servfail.add("broken.example.com")
    r = resolver(dns_server, timeout=0.5)
    with pytest.raises(NxDomain):
        await r.query("nope.example.com", "A")
    with pytest.raises(NoRecords):
        await r.query("example.com", "MX")
    with pytest.raises(TempFailure):
        await r.query("slow.example.com", "A")
    with pytest.raises(TempFailure):
        await r.query("broken.example.com", "A")


async def test_authenticated_flag_is_reported(dns_server):
    dns_server.add("_25._tcp.mx.example.com", "TLSA", "3 1 1 " + "ab" * 32)
    assert (await resolver(dns_server).query("_25._tcp.mx.example.com", "TLSA")).authenticated is False
    dns_server.authenticated = True
    dns_server.add("_25._tcp.mx2.example.com", "TLSA", "3 1 1 " + "cd" * 32)
    assert (await resolver(dns_server).query("_25._tcp.mx2.example.com", "TLSA")).authenticated is True


async def test_localhost_and_invalid_names_never_reach_the_dns_server(dns_server):
    # RFC 6761 §6.3 and §6.4: answered by the resolver itself, never sent to a server.
    r = resolver(dns_server)
    assert await r.addresses("localhost") == ["127.0.0.1", "::1"]
    assert await r.addresses("mail.LOCALHOST.") == ["127.0.0.1", "::1"]
    with pytest.raises(NoRecords):
        await r.txt("localhost")  # the development instance's SPF check of its own domain
    with pytest.raises(NoRecords):
        await r.txt("_dmarc.localhost")
    with pytest.raises(NxDomain):
        await r.mx("anything.invalid")
    assert dns_server.queries == []
