"""The zone data of the openspf YAML test suite, served by a DNS server on loopback.

The suite describes DNS in its own shorthand (``zonedata``): per name a list
of records like ``{"TXT": "v=spf1 -all"}``, ``{"MX": [0, "mx.example.com"]}``,
``{"SPF": ...}`` (copied to TXT when a name has no TXT of its own), the word
``NONE`` (this type exists but has no record) and ``TIMEOUT`` (queries for
types not listed before it fail). ``SuiteDnsServer`` answers real DNS queries
from that shorthand; a timeout is answered with SERVFAIL, which postbote
treats the same way (a temporary failure) without making the tests wait.
"""

from __future__ import annotations

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset

from tests.dnsserver import DnsServer

Entry = tuple[str, object] | str


def load_zone(zonedata: dict) -> dict[str, list[Entry]]:
    """Names (lower case) → entries in order: ("TYPE", value) or "TIMEOUT"."""
    zone: dict[str, list[Entry]] = {}
    for name, records in zonedata.items():
        entries: list[Entry] = []
        has_txt = any(isinstance(r, dict) and "TXT" in r for r in records)
        spf_copies: list[Entry] = []
        for record in records:
            if isinstance(record, dict) and record.get("TXT") == "NONE":
                continue  # only keeps the SPF records from being copied to TXT
            if record == "TIMEOUT":
                entries.append("TIMEOUT")
                continue
            ((rdtype, value),) = record.items()
            if rdtype == "SPF":
                if not has_txt:
                    spf_copies.append(("TXT", value))
                continue  # RFC 7208 §3.1: the SPF RR type is no longer used
            entries.append((rdtype, value))
        zone[name.lower().rstrip(".")] = entries + spf_copies
    return zone


class SuiteDnsServer(DnsServer):
    def __init__(self) -> None:
        super().__init__()
        self.zone: dict[str, list[Entry]] = {}

    def answer(self, wire: bytes) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        q = query.question[0]
        # Labels as octets: the suite has names with spaces and percent signs (RFC 7208 §7.3).
        name = b".".join(q.name.labels).decode("utf-8", "replace").lower().rstrip(".")
        rdtype = dns.rdatatype.to_text(q.rdtype)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        response.set_rcode(self._fill(response, name, rdtype, follow=True))
        return response.to_wire(max_size=65535)

    def _fill(self, response: dns.message.Message, name: str, rdtype: str, follow: bool) -> int:
        entries = self.zone.get(name)
        if entries is None:
            return dns.rcode.SERVFAIL if name.startswith("error.") else dns.rcode.NXDOMAIN
        seen_type = False
        for entry in entries:
            if entry == "TIMEOUT":
                if not seen_type:
                    return dns.rcode.SERVFAIL
                break
            etype, value = entry
            if etype == rdtype:
                seen_type = True
                if value == "TIMEOUT":
                    return dns.rcode.SERVFAIL
                if value != "NONE":
                    response.answer.append(_rrset(name, etype, value))
            elif etype == "CNAME" and follow:
                response.answer.append(_rrset(name, etype, value))
                return self._fill(response, str(value).lower().rstrip("."), rdtype, follow=False)
        return dns.rcode.NOERROR


def _rrset(name: str, rdtype: str, value: object) -> dns.rrset.RRset:
    owner = dns.name.from_text(name)
    if rdtype == "TXT":
        strings = [value] if isinstance(value, str) else list(value)  # type: ignore[arg-type]
        rrset = dns.rrset.RRset(owner, dns.rdataclass.IN, dns.rdatatype.TXT)
        rrset.add(dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT,
                                          [s.encode("utf-8") for s in strings] or [b""]), 300)
        return rrset
    if rdtype == "MX":
        pref, host = value  # type: ignore[misc]
        text = f"{pref} {host}."
    elif rdtype in ("PTR", "CNAME"):
        text = f"{value}."
    else:
        text = str(value)
    return dns.rrset.from_text_list(owner, 300, "IN", rdtype, [text])
