"""MTA-STS (RFC 8461): a domain's promise that its MX hosts speak verified TLS.

The policy is announced by a TXT record at ``_mta-sts.DOMAIN`` and served over
HTTPS at ``https://mta-sts.DOMAIN/.well-known/mta-sts.txt``. It is cached for
its ``max_age`` and refetched when the TXT id changes. In ``enforce`` mode only
MX hosts matching the policy's patterns may be used, and only over TLS with a
certificate valid for the MX name; otherwise mail waits (RFC 8461 §5).
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from postbote.dns import DnsError, Resolver
from postbote.store import Store

MAX_POLICY = 64 * 1024  # RFC 8461 §3.3: policies are small; refuse anything big
FETCH_TIMEOUT = 60.0  # RFC 8461 §3.3: "reasonable" timeouts, a minute at most
MAX_AGE_LIMIT = 31557600  # RFC 8461 §3.2: one year


@dataclass(frozen=True)
class Policy:
    mode: str  # "enforce", "testing", "none"
    mx: tuple[str, ...]
    max_age: int
    id: str = ""

    def matches(self, host: str) -> bool:
        """RFC 8461 §4.1: exact names, or "*.example.com" for exactly one more label."""
        host = host.lower().rstrip(".")
        for pattern in self.mx:
            pattern = pattern.lower().rstrip(".")
            if pattern.startswith("*."):
                head, _, rest = host.partition(".")
                if head and rest == pattern[2:]:
                    return True
            elif host == pattern:
                return True
        return False

    @property
    def enforced(self) -> bool:
        return self.mode == "enforce"


class PolicyError(Exception):
    """The policy could not be fetched or parsed."""


def parse_policy(text: str, policy_id: str = "") -> Policy:
    """RFC 8461 §3.2: "key: value" lines; version, mode and max_age are required."""
    fields: dict[str, list[str]] = {}
    for line in re.split(r"\r?\n", text):
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), []).append(value.strip())
    if fields.get("version") != ["STSv1"]:
        raise PolicyError("policy version is not STSv1")
    mode = (fields.get("mode") or [""])[0]
    if mode not in ("enforce", "testing", "none"):
        raise PolicyError(f"bad policy mode {mode!r}")
    age = (fields.get("max_age") or [""])[0]
    if not age.isdigit():
        raise PolicyError("policy has no valid max_age")
    mx = tuple(fields.get("mx", []))
    if mode != "none" and not mx:
        raise PolicyError("policy lists no mx")
    return Policy(mode, mx, min(int(age), MAX_AGE_LIMIT), policy_id)


def txt_id(records: list[str]) -> str | None:
    """The id of the single "v=STSv1" TXT record, or None (RFC 8461 §3.1)."""
    found = [r for r in records if r.replace(" ", "").startswith("v=STSv1;") or r.strip() == "v=STSv1"]
    if len(found) != 1:
        return None
    for part in found[0].split(";"):
        key, _, value = part.strip().partition("=")
        if key == "id" and re.fullmatch(r"[A-Za-z0-9]{1,32}", value):
            return value
    return None


class MtaSts:
    """Looks policies up, fetches and caches them for their max_age.

    The cache lives in the store, so a policy outlives a restart (an attacker who
    hides the TXT record after one must not turn enforcement off), with a copy in
    memory so most deliveries need no store read. A domain the store knows no policy
    for is remembered as such for ``NEGATIVE_TTL``: should another worker fetch one
    meanwhile, this one learns of it from the TXT record and fetches it too.
    """

    NEGATIVE_TTL = 3600.0

    def __init__(self, resolver: Resolver, ssl_context: ssl.SSLContext, port: int = 443,
                 store: Store | None = None, clock: Callable[[], float] = time.time) -> None:
        self.resolver = resolver
        self.ssl_context = ssl_context
        self.port = port
        self.store = store
        self.clock = clock
        self._cache: dict[str, tuple[Policy | None, float]] = {}

    async def policy(self, domain: str) -> Policy | None:
        """The policy to apply, or None. A fetch failure with nothing cached means no policy
        (RFC 8461 §5.1); a cached one stays in force until it expires."""
        now = self.clock()
        cached = await self._cached(domain, now)
        try:
            policy_id = txt_id(await self.resolver.txt(f"_mta-sts.{domain}"))
        except DnsError:
            policy_id = None
        if policy_id is None or (cached and cached.id == policy_id):
            return cached
        try:
            text = await self.fetch(domain)
            policy = parse_policy(text, policy_id)
        except (PolicyError, OSError, asyncio.TimeoutError, DnsError, ValueError):
            return cached
        expires = now + policy.max_age
        self._cache[domain] = (policy, expires)
        if self.store is not None:
            await self.store.mta_sts_cache(domain, policy_id, text, int(expires))
        return policy

    async def _cached(self, domain: str, now: float) -> Policy | None:
        hit = self._cache.get(domain)
        if hit and hit[1] > now:
            return hit[0]
        self._cache.pop(domain, None)
        if self.store is None:
            return None
        row = await self.store.mta_sts_cached(domain, int(now))
        policy: Policy | None = None
        expires = now + self.NEGATIVE_TTL
        if row is not None:
            try:
                policy, expires = parse_policy(row[1], row[0]), float(row[2])
            except PolicyError:
                pass
        self._cache[domain] = (policy, expires)
        return policy

    async def fetch(self, domain: str) -> str:
        host = f"mta-sts.{domain}"
        addresses = await self.resolver.addresses(host)
        if not addresses:
            raise PolicyError(f"{host} has no address")
        return await asyncio.wait_for(self._get(addresses[0], host), FETCH_TIMEOUT)

    async def _get(self, address: str, host: str) -> str:
        # RFC 8461 §3.3: HTTPS with a valid certificate for mta-sts.DOMAIN, no redirects.
        reader, writer = await asyncio.open_connection(address, self.port, ssl=self.ssl_context,
                                                       server_hostname=host)
        try:
            writer.write(f"GET /.well-known/mta-sts.txt HTTP/1.0\r\nHost: {host}\r\n"
                         "User-Agent: postbote\r\nConnection: close\r\n\r\n".encode())
            data = await reader.read(MAX_POLICY + 4096)
            while len(data) <= MAX_POLICY + 4096 and (more := await reader.read(65536)):
                data += more
        finally:
            writer.close()
        return parse_http(data)


def parse_http(data: bytes) -> str:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise PolicyError("incomplete HTTP response")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split()
    if len(status) < 2 or status[1] != "200":
        raise PolicyError(f"policy fetch answered {lines[0]!r}")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if not headers.get("content-type", "").lower().startswith("text/plain"):
        raise PolicyError("policy is not text/plain")
    if len(body) > MAX_POLICY:
        raise PolicyError("policy too large")
    return body.decode("utf-8")
