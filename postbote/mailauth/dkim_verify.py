"""DKIM verification (RFC 6376, Ed25519 from RFC 8463) of every signature of a message.

dkimpy does the canonicalization and the cryptography, but never the DNS:
the key records are fetched first, all at once, through postbote's async
resolver, and dkimpy then verifies in an executor thread with a ``dnsfunc``
that only reads what was fetched. That way a DNS timeout becomes a
"temperror" (try again later) instead of dkimpy's "fail", and the event loop
is never blocked by RSA.

Results are the words of RFC 8601 §2.7.1. Local rules the RFCs ask for:
RSA keys under 1024 bits and rsa-sha1 are not accepted (RFC 8301 §3), a
signature must cover From (RFC 6376 §5.4), and a signature with ``l=`` that
leaves part of the body unsigned does not count (RFC 6376 §8.2: appended
content could be anything).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import dkim
from dkim.canonicalization import CanonicalizationPolicy, InvalidCanonicalizationPolicyError
from dkim.util import InvalidTagValueList, parse_tag_value

from postbote.dns import TempFailure

from .lookup import Lookup, txt_records

MAX_SIGNATURES = 16  # a bound on the work one message can cause
MIN_RSA_BITS = 1024  # RFC 8301 §3.2


@dataclass(frozen=True)
class DkimResult:
    result: str  # pass, fail, neutral, policy, temperror, permerror (RFC 8601 §2.7.1)
    domain: str  # d=
    selector: str  # s=
    algorithm: str  # a=
    identity: str  # i=, or "@" + d= when absent
    signature_b: str  # the start of b=, to tell signatures apart (RFC 6008 header.b)
    reason: str = ""


@dataclass(frozen=True)
class _Signature:
    index: int
    tags: dict[bytes, bytes] | None
    error: str = ""

    def tag(self, name: bytes) -> str:
        if self.tags is None:
            return ""
        return self.tags.get(name, b"").decode("ascii", "replace")

    @property
    def key_name(self) -> str:
        return f"{self.tag(b's')}._domainkey.{self.tag(b'd')}"


async def verify_dkim(message: bytes, dns: Lookup, executor: Executor | None = None, *,
                      accept_sha1: bool = False) -> list[DkimResult]:
    """One result per DKIM-Signature field (at most MAX_SIGNATURES), topmost first.

    ``accept_sha1`` lets rsa-sha1 signatures pass, against RFC 8301 §3.1: only for
    checking old signers (tests compare with opendkim, which signs rsa-sha1 only).
    """
    signatures = await find_signatures(message, b"dkim-signature", executor)
    if not signatures:
        return []
    keys = await fetch_keys(dns, {s.key_name for s in signatures if s.tags is not None})
    return await asyncio.get_running_loop().run_in_executor(
        executor, _verify_all, message, signatures, keys, accept_sha1)


INLINE_HEADER = 64 * 1024  # a header this small is scanned faster than a thread hop takes


async def find_signatures(message: bytes, field_name: bytes, executor: Executor | None) -> list[_Signature]:
    """``signature_fields`` on the event loop for an ordinary header, in ``executor`` for a huge one."""
    head = _header_only(message)
    if len(head) <= INLINE_HEADER:
        return signature_fields(head, field_name)
    return await asyncio.get_running_loop().run_in_executor(executor, signature_fields, head, field_name)


def signature_fields(message: bytes, field_name: bytes) -> list[_Signature]:
    """Parse the tags of every ``field_name`` header field (blocking; small work)."""
    headers, _ = dkim.rfc822_parse(_header_only(message))
    found = []
    for name, value in headers:
        if name.lower() != field_name:
            continue
        index = len(found)
        if index >= MAX_SIGNATURES:
            break
        try:
            tags = parse_tag_value(value)
        except InvalidTagValueList as exc:
            found.append(_Signature(index, None, f"bad tag list: {exc}"))
            continue
        if b"d" not in tags or b"s" not in tags:
            found.append(_Signature(index, None, "missing d= or s="))
            continue
        found.append(_Signature(index, tags))
    return found


def _header_only(message: bytes) -> bytes:
    end = message.find(b"\r\n\r\n")
    return message if end < 0 else message[:end + 4]


KeyRecords = dict[str, "list[str] | TempFailure"]


async def fetch_keys(dns: Lookup, names: set[str]) -> KeyRecords:
    """TXT records of every key name, fetched concurrently; a failure is kept as a value."""
    async def one(name: str) -> "list[str] | TempFailure":
        try:
            return await txt_records(dns, name)
        except TempFailure as exc:
            return exc

    valid = sorted(n for n in names if _valid_name(n))
    found = await asyncio.gather(*(one(n) for n in valid))
    records: KeyRecords = dict(zip(valid, found))
    for name in names - set(valid):
        records[name] = []
    return records


def _valid_name(name: str) -> bool:
    labels = name.split(".")
    return len(name) <= 253 and all(0 < len(label) <= 63 for label in labels) and name.isascii()


def key_dnsfunc(keys: KeyRecords) -> Callable[..., bytes | None]:
    """The ``dnsfunc`` dkimpy calls: it only reads the records fetched beforehand."""
    def lookup(name: Any, timeout: int = 5) -> bytes | None:
        text = name.decode() if isinstance(name, bytes) else name
        found = keys.get(text.rstrip("."))
        if not isinstance(found, list) or not found:
            return None
        return found[0].encode("utf-8", "replace")
    return lookup


def _verify_all(message: bytes, signatures: list[_Signature], keys: KeyRecords,
                accept_sha1: bool = False) -> list[DkimResult]:
    try:
        verifier = dkim.DKIM(message, minkey=MIN_RSA_BITS)
    except dkim.DKIMException as exc:
        bad = _Signature(0, None, f"unparsable message: {exc}")
        return [_verify_one(None, b"", bad, keys, accept_sha1) for _ in signatures]  # type: ignore[arg-type]
    body = message[message.find(b"\r\n\r\n") + 4:] if b"\r\n\r\n" in message else b""
    return [_verify_one(verifier, body, s, keys, accept_sha1) for s in signatures]


def _verify_one(verifier: dkim.DKIM, body: bytes, sig: _Signature, keys: KeyRecords,
                accept_sha1: bool = False) -> DkimResult:
    def result(word: str, reason: str = "") -> DkimResult:
        d = sig.tag(b"d")
        return DkimResult(word, d.lower(), sig.tag(b"s"), sig.tag(b"a"), sig.tag(b"i") or f"@{d}",
                          re.sub(r"\s+", "", sig.tag(b"b"))[:12], reason)

    if sig.tags is None:
        return result("permerror", sig.error)
    problem = _policy_problem(sig, body, accept_sha1)
    if problem:
        return result(*problem)
    key = keys.get(sig.key_name)
    if isinstance(key, TempFailure):
        return result("temperror", f"key lookup: {key}")
    if not key:
        return result("permerror", f"no key at {sig.key_name}")
    try:
        dkim.evaluate_pk(sig.key_name.encode(), key[0].encode("utf-8", "replace"))
    except (dkim.KeyFormatError, ValueError, IndexError) as exc:
        return result("permerror", f"unusable key: {exc}")
    try:
        ok = verifier.verify(sig.index, dnsfunc=key_dnsfunc(keys))
    except dkim.KeyFormatError as exc:
        if "too small" in str(exc):
            return result("policy", f"weak key: {exc}")  # RFC 8301 §3.2
        return result("permerror", str(exc))
    except dkim.DKIMException as exc:
        text = str(exc)
        return result("fail" if "body hash" in text else "permerror", text)
    except (ValueError, TypeError, IndexError) as exc:  # dkimpy on malformed input
        return result("permerror", f"malformed signature: {exc}")
    return result("pass") if ok else result("fail", "signature did not verify")


def _policy_problem(sig: _Signature, body: bytes, accept_sha1: bool) -> tuple[str, str] | None:
    assert sig.tags is not None
    if sig.tag(b"a").lower() == "rsa-sha1" and not accept_sha1:
        return "policy", "rsa-sha1 is not accepted (RFC 8301 §3.1)"
    signed = [h.strip().lower() for h in sig.tag(b"h").split(":")]
    if "from" not in signed:
        return "permerror", "From is not signed (RFC 6376 §5.4)"
    if b"l" in sig.tags:
        try:
            policy = CanonicalizationPolicy.from_c_value(sig.tags.get(b"c", b"simple/simple"))
            length = int(sig.tags[b"l"])
        except (InvalidCanonicalizationPolicyError, ValueError):
            return "permerror", "bad c= or l="
        if len(policy.canonicalize_body(body)) > length:
            return "policy", "l= leaves part of the body unsigned (RFC 6376 §8.2)"
    return None
