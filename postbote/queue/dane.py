"""DANE for SMTP (RFC 7672): TLSA records pin the MX host's certificate.

Only a DNSSEC-validated answer counts (the resolver's AD bit): an unsigned
TLSA record could be forged, and must be ignored (RFC 7672 §2.2). With usable
records, TLS is mandatory and the certificate must match one of them; PKIX
names and CAs do not matter then. postbote implements the usage RFC 7672 §3.1
recommends, DANE-EE(3); DANE-TA(2) needs the peer's chain, which Python's ssl
does not expose before 3.13, so such records alone make TLS mandatory
without authentication (the "unusable records" rule of RFC 7672 §2.2).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from postbote.dns import DnsError, NoRecords, NxDomain, Resolver, TempFailure


@dataclass(frozen=True)
class Tlsa:
    usage: int
    selector: int
    mtype: int
    data: bytes


@dataclass(frozen=True)
class DaneResult:
    """``records``: the usable DANE-EE records; ``required``: TLS is mandatory for this host."""

    records: tuple[Tlsa, ...] = ()
    required: bool = False
    temporary_failure: str = ""


async def lookup(resolver: Resolver, host: str, port: int) -> DaneResult:
    try:
        answer = await resolver.query(f"_{port}._tcp.{host}", "TLSA")
    except (NoRecords, NxDomain):
        return DaneResult()
    except TempFailure as exc:
        return DaneResult(temporary_failure=str(exc))
    except DnsError:
        return DaneResult()
    if not answer.authenticated:
        return DaneResult()  # RFC 7672 §2.2: insecure TLSA records are ignored
    records = tuple(Tlsa(r.usage, r.selector, r.mtype, bytes(r.cert)) for r in answer.rrset)
    usable = tuple(r for r in records if r.usage == 3 and r.selector in (0, 1) and r.mtype in (0, 1, 2))
    return DaneResult(usable, required=True)


def matches(records: tuple[Tlsa, ...], der_cert: bytes) -> bool:
    """Does the server's certificate match a DANE-EE record (RFC 6698 §2.1)?"""
    cert = x509.load_der_x509_certificate(der_cert)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    for r in records:
        content = der_cert if r.selector == 0 else spki
        digest = {0: content, 1: hashlib.sha256(content).digest(), 2: hashlib.sha512(content).digest()}[r.mtype]
        if digest == r.data:
            return True
    return False
