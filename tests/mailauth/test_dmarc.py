"""DMARC (RFC 7489) against policies served by a DNS server on loopback."""

from __future__ import annotations

import pytest

from postbote.mailauth.dkim_verify import DkimResult
from postbote.mailauth.dmarc import aligned, evaluate, organizational_domain, parse_record
from postbote.mailauth.spf import SpfOutcome, SpfResult


def spf(result: str, domain: str) -> SpfOutcome:
    return SpfOutcome(SpfResult(result), "mailfrom", domain, f"bounce@{domain}")


def dkim(result: str, domain: str) -> DkimResult:
    return DkimResult(result, domain, "sel", "rsa-sha256", f"@{domain}", "abc")


NO_DKIM: list[DkimResult] = []


@pytest.mark.parametrize("domain,org", [
    ("example.org", "example.org"),
    ("mail.eu.example.org", "example.org"),
    ("shop.example.co.uk", "example.co.uk"),
    ("co.uk", "co.uk"),
    ("Example.ORG.", "example.org"),
])
def test_organizational_domain_comes_from_the_public_suffix_list(domain, org):
    assert organizational_domain(domain) == org


@pytest.mark.parametrize("a,b,strict,expected", [
    ("example.org", "example.org", True, True),
    ("mail.example.org", "example.org", True, False),
    ("mail.example.org", "example.org", False, True),
    ("example.org", "example.net", False, False),
    ("a.example.co.uk", "b.example.co.uk", False, True),
    ("example1.co.uk", "example2.co.uk", False, False),
])
def test_alignment(a, b, strict, expected):
    assert aligned(a, b, strict) is expected


def test_record_parsing():
    r = parse_record("v=DMARC1; p=quarantine; sp=reject; adkim=s; aspf=r; pct=20; rua=mailto:a@example.org")
    assert (r.policy, r.subdomain_policy, r.adkim_strict, r.aspf_strict, r.pct, r.rua) == (
        "quarantine", "reject", True, False, 20, ("mailto:a@example.org",))
    assert parse_record("v=DMARC1; rua=mailto:a@example.org").policy == "none"  # §6.6.3
    for bad in ("v=DMARC1; p=maybe", "p=reject; v=DMARC1", "v=DMARC1"):
        with pytest.raises(ValueError):
            parse_record(bad)


async def test_no_record_is_none(resolver):
    outcome = await evaluate(resolver, "example.org", spf("fail", "example.org"), NO_DKIM)
    assert outcome.result == "none"
    assert outcome.disposition == "none"


async def test_aligned_dkim_pass_passes(dns_server, resolver):
    dns_server.txt("_dmarc.example.org", "v=DMARC1; p=reject")
    outcome = await evaluate(resolver, "example.org", spf("fail", "bounces.example.net"),
                             [dkim("pass", "mail.example.org")])
    assert (outcome.result, outcome.dkim_aligned, outcome.spf_aligned) == ("pass", True, False)


async def test_aligned_spf_pass_passes(dns_server, resolver):
    dns_server.txt("_dmarc.example.org", "v=DMARC1; p=reject")
    outcome = await evaluate(resolver, "example.org", spf("pass", "bounces.example.org"), NO_DKIM)
    assert (outcome.result, outcome.spf_aligned) == ("pass", True)


async def test_strict_alignment_needs_the_same_name(dns_server, resolver):
    dns_server.txt("_dmarc.example.org", "v=DMARC1; p=reject; adkim=s; aspf=s")
    outcome = await evaluate(resolver, "example.org", spf("pass", "bounces.example.org"),
                             [dkim("pass", "mail.example.org")])
    assert (outcome.result, outcome.disposition) == ("fail", "reject")


async def test_pass_for_an_unrelated_domain_does_not_count(dns_server, resolver):
    dns_server.txt("_dmarc.example.org", "v=DMARC1; p=reject")
    outcome = await evaluate(resolver, "example.org", spf("pass", "spammer.example"),
                             [dkim("pass", "spammer.example"), dkim("fail", "example.org")])
    assert (outcome.result, outcome.disposition) == ("fail", "reject")


@pytest.mark.parametrize("policy", ["none", "quarantine", "reject"])
async def test_failure_gets_the_published_policy(dns_server, resolver, policy):
    dns_server.txt("_dmarc.example.org", f"v=DMARC1; p={policy}")
    outcome = await evaluate(resolver, "example.org", spf("softfail", "example.org"), NO_DKIM)
    assert (outcome.result, outcome.policy, outcome.disposition) == ("fail", policy, policy)


async def test_subdomain_policy_applies_to_subdomains(dns_server, resolver):
    dns_server.txt("_dmarc.example.org", "v=DMARC1; p=reject; sp=quarantine")
    sub = await evaluate(resolver, "news.example.org", spf("fail", "news.example.org"), NO_DKIM)
    top = await evaluate(resolver, "example.org", spf("fail", "example.org"), NO_DKIM)
    assert (sub.policy_domain, sub.policy, sub.disposition) == ("example.org", "quarantine", "quarantine")
    assert top.disposition == "reject"


async def test_subdomain_record_wins_over_the_organizational_one(dns_server, resolver):
    dns_server.txt("_dmarc.example.org", "v=DMARC1; p=reject")
    dns_server.txt("_dmarc.news.example.org", "v=DMARC1; p=none")
    outcome = await evaluate(resolver, "news.example.org", spf("fail", "news.example.org"), NO_DKIM)
    assert (outcome.policy_domain, outcome.disposition) == ("news.example.org", "none")


@pytest.mark.parametrize("draw,disposition,sampled_out", [(0.10, "reject", False), (0.90, "quarantine", True)])
async def test_pct_samples_which_failures_get_the_policy(dns_server, resolver, draw, disposition, sampled_out):
    dns_server.txt("_dmarc.example.org", "v=DMARC1; p=reject; pct=25")
    outcome = await evaluate(resolver, "example.org", spf("fail", "example.org"), NO_DKIM, sample=lambda: draw)
    assert (outcome.disposition, outcome.sampled_out) == (disposition, sampled_out)


async def test_pct_outside_sample_turns_quarantine_into_none(dns_server, resolver):
    dns_server.txt("_dmarc.example.org", "v=DMARC1; p=quarantine; pct=0")
    outcome = await evaluate(resolver, "example.org", spf("fail", "example.org"), NO_DKIM, sample=lambda: 0.0)
    assert (outcome.result, outcome.disposition) == ("fail", "none")


async def test_two_records_mean_no_policy(dns_server, resolver):
    dns_server.txt("_dmarc.example.org", "v=DMARC1; p=reject", "v=DMARC1; p=none")
    outcome = await evaluate(resolver, "example.org", spf("fail", "example.org"), NO_DKIM)
    assert outcome.result == "none"


async def test_policy_lookup_timeout_is_temperror(dns_server, resolver):
    dns_server.timeouts.add("_dmarc.example.org")
    outcome = await evaluate(resolver, "example.org", spf("fail", "example.org"), NO_DKIM)
    assert outcome.result == "temperror"


async def test_dkim_temperror_without_pass_is_temperror(dns_server, resolver):
    dns_server.txt("_dmarc.example.org", "v=DMARC1; p=reject")
    outcome = await evaluate(resolver, "example.org", spf("fail", "example.org"), [dkim("temperror", "example.org")])
    assert (outcome.result, outcome.disposition) == ("temperror", "none")


async def test_unicode_from_domain_is_looked_up_by_its_a_labels(dns_server, resolver):
    dns_server.txt("_dmarc.xn--bcher-kva.example", "v=DMARC1; p=reject")
    outcome = await evaluate(resolver, "Bücher.example", spf("fail", "bücher.example"), NO_DKIM)
    assert (outcome.from_domain, outcome.result, outcome.disposition) == ("xn--bcher-kva.example", "fail", "reject")
