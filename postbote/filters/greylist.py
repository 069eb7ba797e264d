"""Greylisting: the first delivery attempt of an unknown (network, sender, recipient) is deferred.

A real mail server retries after a temporary failure; much bulk spam software
does not. The check runs at the end of DATA (the pipeline's place), not at RCPT:
simpler, and it can use the DKIM result, at the cost of receiving the message
twice. Every (client network, MAIL FROM, recipient) triplet of the message must
have been seen at least ``greylist.delay`` seconds before (and within
``retry_window``); otherwise the message gets 451 4.7.1 and the triplets are
remembered. The network is the client's /24 (IPv4) or /64 (IPv6), since big
senders retry from another address of the same pool.

Never greylisted: our authenticated users, LMTP (the MTA in front did it),
senders this recipient has had ham from before (their reputation), and mail
with a passing DKIM signature of a domain on ``greylist.pass_domains``.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable

from postbote.config import GreylistSettings
from postbote.filters.pipeline import Action, FilterResult, MessageContext
from postbote.filters.spam.scoring import read_auth_results
from postbote.log import event
from postbote.store import Store

log = logging.getLogger("postbote.greylist")

EXPIRE_EVERY = 3600


def network(ip: str, v4_prefix: int = 24, v6_prefix: int = 64) -> str:
    """The client's network in CIDR form; the address itself if it is not one."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = v4_prefix if address.version == 4 else v6_prefix
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


class GreylistFilter:
    name = "greylist"

    def __init__(self, settings: GreylistSettings, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self._expired_at = 0.0

    async def check(self, ctx: MessageContext) -> FilterResult:
        if not self.settings.enabled or ctx.outgoing or ctx.service == "lmtp":
            return FilterResult()
        if self._dkim_pass_listed(ctx) or await self._known_sender(ctx):
            return FilterResult()
        now = int(self.clock())
        await self._expire(now)
        net = network(ctx.peer_ip, self.settings.ipv4_prefix, self.settings.ipv6_prefix)
        waiting = []
        for rcpt in ctx.recipients:
            triplet = f"{net}/{ctx.sender.lower()}/{rcpt.lower()}"
            first, passed = await self.store.greylist_touch(triplet, now, now - self.settings.retry_window)
            if passed:
                continue
            if first < now and now - first >= self.settings.delay:
                await self.store.greylist_pass(triplet, now)
                continue
            waiting.append(triplet)
        if not waiting:
            return FilterResult()
        event(log, "greylisted", queue_id=ctx.queue_id, network=net, sender=ctx.sender, triplets=len(waiting))
        return FilterResult(action=Action.TEMPFAIL, code=451, status="4.7.1",
                            text="greylisted, please try again later")

    def _dkim_pass_listed(self, ctx: MessageContext) -> bool:
        listed = [d.lower().rstrip(".") for d in self.settings.pass_domains]
        if not listed:
            return False
        for domain in read_auth_results(ctx.added).dkim_domains:
            if any(domain == d or domain.endswith("." + d) for d in listed):
                return True
        return False

    async def _known_sender(self, ctx: MessageContext) -> bool:
        """Every recipient account has had ham from this sender before."""
        if not ctx.sender or len(ctx.recipient_accounts) != len(ctx.recipients) or not all(ctx.recipient_accounts):
            return False
        for account_id in ctx.account_ids:
            _, ham = await self.store.spam_reputation(account_id, ctx.sender.lower())
            if ham == 0:
                return False
        return True

    async def _expire(self, now: int) -> None:
        if now - self._expired_at >= EXPIRE_EVERY:
            self._expired_at = now
            await self.store.greylist_expire(now - self.settings.expire)
