"""Where mail for a domain goes: MX hosts by preference, else the domain itself.

RFC 5321 §5.1: look up MX; with none, the domain's own A/AAAA records are an
implicit MX of preference 0. Hosts of equal preference are tried in random
order to spread the load. RFC 7505: a single MX with the root as exchange
("null MX") says the domain takes no mail, which is a permanent failure.
A temporary DNS failure is never read as "no records".
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from postbote.dns import DnsError, NoRecords, NxDomain, Resolver, TempFailure


@dataclass(frozen=True)
class Route:
    """The hosts to try, in order. ``mx`` is False for the implicit MX (the domain's own address);
    ``secure``: the MX answer was DNSSEC-validated, which DANE needs first (RFC 7672 §2.2.1)."""

    hosts: tuple[str, ...]
    mx: bool = True
    secure: bool = False


@dataclass(frozen=True)
class NoRoute:
    """Mail for the domain cannot be delivered; ``permanent`` decides bounce or retry."""

    reason: str
    permanent: bool
    status: str  # RFC 3463, for the DSN


def order_mx(records: list[tuple[int, str]], rng: random.Random | None = None) -> list[str]:
    """Lowest preference first; random order among equals (RFC 5321 §5.1)."""
    rng = rng or random.Random()
    keyed = [(pref, rng.random(), host) for pref, host in records]
    seen: dict[str, None] = {}
    for _, _, host in sorted(keyed):
        seen.setdefault(host.lower().rstrip("."), None)
    return list(seen)


async def route(resolver: Resolver, domain: str, rng: random.Random | None = None) -> Route | NoRoute:
    try:
        answer = await resolver.query(domain, "MX")
    except NxDomain:
        return NoRoute(f"{domain}: no such domain", True, "5.1.2")
    except NoRecords:
        return await _implicit(resolver, domain)
    except TempFailure as exc:
        return NoRoute(f"MX lookup failed: {exc}", False, "4.4.3")
    except DnsError as exc:
        return NoRoute(f"MX lookup failed: {exc}", False, "4.4.3")
    records = [(r.preference, r.exchange.to_text(omit_final_dot=True)) for r in answer.rrset]
    if any(host in ("", ".") for _, host in records):
        # RFC 7505 §3: a null MX; nothing else is to be tried.
        return NoRoute(f"{domain} does not accept mail (null MX)", True, "5.1.10")
    return Route(tuple(order_mx(records, rng)), secure=answer.authenticated)


async def _implicit(resolver: Resolver, domain: str) -> Route | NoRoute:
    try:
        found = await resolver.addresses(domain)
    except TempFailure as exc:
        return NoRoute(f"address lookup failed: {exc}", False, "4.4.3")
    if not found:
        return NoRoute(f"{domain}: no MX and no address records", True, "5.1.2")
    return Route((domain,), mx=False)
