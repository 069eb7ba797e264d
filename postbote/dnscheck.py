"""Live DNS checks: what a domain publishes now, against what postbote needs.

One ``Check`` per record kind (MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT, PTR)
with a verdict: ``ok``, ``warning`` (works, but not as recommended), ``error``
(mail will be refused, misrouted or fail authentication) or ``unknown`` (the
lookup failed temporarily: try again). The admin domain page and
``postbote dns check DOMAIN`` show the same list.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from postbote.dns import DnsError, Resolver, TempFailure
from postbote.mailauth.keys import load_keys

OK, WARNING, ERROR, UNKNOWN = "ok", "warning", "error", "unknown"


@dataclass(frozen=True)
class Check:
    record: str  # MX, SPF, DKIM selector, DMARC …
    name: str  # the DNS name looked up
    verdict: str
    detail: str
    found: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"record": self.record, "name": self.name, "verdict": self.verdict, "detail": self.detail,
                "found": list(self.found)}


async def _txt(resolver: Resolver, name: str, prefix: str) -> tuple[list[str], str | None]:
    """TXT records starting with ``prefix`` (case-insensitive), or a temp-failure text."""
    try:
        texts = await resolver.txt(name)
    except TempFailure as exc:
        return [], str(exc)
    except DnsError:
        return [], None
    return [t for t in texts if t.lower().startswith(prefix.lower())], None


async def check_mx(resolver: Resolver, domain: str, hostname: str) -> Check:
    try:
        mx = await resolver.mx(domain)
    except TempFailure as exc:
        return Check("MX", domain, UNKNOWN, str(exc))
    except DnsError:
        return Check("MX", domain, ERROR, f"no MX record: add \"{domain}. MX 10 {hostname}.\"")
    hosts = [h.rstrip(".").lower() for _, h in mx]
    found = tuple(f"{p} {h}" for p, h in mx)
    if hostname.lower() in hosts:
        return Check("MX", domain, OK, f"MX points at {hostname}", found)
    return Check("MX", domain, ERROR, f"MX does not point at {hostname}", found)


async def check_spf(resolver: Resolver, domain: str) -> Check:
    records, temp = await _txt(resolver, domain, "v=spf1")
    if temp:
        return Check("SPF", domain, UNKNOWN, temp)
    if not records:
        return Check("SPF", domain, ERROR, "no SPF record: add \"v=spf1 mx -all\"")
    if len(records) > 1:  # RFC 7208 §4.5: more than one is a permerror
        return Check("SPF", domain, ERROR, "more than one SPF record (RFC 7208 §4.5: permerror)", tuple(records))
    terms = records[0].lower().split()
    if not any(t.lstrip("+") in ("mx", "a") or t.startswith(("ip4:", "ip6:", "include:", "redirect=", "+mx"))
               for t in terms[1:]):
        return Check("SPF", domain, WARNING, "SPF names no sender (mx, a, ip4: …)", tuple(records))
    if terms[-1] not in ("-all", "~all") and not any(t.startswith("redirect=") for t in terms):
        return Check("SPF", domain, WARNING, "SPF does not end in -all or ~all", tuple(records))
    return Check("SPF", domain, OK, "one SPF record", tuple(records))


def _tag(record: str, tag: str) -> str:
    for part in record.split(";"):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == tag:
            return "".join(value.split())
    return ""


async def check_dkim(resolver: Resolver, domain: str, data_dir: Path) -> list[Check]:
    keys = await asyncio.to_thread(load_keys, data_dir, domain)
    if not keys:
        return [Check("DKIM", f"_domainkey.{domain}", ERROR,
                      f"no DKIM keys: run 'postbote dkim generate {domain}' and publish the records")]
    checks = []
    for key in keys:
        name = f"{key.selector}._domainkey.{domain}"
        records, temp = await _txt(resolver, name, "v=DKIM1")
        if temp:
            checks.append(Check(f"DKIM {key.selector}", name, UNKNOWN, temp))
        elif not records:
            checks.append(Check(f"DKIM {key.selector}", name, ERROR, "not published: mail signed with it fails DKIM"))
        elif any(_tag(r, "p") == _tag(key.dns_record(), "p") for r in records):
            checks.append(Check(f"DKIM {key.selector}", name, OK, "public key matches", tuple(records)))
        else:
            checks.append(Check(f"DKIM {key.selector}", name, ERROR, "published key differs from ours",
                                tuple(records)))
    return checks


async def check_dmarc(resolver: Resolver, domain: str) -> Check:
    name = f"_dmarc.{domain}"
    records, temp = await _txt(resolver, name, "v=DMARC1")
    if temp:
        return Check("DMARC", name, UNKNOWN, temp)
    if len(records) != 1:
        what = "no DMARC record" if not records else "more than one DMARC record (RFC 7489 §6.6.3: none applies)"
        return Check("DMARC", name, ERROR, what, tuple(records))
    policy = _tag(records[0], "p").lower()
    if policy not in ("none", "quarantine", "reject"):
        return Check("DMARC", name, ERROR, "no valid p= policy", tuple(records))
    if policy == "none":
        return Check("DMARC", name, WARNING, "p=none: receivers are asked to do nothing", tuple(records))
    return Check("DMARC", name, OK, f"policy {policy}", tuple(records))


async def check_simple(resolver: Resolver, record: str, name: str, prefix: str, missing: str) -> Check:
    records, temp = await _txt(resolver, name, prefix)
    if temp:
        return Check(record, name, UNKNOWN, temp)
    if len(records) == 1:
        return Check(record, name, OK, "published", tuple(records))
    return Check(record, name, WARNING if not records else ERROR,
                 missing if not records else f"more than one {prefix} record", tuple(records))


async def check_ptr(resolver: Resolver, hostname: str) -> Check:
    try:
        addresses = await resolver.addresses(hostname)
    except TempFailure as exc:
        return Check("PTR", hostname, UNKNOWN, str(exc))
    if not addresses:
        return Check("PTR", hostname, ERROR, f"{hostname} has no A or AAAA record")
    bad: list[str] = []
    found: list[str] = []
    for ip in addresses:
        try:
            names = await resolver.ptr(ip)
        except TempFailure as exc:
            return Check("PTR", hostname, UNKNOWN, str(exc))
        except DnsError:
            names = []
        found += [f"{ip} {n}" for n in names] or [f"{ip} (none)"]
        if hostname.lower() not in (n.rstrip(".").lower() for n in names):
            bad.append(ip)
    if bad:
        return Check("PTR", hostname, ERROR, f"reverse DNS of {', '.join(bad)} does not name {hostname}: "
                     "many receivers refuse such mail", tuple(found))
    return Check("PTR", hostname, OK, "reverse DNS matches", tuple(found))


async def check_domain(resolver: Resolver, domain: str, hostname: str, data_dir: Path) -> list[Check]:
    """Every check, in the order the records page lists them."""
    simple = [
        check_simple(resolver, "MTA-STS", f"_mta-sts.{domain}", "v=STSv1",
                     "no MTA-STS record: senders may deliver without verified TLS (RFC 8461)"),
        check_simple(resolver, "TLS-RPT", f"_smtp._tls.{domain}", "v=TLSRPTv1",
                     "no TLS-RPT record: no reports of TLS failures (RFC 8460)"),
    ]
    mx, spf, dkim, dmarc, sts, rpt, ptr = await asyncio.gather(
        check_mx(resolver, domain, hostname), check_spf(resolver, domain), check_dkim(resolver, domain, data_dir),
        check_dmarc(resolver, domain), *simple, check_ptr(resolver, hostname))
    return [mx, spf, *dkim, dmarc, sts, rpt, ptr]
