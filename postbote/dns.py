"""One asynchronous DNS resolver for the whole server, with a cache.

Every lookup (MX routing, SPF, DKIM keys, DMARC, DNSBL, MTA-STS, DANE) goes
through ``Resolver``, so ``dns.nameservers`` points all of them at one place:
the system's resolver in production, a DNS server on loopback in tests.
Failures are values a caller can act on: a domain that does not exist, a
name with no records of that type, or a temporary failure (timeout,
SERVFAIL) that must never be treated as "no record".
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.nameserver
import dns.rdatatype
import dns.resolver
import dns.rrset

from postbote.config import DnsSettings


class DnsError(Exception):
    """A lookup did not give records; the subclass says why."""


class NxDomain(DnsError):
    """The name does not exist (RCODE 3)."""


class NoRecords(DnsError):
    """The name exists but has no records of the asked type."""


class TempFailure(DnsError):
    """Timeout, SERVFAIL or a network error: try again later; never "absent"."""


@dataclass(frozen=True)
class Answer:
    rrset: dns.rrset.RRset
    authenticated: bool  # the resolver set AD: DNSSEC-validated (RFC 4035 §3.2.3)

    def texts(self) -> list[str]:
        """TXT records with their strings joined (RFC 7208 §3.3)."""
        return [b"".join(r.strings).decode("utf-8", "replace") for r in self.rrset]


def _special_use(name: str, rdtype: str) -> Answer | None:
    """Answers for the special-use names RFC 6761 keeps away from DNS servers.

    §6.3: "localhost" names are the loopback address, with negative answers for every
    other type, and queries for them SHOULD NOT be sent to the configured servers (the
    development instance's own domain is localhost: its SPF and DMARC checks stay here).
    §6.4: "invalid" names never exist.
    """
    labels = name.lower().rstrip(".").rsplit(".", 1)
    if labels[-1] == "invalid":
        raise NxDomain(f"{name}: no such domain (RFC 6761 §6.4)")
    if labels[-1] != "localhost":
        return None
    address = {"A": "127.0.0.1", "AAAA": "::1"}.get(rdtype.upper())
    if address is None:
        raise NoRecords(f"{name}: no {rdtype} records (RFC 6761 §6.3)")
    rrset = dns.rrset.from_text(name.rstrip(".") + ".", 0, "IN", rdtype.upper(), address)
    return Answer(rrset, authenticated=False)


def parse_nameserver(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and host and ("." in host or host.startswith("[")):
        return host.strip("[]"), int(port)
    return text.strip("[]"), 53


class Resolver:
    def __init__(self, settings: DnsSettings) -> None:
        if settings.nameservers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [dns.nameserver.Do53Nameserver(*parse_nameserver(ns))
                                    for ns in settings.nameservers]
        else:
            resolver = dns.asyncresolver.Resolver()
        resolver.lifetime = settings.timeout
        resolver.timeout = min(settings.timeout, 2.0)
        resolver.cache = dns.resolver.LRUCache(50_000)
        # Ask for the AD bit, so DANE can tell validated answers (RFC 6840 §5.7).
        resolver.use_edns(0, dns.flags.DO, 1232)
        resolver.flags = dns.flags.RD | dns.flags.AD
        self._resolver = resolver

    async def query(self, name: str, rdtype: str) -> Answer:
        special = _special_use(name, rdtype)
        if special is not None:
            return special
        try:
            answer = await self._resolver.resolve(name, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            raise NxDomain(f"{name}: no such domain") from None
        except dns.resolver.NoAnswer:
            raise NoRecords(f"{name}: no {rdtype} records") from None
        except (dns.resolver.NoNameservers, dns.exception.Timeout, dns.resolver.LifetimeTimeout) as exc:
            raise TempFailure(f"{name} {rdtype}: {exc.__class__.__name__}") from None
        except dns.exception.DNSException as exc:
            raise TempFailure(f"{name} {rdtype}: {exc}") from None
        assert answer.rrset is not None
        authenticated = bool(answer.response.flags & dns.flags.AD)
        return Answer(answer.rrset, authenticated)

    async def txt(self, name: str) -> list[str]:
        return (await self.query(name, "TXT")).texts()

    async def mx(self, domain: str) -> list[tuple[int, str]]:
        """(preference, host) pairs, lowest preference first; host "" is a null MX."""
        rrset = (await self.query(domain, "MX")).rrset
        return sorted((r.preference, r.exchange.to_text(omit_final_dot=True)) for r in rrset)

    async def addresses(self, host: str) -> list[str]:
        """A and AAAA addresses of a host; TempFailure only if both failed that way."""
        found: list[str] = []
        temp: TempFailure | None = None
        for rdtype in ("A", "AAAA"):
            try:
                found += [r.address for r in (await self.query(host, rdtype)).rrset]
            except TempFailure as exc:
                temp = exc
            except DnsError:
                pass
        if not found and temp is not None:
            raise temp
        return found

    async def ptr(self, ip: str) -> list[str]:
        import dns.reversename

        name = dns.reversename.from_address(ip).to_text()
        return [r.target.to_text(omit_final_dot=True) for r in (await self.query(name, "PTR")).rrset]
