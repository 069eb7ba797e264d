"""The one DNS interface mail authentication needs: ``Resolver.query``.

SPF, DKIM, DMARC and ARC take any object with this method, so production
passes ``app.resolver`` and a unit test may pass a small fake; failures are
``postbote.dns`` exceptions (NxDomain, NoRecords, TempFailure).
"""

from __future__ import annotations

from typing import Protocol

import dns.exception

from postbote.dns import Answer, DnsError, NoRecords, NxDomain, TempFailure


class Lookup(Protocol):
    async def query(self, name: str, rdtype: str) -> Answer: ...


async def txt_records(dns: Lookup, name: str) -> list[str]:
    """TXT strings at ``name``; [] when the name or the records do not exist.

    Raises TempFailure (any other DNS error counts as temporary too), so that a
    timeout is never mistaken for "no policy".
    """
    try:
        return (await dns.query(name, "TXT")).texts()
    except (NxDomain, NoRecords):
        return []
    except TempFailure:
        raise
    except DnsError as exc:
        raise TempFailure(str(exc)) from None


def ascii_domain(domain: str) -> str | None:
    """The A-label form of a domain (RFC 5890), for DNS; None when it has none.

    SMTPUTF8 mail may carry U-labels in MAIL FROM and From; a lookup must use
    A-labels, and a name that cannot be converted is simply not a domain.
    """
    domain = domain.rstrip(".")
    if domain.isascii():
        return domain.lower()
    try:
        import dns.name

        return dns.name.from_unicode(domain).to_text(omit_final_dot=True).lower()
    except (UnicodeError, ValueError, dns.exception.DNSException):
        return None
