"""DMARC (RFC 7489): does the From domain stand behind this message, and what does it ask?

A message passes when SPF or DKIM passed for a domain *aligned* with the
From domain: the same name (strict) or the same organizational domain
(relaxed; the organizational domain comes from the Public Suffix List). The
policy is found at ``_dmarc.FROM`` or else at ``_dmarc.ORGDOMAIN`` (§6.6.3);
``sp=`` applies to subdomains, and ``pct=`` samples which failing messages the
policy applies to (§6.6.4: the others get the next milder policy).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from postbote.dns import TempFailure

from .dkim_verify import DkimResult
from .lookup import Lookup, ascii_domain, txt_records
from .spf import SpfOutcome, SpfResult

POLICIES = ("none", "quarantine", "reject")


@lru_cache(maxsize=1)
def _psl():  # type: ignore[no-untyped-def]
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


@lru_cache(maxsize=10_000)
def organizational_domain(domain: str) -> str:
    """RFC 7489 §3.2: the public suffix plus one label (the name itself if it is a suffix)."""
    domain = domain.lower().rstrip(".")
    return _psl().privatesuffix(domain) or domain


def aligned(a: str, b: str, strict: bool) -> bool:
    """RFC 7489 §3.1: identifier alignment of two domain names."""
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if strict:
        return a == b
    return organizational_domain(a) == organizational_domain(b)


@dataclass(frozen=True)
class DmarcRecord:
    policy: str  # p=
    subdomain_policy: str  # sp= (p= when absent)
    adkim_strict: bool = False
    aspf_strict: bool = False
    pct: int = 100
    rua: tuple[str, ...] = ()
    ruf: tuple[str, ...] = ()


class _BadRecord(ValueError):
    pass


def parse_record(text: str) -> DmarcRecord:
    """A DMARC TXT record (§6.3); raises ValueError when it is not valid."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        name, eq, value = part.strip().partition("=")
        if not part.strip():
            continue
        if not eq:
            raise _BadRecord(f"bad tag {part!r}")
        tags.setdefault(name.strip().lower(), value.strip())
    if tags.get("v") != "DMARC1" or not text.lstrip().startswith("v"):
        raise _BadRecord("v=DMARC1 must come first")
    rua = tuple(u.strip() for u in tags.get("rua", "").split(",") if u.strip())
    p = tags.get("p", "").lower()
    if p not in POLICIES:
        if rua and "p" not in tags:
            p = "none"  # §6.6.3: a record with rua= but no p= is treated as p=none
        else:
            raise _BadRecord(f"bad p={p!r}")
    sp = tags.get("sp", p).lower()
    sp = sp if sp in POLICIES else p
    try:
        pct = min(100, max(0, int(tags.get("pct", "100"))))
    except ValueError:
        pct = 100
    return DmarcRecord(p, sp, tags.get("adkim", "r").lower() == "s", tags.get("aspf", "r").lower() == "s",
                       pct, rua, tuple(u.strip() for u in tags.get("ruf", "").split(",") if u.strip()))


@dataclass(frozen=True)
class DmarcOutcome:
    result: str  # none, pass, fail, temperror, permerror (RFC 8601 §2.7.1 / RFC 7489 §11.2)
    from_domain: str
    policy_domain: str = ""  # where the record was found
    record: DmarcRecord | None = None
    policy: str = "none"  # p= or sp=, whichever applies to the From domain
    disposition: str = "none"  # what to do: none, quarantine, reject (after pct sampling)
    spf_aligned: bool = False
    dkim_aligned: bool = False
    dkim_domains: tuple[str, ...] = field(default=())  # aligned passing signatures
    sampled_out: bool = False
    reason: str = ""


async def find_policy(dns: Lookup, from_domain: str) -> tuple[str, DmarcRecord | None]:
    """§6.6.3: the record at _dmarc.FROM, else at _dmarc.ORGDOMAIN. Raises TempFailure."""
    candidates = [from_domain]
    org = organizational_domain(from_domain)
    if org != from_domain:
        candidates.append(org)
    for domain in candidates:
        records = [t for t in await txt_records(dns, f"_dmarc.{domain}") if t.lstrip()[:8].lower() == "v=dmarc1"]
        if len(records) != 1:
            continue  # none, or several (§6.6.3: then there is no policy here)
        try:
            return domain, parse_record(records[0])
        except ValueError:
            continue
    return "", None


async def evaluate(dns: Lookup, from_domain: str, spf: SpfOutcome | None, dkim_results: list[DkimResult],
                   sample: Callable[[], float] = random.random, *,
                   fallback: DmarcRecord | None = None) -> DmarcOutcome:
    """RFC 7489 §6.6: the DMARC result and the disposition for one From domain.

    ``fallback`` is a local policy for a domain that publishes none (e.g. our own).
    """
    from_domain = ascii_domain(from_domain) or ""
    if not from_domain:
        return DmarcOutcome("none", from_domain, reason="From domain is not a domain name")
    try:
        policy_domain, record = await find_policy(dns, from_domain)
    except TempFailure as exc:
        if fallback is not None:
            policy_domain, record = from_domain, fallback
        else:
            return DmarcOutcome("temperror", from_domain, reason=f"policy lookup: {exc}")
    if record is None and fallback is not None:
        policy_domain, record = from_domain, fallback
    if record is None:
        return DmarcOutcome("none", from_domain, reason="no DMARC record")
    dkim_ok = tuple(r.domain for r in dkim_results
                    if r.result == "pass" and aligned(r.domain, from_domain, record.adkim_strict))
    spf_ok = (spf is not None and spf.result is SpfResult.PASS
              and aligned(spf.domain, from_domain, record.aspf_strict))
    policy = record.policy if policy_domain == from_domain else record.subdomain_policy
    base = DmarcOutcome("pass", from_domain, policy_domain, record, policy, "none", spf_ok, bool(dkim_ok), dkim_ok)
    if spf_ok or dkim_ok:
        return base
    temporary = (spf is not None and spf.result is SpfResult.TEMPERROR) or any(
        r.result == "temperror" for r in dkim_results)
    if temporary:
        # A check that could not finish might have passed: ask the sender to retry.
        return _replace(base, result="temperror", disposition="none", reason="SPF or DKIM had a temporary error")
    disposition, sampled_out = _apply_pct(policy, record.pct, sample)
    return _replace(base, result="fail", disposition=disposition, sampled_out=sampled_out,
                    reason="no aligned SPF or DKIM pass")


def _apply_pct(policy: str, pct: int, sample: Callable[[], float]) -> tuple[str, bool]:
    """§6.6.4: outside the sample, reject becomes quarantine and quarantine becomes none."""
    if policy == "none" or pct >= 100 or sample() * 100 < pct:
        return policy, False
    return ("quarantine" if policy == "reject" else "none"), True


def _replace(outcome: DmarcOutcome, **changes: object) -> DmarcOutcome:
    import dataclasses

    return dataclasses.replace(outcome, **changes)  # type: ignore[arg-type]
