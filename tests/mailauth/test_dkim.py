"""DKIM verification against a DNS server on loopback: messages signed by dkimpy and by
opendkim, good and tampered, Ed25519 and RSA, and the RFC 8301 / RFC 6376 §8.2 rules."""

from __future__ import annotations

import re
import shutil
import subprocess

import dkim
import pytest

from postbote.mailauth.dkim_verify import verify_dkim
from postbote.mailauth.keys import SigningKey, generate_keys
from tests.conftest import require

from .conftest import MESSAGE, publish


def sign(message: bytes, key: SigningKey, **kw) -> bytes:
    return dkim.sign(message, key.selector.encode(), key.domain.encode(), key.dkimpy_private,
                     signature_algorithm=key.algorithm.encode(), **kw) + message


def weak_key() -> SigningKey:
    """A 512-bit RSA key (the cryptography package refuses to make one; openssl still does)."""
    require(shutil.which("openssl") is not None, "openssl is missing")
    pem = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:512"],
                         capture_output=True, check=True, timeout=30).stdout
    return SigningKey("example.org", "weak", "rsa-sha256", pem)


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "ed25519-sha256"])
async def test_dkimpy_signature_passes(dns_server, resolver, sender_keys, algorithm):
    key = sender_keys[algorithm]
    publish(dns_server, key)
    [result] = await verify_dkim(sign(MESSAGE, key), resolver)
    assert (result.result, result.domain, result.selector, result.algorithm) == (
        "pass", "example.org", key.selector, algorithm)


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "ed25519-sha256"])
async def test_tampered_body_fails(dns_server, resolver, sender_keys, algorithm):
    publish(dns_server, sender_keys[algorithm])
    signed = sign(MESSAGE, sender_keys[algorithm]).replace(b"numbers are in", b"numbers are out")
    [result] = await verify_dkim(signed, resolver)
    assert result.result == "fail"
    assert "body hash" in result.reason


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "ed25519-sha256"])
async def test_tampered_signed_header_fails(dns_server, resolver, sender_keys, algorithm):
    publish(dns_server, sender_keys[algorithm])
    signed = sign(MESSAGE, sender_keys[algorithm]).replace(b"quarterly numbers", b"send the money")
    [result] = await verify_dkim(signed, resolver)
    assert result.result == "fail"


async def test_key_replaced_in_dns_fails(dns_server, resolver, sender_keys, key_dir):
    key = sender_keys["rsa-sha256"]
    other = next(k for k in generate_keys(key_dir / "other", "example.org") if k.algorithm == "rsa-sha256")
    publish(dns_server, other, selector=key.selector)
    [result] = await verify_dkim(sign(MESSAGE, key), resolver)
    assert result.result == "fail"


async def test_missing_key_is_permerror(resolver, sender_keys):
    [result] = await verify_dkim(sign(MESSAGE, sender_keys["ed25519-sha256"]), resolver)
    assert result.result == "permerror"
    assert "no key" in result.reason


async def test_revoked_key_is_permerror(dns_server, resolver, sender_keys):
    key = sender_keys["rsa-sha256"]
    dns_server.txt(f"{key.selector}._domainkey.example.org", "v=DKIM1; k=rsa; p=")
    [result] = await verify_dkim(sign(MESSAGE, key), resolver)
    assert result.result == "permerror"


async def test_key_lookup_timeout_is_temperror(dns_server, resolver, sender_keys):
    key = sender_keys["rsa-sha256"]
    dns_server.timeouts.add(f"{key.selector}._domainkey.example.org")
    [result] = await verify_dkim(sign(MESSAGE, key), resolver)
    assert result.result == "temperror"


async def test_every_signature_is_verified(dns_server, resolver, sender_keys):
    publish(dns_server, sender_keys["rsa-sha256"])
    publish(dns_server, sender_keys["ed25519-sha256"])
    twice = sign(sign(MESSAGE, sender_keys["rsa-sha256"]), sender_keys["ed25519-sha256"])
    results = await verify_dkim(twice, resolver)
    assert [r.algorithm for r in results] == ["ed25519-sha256", "rsa-sha256"]
    assert {r.result for r in results} == {"pass"}


async def test_weak_rsa_key_is_not_accepted(dns_server, resolver):
    key = weak_key()
    publish(dns_server, key)
    [result] = await verify_dkim(sign(MESSAGE, key), resolver)
    assert result.result == "policy"  # RFC 8301 §3.2: at least 1024 bits


async def test_rsa_sha1_is_not_accepted(dns_server, resolver, sender_keys):
    key = sender_keys["rsa-sha256"]
    publish(dns_server, key)
    signed = dkim.sign(MESSAGE, key.selector.encode(), b"example.org", key.private_pem,
                       signature_algorithm=b"rsa-sha1") + MESSAGE
    [result] = await verify_dkim(signed, resolver)
    assert result.result == "policy"  # RFC 8301 §3.1


async def test_body_length_limit_with_appended_text_does_not_count(dns_server, resolver, sender_keys):
    key = sender_keys["rsa-sha256"]
    publish(dns_server, key)
    signed = sign(MESSAGE, key, length=True)
    [intact] = await verify_dkim(signed, resolver)
    [appended] = await verify_dkim(signed + b"Click here: http://phish.example/\r\n", resolver)
    assert intact.result == "pass"
    assert appended.result == "policy"


async def test_signature_without_from_is_permerror(dns_server, resolver, sender_keys):
    key = sender_keys["rsa-sha256"]
    publish(dns_server, key)
    signed = sign(MESSAGE, key)
    unsigned_from = re.sub(rb"h=[^;]*;", b"h=to : subject;", signed, count=1)
    [result] = await verify_dkim(unsigned_from, resolver)
    assert result.result == "permerror"


async def test_garbage_signature_is_permerror(resolver):
    [result] = await verify_dkim(b"DKIM-Signature: v=1; a=nonsense; zzz\r\n" + MESSAGE, resolver)
    assert result.result == "permerror"


async def test_unsigned_message_has_no_results(resolver):
    assert await verify_dkim(MESSAGE, resolver) == []


# -- opendkim as the signer ------------------------------------------------------
# opendkim-testmsg (Debian opendkim-tools) signs with rsa-sha1 and has no option for
# rsa-sha256, so its signatures are checked with accept_sha1 (crypto interop), and
# without it they must be refused as RFC 8301 asks.

def opendkim_sign(message: bytes, key: SigningKey, tmp_path) -> bytes:
    require(shutil.which("opendkim-testmsg") is not None, "opendkim-testmsg (Debian opendkim-tools) is missing")
    keyfile = tmp_path / "key.pem"
    keyfile.write_bytes(key.private_pem)
    done = subprocess.run(["opendkim-testmsg", "-C", "-d", key.domain, "-s", key.selector, "-k", str(keyfile)],
                          input=message, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"DKIM-Signature:")
    return done.stdout


OPENDKIM_MESSAGE = b"Received: from a.example.org by b.example.org; Mon, 30 Nov 2026 03:00:00 +0000\r\n" + MESSAGE


async def test_opendkim_signature_verifies(dns_server, resolver, sender_keys, tmp_path):
    key = sender_keys["rsa-sha256"]
    publish(dns_server, key)
    signed = opendkim_sign(OPENDKIM_MESSAGE, key, tmp_path)
    [checked] = await verify_dkim(signed, resolver, accept_sha1=True)
    [default] = await verify_dkim(signed, resolver)
    assert checked.result == "pass"
    assert default.result == "policy"


@pytest.mark.parametrize("tamper", [(b"The numbers are in.", b"The numbers are IN."),
                                    (b"Subject: quarterly numbers", b"Subject: quarterly numbers!")],
                         ids=["body", "header"])
async def test_opendkim_signature_tampered_fails(dns_server, resolver, sender_keys, tmp_path, tamper):
    key = sender_keys["rsa-sha256"]
    publish(dns_server, key)
    signed = opendkim_sign(OPENDKIM_MESSAGE, key, tmp_path).replace(*tamper)
    [result] = await verify_dkim(signed, resolver, accept_sha1=True)
    assert result.result == "fail"


async def test_opendkim_signature_with_other_key_fails(dns_server, resolver, sender_keys, key_dir, tmp_path):
    key = sender_keys["rsa-sha256"]
    other = next(k for k in generate_keys(key_dir / "other2", "example.org") if k.algorithm == "rsa-sha256")
    publish(dns_server, other, selector=key.selector)
    [result] = await verify_dkim(opendkim_sign(OPENDKIM_MESSAGE, key, tmp_path), resolver, accept_sha1=True)
    assert result.result == "fail"
