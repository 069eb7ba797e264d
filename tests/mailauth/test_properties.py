"""No input makes the checks raise: random SPF records, random signature fields and
headers always give one of the protocol's results."""

from __future__ import annotations

import asyncio

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postbote.dns import Answer, NxDomain, TempFailure
from postbote.mailauth.dkim_verify import verify_dkim
from postbote.mailauth.results import authentication_results
from postbote.mailauth.spf import SpfResult, check_mailfrom

from .conftest import MESSAGE


class FakeDns:
    """TXT records from a dict; every other name does not exist."""

    def __init__(self, txt: dict[str, bytes]) -> None:
        self.txt = txt

    async def query(self, name: str, rdtype: str) -> Answer:
        value = self.txt.get(name.lower().rstrip("."))
        if rdtype != "TXT" or value is None:
            raise NxDomain(name)
        try:
            owner = dns.name.from_text(name)
        except dns.exception.DNSException as exc:  # as postbote's Resolver does
            raise TempFailure(str(exc)) from None
        rrset = dns.rrset.RRset(owner, dns.rdataclass.IN, dns.rdatatype.TXT)
        rrset.add(dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [value[:255] or b""]), 300)
        return Answer(rrset, False)


TERMS = st.sampled_from(["a", "mx", "ptr", "all", "-all", "~all", "?all", "+a:%{d}", "include:inc.example",
                         "exists:%{ir}.%{l1r+-}.e.example", "ip4:192.0.2.0/24", "ip6:2001:db8::/32",
                         "redirect=r.example", "exp=x.example", "a/24//64", "mx:%{o}/0", "%{x}", "a:..",
                         "ip4:300.1.1.1", "foo=%{s}", "x", ":", "/", "=", "%", "include:", "a:%{p}.example"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(terms=st.lists(st.one_of(TERMS, st.text(max_size=12)), max_size=12), raw=st.binary(max_size=40),
       ip=st.sampled_from(["192.0.2.7", "2001:db8::7", "::ffff:192.0.2.7", "bogus"]))
def test_spf_never_raises_on_any_record(terms, raw, ip):
    record = ("v=spf1 " + " ".join(terms)).encode("utf-8", "replace")
    fake = FakeDns({"example.org": record, "inc.example": b"v=spf1 " + raw, "r.example": raw})
    outcome = asyncio.run(check_mailfrom(fake, ip, "alice@example.org", "helo.example"))
    assert isinstance(outcome.result, SpfResult)
    authentication_results("mx.test", spf=outcome, helo_spf=None, dkim=[], dmarc=None, arc=None)


FIELD = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tags=st.lists(st.tuples(st.sampled_from(["v", "a", "b", "bh", "d", "s", "h", "l", "c", "i", "t", "x", "q"]),
                                FIELD), max_size=10),
       key=st.binary(max_size=60))
def test_dkim_never_raises_on_any_signature_field(tags, key):
    value = "; ".join(f"{k}={v}" for k, v in tags)
    fake = FakeDns({"sel._domainkey.example.org": key})
    message = f"DKIM-Signature: d=example.org; s=sel; {value}\r\n".encode() + MESSAGE
    results = asyncio.run(verify_dkim(message, fake))
    assert len(results) == 1
    assert results[0].result in ("pass", "fail", "neutral", "policy", "temperror", "permerror")
