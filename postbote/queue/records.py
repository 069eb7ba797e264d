"""The DNS records a domain publishes so that its mail is delivered and trusted.

``postbote dns records DOMAIN`` prints them in zone-file form: MX, SPF
(RFC 7208), every DKIM key (RFC 6376), DMARC (RFC 7489), MTA-STS (RFC 8461,
with the policy file to serve), TLS-RPT (RFC 8460), and the SRV records
mail clients use to find the servers (RFC 6186, RFC 8314) plus autoconfig.
"""

from __future__ import annotations

import hashlib

from postbote.mailauth.keys import SigningKey

MTA_STS_MAX_AGE = 604800  # one week (RFC 8461 §3.2 suggests weeks)


def mta_sts_policy(hostname: str, mode: str = "enforce") -> str:
    return f"version: STSv1\r\nmode: {mode}\r\nmx: {hostname}\r\nmax_age: {MTA_STS_MAX_AGE}\r\n"


def quoted(text: str) -> str:
    """A TXT value as zone-file strings of at most 255 octets each (RFC 1035 §3.3.14)."""
    return " ".join(f'"{text[i:i + 255]}"' for i in range(0, len(text), 255)) or '""'


def dns_records(domain: str, hostname: str, keys: list[SigningKey]) -> list[str]:
    d, h = domain.rstrip(".") + ".", hostname.rstrip(".") + "."
    policy = mta_sts_policy(hostname)
    # The id changes exactly when the policy does (RFC 8461 §3.1).
    policy_id = hashlib.sha256(policy.encode()).hexdigest()[:20]
    lines = [
        f"{d}\t3600\tIN\tMX\t10 {h}",
        f"{d}\t3600\tIN\tTXT\t{quoted('v=spf1 mx -all')}",
    ]
    lines += [f"{k.selector}._domainkey.{d}\t3600\tIN\tTXT\t{quoted(k.dns_record())}" for k in keys]
    if not keys:
        lines.append(f"; no DKIM keys for {domain} yet: run 'postbote dkim generate {domain}'")
    lines += [
        f"_dmarc.{d}\t3600\tIN\tTXT\t{quoted(f'v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}')}",
        f"mta-sts.{d}\t3600\tIN\tCNAME\t{h}",
        f"_mta-sts.{d}\t3600\tIN\tTXT\t{quoted(f'v=STSv1; id={policy_id}')}",
        f"_smtp._tls.{d}\t3600\tIN\tTXT\t{quoted(f'v=TLSRPTv1; rua=mailto:postmaster@{domain}')}",
        f"autoconfig.{d}\t3600\tIN\tCNAME\t{h}",
        f"_submissions._tcp.{d}\t3600\tIN\tSRV\t0 1 465 {h}",
        f"_submission._tcp.{d}\t3600\tIN\tSRV\t0 1 587 {h}",
        f"_imaps._tcp.{d}\t3600\tIN\tSRV\t0 1 993 {h}",
        f"_imap._tcp.{d}\t3600\tIN\tSRV\t0 1 143 {h}",
        f"_pop3s._tcp.{d}\t3600\tIN\tSRV\t0 1 995 {h}",
        f"_autodiscover._tcp.{d}\t3600\tIN\tSRV\t0 1 443 {h}",
        f"; serve at https://mta-sts.{domain}/.well-known/mta-sts.txt (text/plain):",
        *[f";   {line}" for line in policy.strip().split("\r\n")],
    ]
    return lines
