"""ARC (RFC 8617): seal with postbote's keys, then verify the chain through the loopback DNS."""

from __future__ import annotations

import datetime

from postbote.mailauth.arc import seal, verify_arc
from postbote.mailauth.keys import generate_keys

from .conftest import MESSAGE, publish


def rsa_key(key_dir, domain):
    return next(k for k in generate_keys(key_dir / domain, domain, datetime.date(2026, 2, 1))
                if k.algorithm == "rsa-sha256")


def with_results(message: bytes, authserv_id: str, arc: str) -> bytes:
    return (f"Authentication-Results: {authserv_id}; spf=pass smtp.mailfrom=example.org;\r\n"
            f"\tdkim=none; arc={arc}\r\n").encode() + message


async def test_sealed_message_verifies(dns_server, resolver, key_dir):
    key = rsa_key(key_dir, "forwarder.example")
    publish(dns_server, key)
    message = with_results(MESSAGE, "mx.forwarder.example", "none")
    sealed = seal(message, key, "mx.forwarder.example") + message
    outcome = await verify_arc(sealed, resolver)
    assert (outcome.result, outcome.sealer, outcome.instance) == ("pass", "forwarder.example", 1)


async def test_second_hop_extends_the_chain(dns_server, resolver, key_dir):
    first, second = rsa_key(key_dir, "forwarder.example"), rsa_key(key_dir, "list.example")
    publish(dns_server, first)
    publish(dns_server, second)
    hop1 = with_results(MESSAGE, "mx.forwarder.example", "none")
    hop1 = seal(hop1, first, "mx.forwarder.example") + hop1
    hop2 = with_results(hop1, "mx.list.example", "pass")
    hop2 = seal(hop2, second, "mx.list.example") + hop2
    outcome = await verify_arc(hop2, resolver)
    assert (outcome.result, outcome.sealer, outcome.instance) == ("pass", "list.example", 2)


async def test_body_changed_after_sealing_fails(dns_server, resolver, key_dir):
    key = rsa_key(key_dir, "forwarder.example")
    publish(dns_server, key)
    message = with_results(MESSAGE, "mx.forwarder.example", "none")
    sealed = (seal(message, key, "mx.forwarder.example") + message).replace(b"numbers are in", b"numbers are out")
    assert (await verify_arc(sealed, resolver)).result == "fail"


async def test_seal_key_missing_fails(resolver, key_dir):
    key = rsa_key(key_dir, "forwarder.example")
    message = with_results(MESSAGE, "mx.forwarder.example", "none")
    assert (await verify_arc(seal(message, key, "mx.forwarder.example") + message, resolver)).result == "fail"


async def test_seal_key_timeout_is_not_a_pass(dns_server, resolver, key_dir):
    key = rsa_key(key_dir, "forwarder.example")
    publish(dns_server, key)
    dns_server.timeouts.add(f"{key.selector}._domainkey.forwarder.example")
    message = with_results(MESSAGE, "mx.forwarder.example", "none")
    assert (await verify_arc(seal(message, key, "mx.forwarder.example") + message, resolver)).result == "fail"


async def test_message_without_arc_is_none(resolver):
    assert (await verify_arc(MESSAGE, resolver)).result == "none"
