"""DNS block and allow lists of IP addresses (RFC 5782).

The client's address, reversed (IPv4 octets, IPv6 nibbles), is looked up under
each zone; an A record in 127.0.0.0/8 means listed. A zone that cannot be asked
(timeout, SERVFAIL) is left out of the score rather than guessed at, and the
127.255.255.x answers some lists give to refused queries mean "not listed".
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from typing import Protocol

from postbote.dns import Answer, DnsError, TempFailure


class Resolver(Protocol):
    async def query(self, name: str, rdtype: str) -> Answer: ...


@dataclass(frozen=True)
class Zone:
    name: str
    points: float


@dataclass(frozen=True)
class Listing:
    zone: Zone
    answer: str  # e.g. 127.0.0.2


def parse_zones(items: tuple[str, ...], default_points: float) -> tuple[Zone, ...]:
    """``"zone"`` or ``"zone=points"`` items from the config."""
    zones = []
    for item in items:
        name, eq, points = item.partition("=")
        zones.append(Zone(name.strip().rstrip(".").lower(), float(points) if eq else default_points))
    return tuple(zones)


def reversed_name(ip: str) -> str | None:
    """The query label of an address (RFC 5782 §2.1, §2.4), None if ``ip`` is not an address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.version == 4:
        return ".".join(reversed(str(address).split(".")))
    return ".".join(reversed(address.exploded.replace(":", "")))


async def lookup(resolver: Resolver, ip: str, zones: tuple[Zone, ...]) -> tuple[list[Listing], list[str]]:
    """(listings, zones that failed to answer) for ``ip`` in every zone, asked at once."""
    label = reversed_name(ip)
    if label is None or not zones:
        return [], []
    results = await asyncio.gather(*(_one(resolver, f"{label}.{z.name}") for z in zones))
    listings, failed = [], []
    for zone, result in zip(zones, results):
        if result is None:
            failed.append(zone.name)
        elif result:
            listings.append(Listing(zone, result))
    return listings, failed


async def _one(resolver: Resolver, name: str) -> str | None:
    """The first listing answer, "" when not listed, None when the zone did not answer."""
    try:
        answer = await resolver.query(name, "A")
    except TempFailure:
        return None
    except DnsError:
        return ""
    for record in answer.rrset:
        text = str(record.address)
        if text.startswith("127.") and not text.startswith("127.255.255."):
            return text
    return ""
