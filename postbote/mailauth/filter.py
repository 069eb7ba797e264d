"""The mail authentication filter: SPF, DKIM, DMARC and ARC for every inbound message.

It runs first in the pipeline, on mail not from our own authenticated users,
once the whole message has arrived (so the MAIL FROM check needs no second
place). It adds Received-SPF and Authentication-Results, drops forged
Authentication-Results claiming our authserv-id, seals with ARC what an
alias forwards outside, records each DMARC evaluation for aggregate reports,
and maps the sender domain's DMARC policy to an action:

| DMARC                         | action                               |
|-------------------------------|--------------------------------------|
| fail, disposition reject      | REJECT 550 5.7.1 at end of DATA      |
| fail, disposition quarantine  | JUNK (delivered into Junk)           |
| temperror, policy not "none"  | TEMPFAIL 451: never accept what might be forged |
| anything else                 | ACCEPT                               |

unless local configuration says otherwise (``[mailauth]`` in docs/config.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import random
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

from postbote.config import MailAuthSettings
from postbote.filters.pipeline import Action, FilterResult, MessageContext, header_fields
from postbote.log import event
from postbote.mail.headers import parse_address_list
from postbote.store import Store, StoreError
from postbote.store.types import DmarcEvaluation

from . import arc as arc_mod
from .dkim_verify import DkimResult, verify_dkim
from .dmarc import DmarcOutcome, DmarcRecord, evaluate
from .keys import SigningKey, load_keys
from .lookup import Lookup
from .results import ArcOutcome, authentication_results, forged_fields
from .spf import SpfOutcome, SpfResult, check_helo, check_mailfrom, received_spf

log = logging.getLogger("postbote.mailauth")

_SEVERITY = {"none": 0, "quarantine": 1, "reject": 2}


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the checks found, before it becomes headers and an action."""

    spf: SpfOutcome
    helo_spf: SpfOutcome | None
    dkim: list[DkimResult]
    arc: ArcOutcome
    dmarc: list[DmarcOutcome]


class MailAuthFilter:
    name = "mailauth"

    def __init__(self, hostname: str, settings: MailAuthSettings, resolver: Lookup, *,
                 store: Store | None = None, executor: Executor | None = None, data_dir: Path | None = None,
                 sample: Callable[[], float] = random.random, clock: Callable[[], float] = time.time) -> None:
        self.hostname = hostname
        self.settings = settings
        self.resolver = resolver
        self.store = store
        self.executor = executor
        self.data_dir = data_dir
        self.sample = sample
        self.clock = clock

    async def check(self, ctx: MessageContext) -> FilterResult:
        # LMTP comes from the MTA in front of us, which did these checks against the real client.
        if ctx.outgoing or ctx.service == "lmtp" or not self.settings.enabled:
            return FilterResult()
        whole = await ctx.content(self.executor)
        message = whole[len(ctx.added):]  # what the sender sent: DKIM and ARC sign that
        fields = header_fields(message)
        verdict = await self.authenticate(ctx, message, fields)
        action, reply = self._decide(ctx, verdict)
        results = authentication_results(self.hostname, spf=verdict.spf, helo_spf=verdict.helo_spf,
                                         dkim=verdict.dkim, dmarc=verdict.dmarc[0] if verdict.dmarc else None,
                                         arc=verdict.arc, remote_ip=ctx.peer_ip)
        results += b"".join(_extra_dmarc(d, self.hostname) for d in verdict.dmarc[1:])
        prepend = results + received_spf(verdict.spf, ctx.peer_ip, ctx.helo, self.hostname).encode("utf-8", "replace")
        remove = forged_fields(fields, self.hostname)
        await self._record(ctx, verdict, action)
        # Refusals are worth a line of their own; passes are in the message's Authentication-Results.
        level = logging.DEBUG if action is Action.ACCEPT else logging.INFO
        event(log, "mail authentication", level, queue_id=ctx.queue_id, spf=verdict.spf.result.value,
              dkim=",".join(f"{r.result}:{r.domain}" for r in verdict.dkim) or "none",
              dmarc=",".join(f"{d.result}:{d.from_domain}:{d.disposition}" for d in verdict.dmarc) or "none",
              arc=verdict.arc.result, action=action.value)
        if action in (Action.REJECT, Action.TEMPFAIL):
            code, status, text = reply
            return FilterResult(action=action, code=code, status=status, text=text)
        if ctx.forwarded:
            prepend = await self._seal(ctx, prepend, message, remove) + prepend
        return FilterResult(prepend=prepend, action=action, remove_headers=remove)

    async def authenticate(self, ctx: MessageContext, message: bytes, fields: list[bytes]) -> Verdict:
        """Run SPF (MAIL FROM and HELO), DKIM and ARC at once, then DMARC on their results."""
        spf_task = check_mailfrom(self.resolver, ctx.peer_ip, ctx.sender, ctx.helo, receiver=self.hostname)
        helo_task = self._helo_spf(ctx)
        dkim_task = verify_dkim(message, self.resolver, self.executor)
        arc_task = arc_mod.verify_arc(message, self.resolver, self.executor)
        spf, helo_spf, dkim_results, arc = await asyncio.gather(spf_task, helo_task, dkim_task, arc_task)
        dmarc = []
        for domain in from_domains(fields):
            fallback = DmarcRecord("reject", "reject") if _listed(domain, self.settings.always_reject) else None
            dmarc.append(await evaluate(self.resolver, domain, spf, dkim_results, self.sample, fallback=fallback))
        return Verdict(spf, helo_spf, dkim_results, arc, dmarc)

    async def _helo_spf(self, ctx: MessageContext) -> SpfOutcome | None:
        if not ctx.sender or not ctx.helo or ctx.helo.startswith("["):
            return None  # a null sender's MAIL FROM check already is the HELO check (RFC 7208 §2.4)
        return await check_helo(self.resolver, ctx.peer_ip, ctx.helo, receiver=self.hostname)

    # -- policy ----------------------------------------------------------------------
    def _decide(self, ctx: MessageContext, verdict: Verdict) -> tuple[Action, tuple[int, str, str]]:
        if not self._enforcing(ctx):
            return Action.ACCEPT, (0, "", "")
        worst: DmarcOutcome | None = None
        for outcome in verdict.dmarc:
            if self._local_override(ctx, outcome, verdict.arc):
                continue
            if outcome.result == "temperror" and (outcome.record is None or outcome.policy != "none"):
                status = "4.7.24" if verdict.spf.result is SpfResult.TEMPERROR else "4.7.5"
                return Action.TEMPFAIL, (451, status, f"temporary DNS failure checking {outcome.from_domain}, "
                                                      "try again later")
            if worst is None or _SEVERITY[outcome.disposition] > _SEVERITY[worst.disposition]:
                worst = outcome
        if worst is not None and worst.result == "fail" and worst.disposition == "reject":
            return Action.REJECT, (550, "5.7.1", f"message rejected by the DMARC policy of {worst.policy_domain}")
        if worst is not None and worst.result == "fail" and worst.disposition == "quarantine":
            return Action.JUNK, (0, "", "")
        return Action.ACCEPT, (0, "", "")

    def _enforcing(self, ctx: MessageContext) -> bool:
        if not self.settings.enforce:
            return False
        domains = {r.rpartition("@")[2].lower() for r in ctx.recipients}
        report_only = {d.lower() for d in self.settings.report_only_domains}
        return not domains or not domains <= report_only

    def _local_override(self, ctx: MessageContext, outcome: DmarcOutcome, arc: ArcOutcome) -> str:
        """Why local configuration sets a failing policy aside (RFC 7489 appendix C
        PolicyOverrideType), or "" when the policy stands."""
        if outcome.result not in ("fail", "temperror"):
            return ""
        if _listed(outcome.from_domain, self.settings.never_refuse):
            return "local_policy"
        if _trusted_ip(ctx.peer_ip, self.settings.trusted_forwarders):
            return "trusted_forwarder"
        if arc.result == "pass" and _listed(arc.sealer, self.settings.trusted_forwarders):
            return "forwarded"
        return ""

    # -- records and ARC -------------------------------------------------------------
    async def _record(self, ctx: MessageContext, verdict: Verdict, action: Action) -> None:
        if self.store is None or not self.settings.record_results or action is Action.TEMPFAIL:
            return  # a temporary refusal comes back later and is recorded then
        for d in verdict.dmarc:
            if d.record is None:
                continue
            done = {Action.REJECT: "reject", Action.JUNK: "quarantine"}.get(action, "none")
            override = self._local_override(ctx, d, verdict.arc) or ("sampled_out" if d.sampled_out else "")
            evaluation = DmarcEvaluation(
                int(self.clock()), ctx.peer_ip, d.from_domain, ctx.sender.rpartition("@")[2].lower(),
                d.policy_domain, d.policy, done if d.result == "fail" else "none", d.result, d.dkim_aligned,
                d.spf_aligned, verdict.spf.domain, verdict.spf.result.value,
                tuple((r.domain, r.selector, r.result) for r in verdict.dkim), override, d.record.rua)
            try:
                await self.store.add_dmarc_evaluation(evaluation)
            except (StoreError, sqlite3.Error, OSError):  # a report row must never cost a message
                log.exception("could not record a DMARC evaluation", extra={"fields": {"queue_id": ctx.queue_id}})

    async def _seal(self, ctx: MessageContext, prepend: bytes, message: bytes, remove: tuple[int, ...]) -> bytes:
        """An ARC set over the message as the outside recipients get it (RFC 8617 §5.1)."""
        key = await asyncio.get_running_loop().run_in_executor(self.executor, self._sealing_key, ctx)
        if key is None:
            return b""
        fields = header_fields(message)
        kept = b"".join(f for i, f in enumerate(fields) if i not in remove)
        body = message[sum(len(f) for f in fields):]
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self.executor, arc_mod.seal, prepend + kept + body, key, self.hostname)
        except arc_mod.SealError:  # odd mail: forwarding it unsealed beats losing it
            log.exception("ARC sealing failed", extra={"fields": {"queue_id": ctx.queue_id}})
            return b""

    def _sealing_key(self, ctx: MessageContext) -> SigningKey | None:
        """The RSA key of the domain whose alias forwards (the first recipient domain that has one)."""
        if self.data_dir is None:
            return None
        domains = [r.rpartition("@")[2].lower() for r in ctx.recipients] + [self.hostname]
        for domain in dict.fromkeys(domains):
            for key in load_keys(self.data_dir, domain):
                if key.algorithm == "rsa-sha256":
                    return key
        return None


def from_domains(fields: list[bytes]) -> list[str]:
    """The distinct domains of the From field(s) (RFC 7489 §6.6.1: each is checked)."""
    domains: list[str] = []
    for raw in fields:
        name, colon, value = raw.partition(b":")
        if not colon or name.strip().lower() != b"from":
            continue
        for address in parse_address_list(value.decode("utf-8", "replace")):
            host = (address.host or "").strip().lower().rstrip(".")
            if host and host not in domains and "." in host:
                domains.append(host)
    return domains


def _listed(domain: str, names: tuple[str, ...]) -> bool:
    """A domain matches a listed name or is a subdomain of one."""
    domain = domain.lower().rstrip(".")
    if not domain:
        return False
    for name in names:
        name = name.lower().rstrip(".")
        if domain == name or domain.endswith("." + name):
            return True
    return False


def _trusted_ip(ip: str, names: tuple[str, ...]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for name in names:
        try:
            if address in ipaddress.ip_network(name, strict=False):
                return True
        except ValueError:
            continue
    return False


def _extra_dmarc(outcome: DmarcOutcome, hostname: str) -> bytes:
    """A further From domain's DMARC result, in an Authentication-Results of its own."""
    return authentication_results(hostname, spf=None, helo_spf=None, dkim=[], dmarc=outcome, arc=None).replace(
        b";\r\n\tdkim=none", b"")
