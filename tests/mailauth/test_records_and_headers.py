"""DMARC evaluations in the store, and the header fields SPF and DKIM results become."""

from __future__ import annotations

from postbote.mailauth.dkim_verify import DkimResult
from postbote.mailauth.results import authentication_results, authserv_id, forged_fields
from postbote.mailauth.spf import SpfOutcome, SpfResult, check_helo, check_mailfrom, received_spf
from postbote.store.sqlite import SqliteStore
from postbote.store.types import DmarcEvaluation


def evaluation(received: int, domain: str = "example.org") -> DmarcEvaluation:
    return DmarcEvaluation(received, "192.0.2.7", domain, "example.org", domain, "reject", "reject", "fail",
                           False, False, "example.org", "fail", (("example.org", "sel", "fail"),), "",
                           ("mailto:d@example.org",))


async def test_dmarc_evaluations_round_trip_and_expire(tmp_path):
    store = SqliteStore(tmp_path)
    await store.open()
    try:
        for when, domain in ((100, "example.org"), (200, "example.org"), (300, "other.example")):
            await store.add_dmarc_evaluation(evaluation(when, domain))
        rows = await store.dmarc_evaluations("example.org", 0, 1000)
        assert [r.received for r in rows] == [100, 200]
        assert rows[0].dkim == (("example.org", "sel", "fail"),) and rows[0].rua == ("mailto:d@example.org",)
        assert len(await store.dmarc_evaluations(None, 150, 1000)) == 2
        assert await store.delete_dmarc_evaluations(250) == 2
        assert [r.header_from for r in await store.dmarc_evaluations(None, 0, 1000)] == ["other.example"]
    finally:
        await store.close()


async def test_spf_checks_mail_from_and_helo(dns_server, resolver):
    dns_server.txt("example.org", "v=spf1 ip4:192.0.2.0/24 -all")
    dns_server.txt("relay.example.net", "v=spf1 a -all")
    dns_server.add("relay.example.net", "A", "192.0.2.7")
    assert (await check_mailfrom(resolver, "192.0.2.7", "alice@example.org", "relay.example.net")).result \
        is SpfResult.PASS
    assert (await check_mailfrom(resolver, "198.51.100.1", "alice@example.org", "x")).result is SpfResult.FAIL
    helo = await check_helo(resolver, "192.0.2.7", "relay.example.net")
    assert (helo.result, helo.identity, helo.sender) == (SpfResult.PASS, "helo", "postmaster@relay.example.net")
    bounce = await check_mailfrom(resolver, "192.0.2.7", "", "relay.example.net")
    assert (bounce.result, bounce.identity) == (SpfResult.PASS, "mailfrom")


async def test_spf_dns_timeout_is_temperror(dns_server, resolver):
    dns_server.timeouts.add("example.org")
    outcome = await check_mailfrom(resolver, "192.0.2.7", "alice@example.org", "x")
    assert outcome.result is SpfResult.TEMPERROR


async def test_ipv4_mapped_client_is_checked_as_ipv4(dns_server, resolver):
    dns_server.txt("example.org", "v=spf1 ip4:192.0.2.7 -all")
    outcome = await check_mailfrom(resolver, "::ffff:192.0.2.7", "alice@example.org", "x")
    assert outcome.result is SpfResult.PASS


def test_received_spf_field():
    outcome = SpfOutcome(SpfResult.FAIL, "mailfrom", "example.org", "alice@example.org")
    field = received_spf(outcome, "192.0.2.7", "relay.example.net", "mx.test")
    assert field.startswith("Received-SPF: fail (mx.test: domain of alice@example.org does not designate "
                            "192.0.2.7 as permitted sender)\r\n\t")
    assert 'envelope-from="alice@example.org"' in field and "identity=mailfrom" in field
    assert field.endswith("\r\n")


def test_authentication_results_field():
    spf = SpfOutcome(SpfResult.PASS, "mailfrom", "example.org", "alice@example.org")
    sig = DkimResult("fail", "example.org", "s1", "rsa-sha256", "@example.org", "AbCd", "body hash (mismatch)")
    field = authentication_results("mx.test", spf=spf, helo_spf=None, dkim=[sig], dmarc=None, arc=None)
    assert field == (b"Authentication-Results: mx.test;\r\n\tspf=pass smtp.mailfrom=alice@example.org;\r\n"
                     b"\tdkim=fail (body hash mismatch) header.d=example.org header.i=@example.org header.s=s1"
                     b" header.a=rsa-sha256 header.b=AbCd\r\n")


def test_forged_fields_match_our_authserv_id_only():
    fields = [b"Authentication-Results: mx.test; spf=pass\r\n", b"Subject: mx.test;\r\n",
              b"Authentication-Results: (hi) mx.test (there); none\r\n",
              b"Authentication-Results: mx.test.example; spf=pass\r\n",
              b"authentication-results:MX.Test;dkim=pass\r\n"]
    assert forged_fields(fields, "mx.test") == (0, 2, 4)
    assert authserv_id(b" (c) host.example 1; none") == "host.example"
