"""Routing, MTA-STS policies, DSN messages, the retry schedule and the [outbound] settings."""

from __future__ import annotations

import asyncio
import email
import email.policy
import random

import pytest

from postbote.config import ConfigError, DnsSettings, OutboundSettings, load_settings, parse_duration
from postbote.dns import Resolver
from postbote.queue import schedule
from postbote.queue.dsn import RecipientReport, build_dsn, status_of, strip_return_path, wants
from postbote.queue.mtasts import Policy, PolicyError, parse_http, parse_policy, txt_id
from postbote.queue.records import dns_records, quoted
from postbote.queue.routing import NoRoute, Route, order_mx, route
from postbote.store import QueuedEntry, QueuedRecipient


def resolve_route(dns, domain: str):
    return asyncio.run(route(Resolver(DnsSettings(nameservers=(dns.address,), timeout=2.0)), domain))


# -- routing ------------------------------------------------------------------------

def test_mx_hosts_are_ordered_by_preference():
    assert order_mx([(20, "b."), (10, "a."), (30, "c.")]) == ["a", "b", "c"]


def test_equal_preference_mx_hosts_are_tried_in_random_order():
    orders = {tuple(order_mx([(10, "a"), (10, "b"), (10, "c"), (5, "z")], random.Random(seed)))
              for seed in range(40)}
    assert all(o[0] == "z" for o in orders) and len(orders) > 1


def test_route_uses_mx_records(dns):
    dns.add("r.test", "MX", "20 two.r.test.", "10 one.r.test.")
    assert resolve_route(dns, "r.test") == Route(("one.r.test", "two.r.test"), secure=False)


def test_domain_without_mx_routes_to_its_own_address(dns):
    dns.add("a.test", "A", "127.0.0.2")
    assert resolve_route(dns, "a.test") == Route(("a.test",), mx=False)


def test_null_mx_is_a_permanent_failure(dns):
    dns.add("n.test", "MX", "0 .")
    found = resolve_route(dns, "n.test")
    assert isinstance(found, NoRoute) and found.permanent and found.status == "5.1.10"


def test_nonexistent_domain_is_a_permanent_failure(dns):
    dns.add("other.test", "A", "127.0.0.2")
    found = resolve_route(dns, "missing.test")
    assert isinstance(found, NoRoute) and found.permanent


def test_dns_servfail_is_temporary_never_no_records(dns):
    dns.servfail.add("flaky.test")
    found = resolve_route(dns, "flaky.test")
    assert isinstance(found, NoRoute) and not found.permanent and found.status.startswith("4.")


# -- MTA-STS --------------------------------------------------------------------------

def test_policy_parses_and_matches_wildcards_of_one_label():
    p = parse_policy("version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 86400\n")
    assert p.enforced and p.max_age == 86400
    assert p.matches("MAIL.example.com.") and p.matches("mx1.example.net")
    assert not p.matches("a.b.example.net") and not p.matches("example.net") and not p.matches("evil.com")


@pytest.mark.parametrize("text", ["mode: enforce\nmx: a\nmax_age: 1\n",
                                  "version: STSv1\nmode: sometimes\nmx: a\nmax_age: 1\n",
                                  "version: STSv1\nmode: enforce\nmax_age: 1\n",
                                  "version: STSv1\nmode: enforce\nmx: a\n"])
def test_invalid_policies_are_refused(text):
    with pytest.raises(PolicyError):
        parse_policy(text)


def test_txt_record_gives_the_policy_id_only_when_single_and_valid():
    assert txt_id(["v=STSv1; id=2026-11-30"]) is None  # not alphanumeric
    assert txt_id(["v=STSv1; id=abc123"]) == "abc123"
    assert txt_id(["v=STSv1; id=a", "v=STSv1; id=b"]) is None
    assert txt_id(["v=spf1 -all"]) is None


def test_policy_fetch_requires_200_and_text_plain():
    assert parse_http(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nbody") == "body"
    with pytest.raises(PolicyError):
        parse_http(b"HTTP/1.1 301 Moved\r\nLocation: x\r\n\r\n")
    with pytest.raises(PolicyError):
        parse_http(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\nbody")


def test_testing_mode_is_not_enforced():
    assert not Policy("testing", ("a",), 1).enforced


# -- DSN -------------------------------------------------------------------------------

def entry(**kw) -> QueuedEntry:
    rcpts = (QueuedRecipient("bob@remote.test", orcpt="rfc822;bob@remote.test"),)
    values = dict(id=1, queue_id="Q1", blob_id=1, sender="alice@postbote.test", domain="remote.test",
                  recipients=rcpts, created=1_700_000_000, next_attempt=0, attempts=1, envid="ENV1")
    values.update(kw)
    return QueuedEntry(**values)


ORIGINAL = b"From: alice@postbote.test\r\nSubject: original\r\n\r\nthe body\r\n"


def test_failure_dsn_is_a_multipart_report_with_the_rfc3464_fields():
    e = entry()
    report = RecipientReport(e.recipients[0], "failed", "5.1.1", "550 5.1.1 no such user", "mx.remote.test")
    raw = build_dsn(e, [report], ORIGINAL, "mail.postbote.test", 1_700_000_100)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report" and msg["To"].addresses[0].addr_spec == "alice@postbote.test"
    assert msg["Auto-Submitted"] == "auto-replied"
    kinds = [p.get_content_type() for p in msg.iter_parts()]
    assert kinds == ["text/plain", "message/delivery-status", "message/rfc822"]
    status = "\n".join(str(b) for b in list(msg.iter_parts())[1].get_payload())
    for field in ("Reporting-MTA: dns; mail.postbote.test", "Original-Envelope-Id: ENV1",
                  "Final-Recipient: rfc822; bob@remote.test", "Original-Recipient: rfc822;bob@remote.test",
                  "Action: failed", "Status: 5.1.1", "Remote-MTA: dns; mx.remote.test",
                  "Diagnostic-Code: smtp; 550 5.1.1 no such user"):
        assert field in status
    assert b"the body" in raw and raw.count(b"\r\n") == raw.count(b"\n")


def test_ret_hdrs_returns_only_the_header():
    e = entry(ret="HDRS")
    raw = build_dsn(e, [RecipientReport(e.recipients[0], "failed", "5.0.0")], ORIGINAL, "h", 0)
    assert b"text/rfc822-headers" in raw and b"Subject: original" in raw and b"the body" not in raw


def test_delay_dsn_says_until_when_it_retries():
    e = entry()
    raw = build_dsn(e, [RecipientReport(e.recipients[0], "delayed", "4.4.1")], ORIGINAL, "h", 0, 1_700_432_000)
    assert b"Action: delayed" in raw and b"Will-Retry-Until:" in raw


def test_notify_decides_which_dsns_a_recipient_gets():
    default = QueuedRecipient("a@b")
    assert wants(default, "failed") and wants(default, "delayed") and not wants(default, "relayed")
    never = QueuedRecipient("a@b", notify="NEVER")
    assert not wants(never, "failed")
    success = QueuedRecipient("a@b", notify="SUCCESS")
    assert wants(success, "relayed") and not wants(success, "failed")


def test_our_return_path_line_is_removed_before_sending():
    assert strip_return_path(b"Return-Path: <a@b>\r\nReceived: x\r\n\r\nbody") == b"Received: x\r\n\r\nbody"
    assert strip_return_path(b"Subject: x\r\n\r\n") == b"Subject: x\r\n\r\n"


def test_status_comes_from_the_reply_or_a_generic_one():
    assert status_of("550 5.7.1 refused", True) == "5.7.1"
    assert status_of("550 refused", True) == "5.0.0"
    assert status_of("451 try later", False) == "4.0.0"


# -- schedule and settings ---------------------------------------------------------------

def test_retry_waits_grow_and_the_last_one_repeats():
    s = OutboundSettings(retry_schedule=("1m", "1h"))
    assert schedule.next_attempt(s, 1, 0) == 60
    assert schedule.next_attempt(s, 2, 0) == 3600
    assert schedule.next_attempt(s, 9, 0) == 3600


def test_give_up_and_delay_notice_times():
    s = OutboundSettings(delay_notice_after=100, give_up_after=1000)
    assert not schedule.expired(s, 0, 999) and schedule.expired(s, 0, 1000)
    assert schedule.delay_notice_due(s, 0, 100, False) and not schedule.delay_notice_due(s, 0, 100, True)
    assert not schedule.delay_notice_due(OutboundSettings(delay_notice_after=0), 0, 10**9, False)


def test_durations():
    assert [parse_duration(t) for t in ("30s", "5m", "2h", "1d", "90", "x", "5y")] == \
        [30, 300, 7200, 86400, 90, None, None]


def test_outbound_settings_from_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[outbound]\nport = 2525\nretry_schedule = ["10s", "1h"]\nsmarthost = "relay.example"\n')
    s = load_settings(path)
    assert s.outbound.port == 2525 and s.outbound.retry_schedule == ("10s", "1h")
    assert s.outbound.smarthost == "relay.example"


@pytest.mark.parametrize("body, key", [('retry_schedule = ["soon"]', "outbound.retry_schedule"),
                                       ("port = 0", "outbound.port"),
                                       ('smarthost_tls = "maybe"', "outbound.smarthost_tls")])
def test_bad_outbound_settings_name_the_key(tmp_path, body, key):
    path = tmp_path / "c.toml"
    path.write_text(f"[outbound]\n{body}\n")
    with pytest.raises(ConfigError, match=key):
        load_settings(path)


# -- DNS records to publish ----------------------------------------------------------------

def test_dns_records_cover_every_kind_and_split_long_txt():
    lines = dns_records("example.org", "mail.example.org", [])
    text = "\n".join(lines)
    for needle in ("IN\tMX\t10 mail.example.org.", "v=spf1 mx -all", "_dmarc.example.org.", "v=STSv1; id=",
                   "_smtp._tls.example.org.", "_submissions._tcp.example.org.", "autoconfig.example.org.",
                   "postbote dkim generate example.org"):
        assert needle in text
    assert quoted("x" * 300) == f'"{"x" * 255}" "{"x" * 45}"'


def test_development_instance_sends_nothing_off_the_machine(tmp_path):
    assert load_settings(None).outbound.enabled is False
    path = tmp_path / "c.toml"
    path.write_text('hostname = "mail.example.org"\n')
    assert load_settings(path).outbound.enabled is True
