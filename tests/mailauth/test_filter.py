"""The mail authentication filter's local policy: trusted forwarders, report-only
domains, local overrides, several From domains; and the pipeline's header removal."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import pytest

from postbote.config import ConfigError, MailAuthSettings, load_settings
from postbote.filters.pipeline import Action, FilterResult, MessageContext, insert_headers, run_filters
from postbote.mailauth.arc import seal
from postbote.mailauth.filter import MailAuthFilter, from_domains
from postbote.mailauth.keys import generate_keys
from postbote.filters.pipeline import header_fields

from .conftest import MESSAGE, publish

TRACE = b"Received: from relay by mx.test; Mon, 30 Nov 2026 03:00:00 +0000\r\n"


def context(tmp_path: Path, message: bytes = MESSAGE, **kw) -> MessageContext:
    spool = tmp_path / "spool.eml"
    spool.write_bytes(TRACE + message)
    fields = dict(queue_id="Q1", service="smtp", peer_ip="192.0.2.7", helo="relay.example.net",
                  sender="alice@example.org", recipients=("bob@example.net",), spool_path=spool,
                  trace_length=len(TRACE))
    fields.update(kw)
    return MessageContext(**fields)


def auth_filter(resolver, **settings) -> MailAuthFilter:
    return MailAuthFilter("mx.test", MailAuthSettings(record_results=False, **settings), resolver)


@pytest.fixture
def reject_policy(dns_server):
    dns_server.txt("_dmarc.example.org", "v=DMARC1; p=reject")
    dns_server.txt("example.org", "v=spf1 -all")


async def test_failing_dmarc_reject_is_refused(resolver, reject_policy, tmp_path):
    result = await auth_filter(resolver).check(context(tmp_path))
    assert (result.action, result.code, result.status) == (Action.REJECT, 550, "5.7.1")


async def test_trusted_forwarder_ip_overrides_the_policy(resolver, reject_policy, tmp_path):
    result = await auth_filter(resolver, trusted_forwarders=("192.0.2.0/24",)).check(context(tmp_path))
    assert result.action is Action.ACCEPT
    assert b"dmarc=fail" in result.prepend


@pytest.mark.parametrize("trusted,expected", [(("forwarder.example",), Action.ACCEPT), ((), Action.REJECT)])
async def test_arc_chain_sealed_by_a_trusted_forwarder_overrides(dns_server, resolver, reject_policy, key_dir,
                                                                 tmp_path, trusted, expected):
    key = next(k for k in generate_keys(key_dir / "fwd", "forwarder.example", datetime.date(2026, 4, 1))
               if k.algorithm == "rsa-sha256")
    publish(dns_server, key)
    hop = b"Authentication-Results: mx.forwarder.example; spf=pass smtp.mailfrom=example.org; arc=none\r\n" + MESSAGE
    sealed = seal(hop, key, "mx.forwarder.example") + hop
    result = await auth_filter(resolver, trusted_forwarders=trusted).check(context(tmp_path, sealed))
    assert result.action is expected


@pytest.mark.parametrize("draw,expected", [(0.2, Action.REJECT), (0.8, Action.JUNK)])
async def test_pct_sampled_out_reject_is_quarantined(dns_server, resolver, tmp_path, draw, expected):
    dns_server.txt("_dmarc.example.org", "v=DMARC1; p=reject; pct=50")
    auth = MailAuthFilter("mx.test", MailAuthSettings(record_results=False), resolver, sample=lambda: draw)
    assert (await auth.check(context(tmp_path))).action is expected


async def test_never_refuse_overrides_the_policy(resolver, reject_policy, tmp_path):
    result = await auth_filter(resolver, never_refuse=("example.org",)).check(context(tmp_path))
    assert result.action is Action.ACCEPT


async def test_always_reject_applies_without_a_published_policy(dns_server, resolver, tmp_path):
    message = MESSAGE.replace(b"alice@example.org", b"ceo@our.example")
    result = await auth_filter(resolver, always_reject=("our.example",)).check(context(tmp_path, message))
    assert (result.action, result.code) == (Action.REJECT, 550)


async def test_report_only_domain_accepts(resolver, reject_policy, tmp_path):
    only = auth_filter(resolver, report_only_domains=("example.net",))
    assert (await only.check(context(tmp_path))).action is Action.ACCEPT
    mixed = context(tmp_path, recipients=("bob@example.net", "eve@enforced.example"))
    assert (await only.check(mixed)).action is Action.REJECT


async def test_enforce_false_only_reports(resolver, reject_policy, tmp_path):
    result = await auth_filter(resolver, enforce=False).check(context(tmp_path))
    assert result.action is Action.ACCEPT
    assert b"dmarc=fail (p=reject dis=reject)" in result.prepend


async def test_second_from_domain_with_reject_policy_is_refused(dns_server, resolver, tmp_path):
    dns_server.txt("_dmarc.bank.example", "v=DMARC1; p=reject")
    message = MESSAGE.replace(b"From: Alice <alice@example.org>", b"From: a@example.org, b@bank.example")
    result = await auth_filter(resolver).check(context(tmp_path, message))
    assert result.action is Action.REJECT


async def test_mail_of_authenticated_users_is_left_alone(resolver, reject_policy, tmp_path):
    result = await auth_filter(resolver).check(context(tmp_path, authenticated_user="alice@example.org"))
    assert result == FilterResult()


async def test_disabled_checks_nothing(resolver, reject_policy, tmp_path):
    assert await auth_filter(resolver, enabled=False).check(context(tmp_path)) == FilterResult()


def test_from_domains_reads_every_from_field():
    fields = header_fields(b"From: A <a@Example.ORG>\r\nTo: x@y.example\r\nFrom: b@other.example, c@example.org\r\n\r\n")
    assert from_domains(fields) == ["example.org", "other.example"]


async def test_forged_results_are_removed_in_the_spool(dns_server, resolver, tmp_path):
    forged = (b"Authentication-Results: mx.test; dkim=pass header.d=bank.example\r\n"
              b"Authentication-Results: (comment) MX.TEST.; spf=pass\r\n"
              b"Authentication-Results: other.example; spf=pass\r\n")
    ctx = context(tmp_path, forged + MESSAGE)
    verdict = await run_filters([auth_filter(resolver)], ctx)
    insert_headers(ctx.spool_path, ctx.trace_length, verdict.prepended, verdict.removed)
    spool = ctx.spool_path.read_bytes()
    assert spool.startswith(TRACE + b"Authentication-Results: mx.test;\r\n\tspf=")
    assert b"bank.example" not in spool and b"MX.TEST." not in spool
    assert b"Authentication-Results: other.example; spf=pass\r\n" + MESSAGE in spool


class _Remover:
    name = "remover"

    async def check(self, ctx: MessageContext) -> FilterResult:
        return FilterResult(prepend=b"X-Added: 1\r\n", remove_headers=(1,))


async def test_pipeline_removes_fields_by_index_and_keeps_the_body(tmp_path):
    ctx = context(tmp_path, b"A: 1\r\nB: 2\r\n continued\r\nC: 3\r\n\r\nB: not a header\r\n")
    verdict = await run_filters([_Remover()], ctx)
    assert verdict.removed == (1,)
    insert_headers(ctx.spool_path, ctx.trace_length, verdict.prepended, verdict.removed)
    assert ctx.spool_path.read_bytes() == TRACE + b"X-Added: 1\r\nA: 1\r\nC: 3\r\n\r\nB: not a header\r\n"


def test_mailauth_config_section(tmp_path):
    path = tmp_path / "postbote.toml"
    path.write_text('[mailauth]\nenforce = false\ntrusted_forwarders = ["lists.example.org", "192.0.2.0/24"]\n')
    settings = load_settings(path)
    assert settings.mailauth == dataclasses.replace(MailAuthSettings(), enforce=False,
                                                    trusted_forwarders=("lists.example.org", "192.0.2.0/24"))
    path.write_text('[mailauth]\nnever_refuse = ["not a domain"]\n')
    with pytest.raises(ConfigError, match="mailauth.never_refuse"):
        load_settings(path)
