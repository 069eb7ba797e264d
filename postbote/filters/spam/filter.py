"""The built-in spam filter: classifier, mail authentication, DNS lists, reputation, heuristics.

It runs after the mail authentication filter (whose Authentication-Results it
reads back) and weighs every signal into one score per recipient account
(postbote/filters/spam/scoring.py). When several of our accounts get the
message and their models disagree, the lowest score decides: putting one
person's wanted mail into Junk is worse than another person's spam in the
inbox. Each verdict is logged with its rules, shown in X-Spam-Status and
X-Spam-Score (forged copies of those fields are dropped), and remembered as the
sender's reputation with each recipient.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, replace

from postbote.config import SpamSettings
from postbote.filters.pipeline import Action, FilterResult, MessageContext, header_fields
from postbote.log import event
from postbote.mail.message import parse_message
from postbote.store import Store

from . import dnsbl
from .classifier import classify, merge
from .heuristics import header_rules, utcnow
from .scoring import AuthResults, Signals, Verdict, read_auth_results, score, status_headers
from .tokenizer import tokenize

log = logging.getLogger("postbote.spam")

_OUR_FIELDS = (b"x-spam-status", b"x-spam-score", b"x-spam-flag")


@dataclass(frozen=True)
class Analysis:
    """What the message itself says, computed once off the event loop."""

    tokens: tuple[str, ...]
    heuristics: tuple[tuple[str, float], ...]
    auth: AuthResults
    forged: tuple[int, ...]  # indices of the sender's own X-Spam-* fields


def analyse(whole: bytes, added_length: int) -> Analysis:
    """Tokens, header rules and authentication results of a message (blocking)."""
    message = whole[added_length:]
    fields = header_fields(message)
    forged = tuple(i for i, f in enumerate(fields) if f.split(b":", 1)[0].strip().lower() in _OUR_FIELDS)
    parsed = parse_message(message)
    return Analysis(tuple(tokenize(message, parsed)), tuple(header_rules(parsed, utcnow())),
                    read_auth_results(whole[:added_length]), forged)


class SpamFilter:
    name = "spam"

    def __init__(self, settings: SpamSettings, store: Store, resolver: dnsbl.Resolver,
                 executor: Executor | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.resolver = resolver
        self.executor = executor
        self.clock = clock
        self.blocklists = dnsbl.parse_zones(settings.dnsbl_zones, settings.dnsbl_score)
        self.allowlists = dnsbl.parse_zones(settings.dnswl_zones, settings.dnswl_score)

    async def check(self, ctx: MessageContext) -> FilterResult:
        if not self.settings.enabled or (ctx.outgoing and not self.settings.check_outgoing):
            return FilterResult()
        whole = await ctx.content(self.executor)
        facts = await asyncio.get_running_loop().run_in_executor(self.executor, analyse, whole, len(ctx.added))
        accounts = ctx.account_ids
        verdict = await self._verdict(ctx, facts, accounts)
        if ctx.outgoing:  # our own users' mail is only labelled, never refused or junked here
            verdict = replace(verdict, action=Action.ACCEPT)
        ctx.notes["spam"] = verdict
        event(log, "spam verdict", logging.INFO if verdict.spam else logging.DEBUG, queue_id=ctx.queue_id,
              score=verdict.score, action=verdict.action.value,
              tests=",".join(f"{n}={p:g}" for n, p in verdict.rules) or "none")
        remember = functools.partial(self._remember, ctx, accounts, verdict)
        if verdict.action is Action.REJECT:
            await remember()  # a final refusal: the sender will not send this again
            return FilterResult(action=Action.REJECT, code=550, status="5.7.1",
                                text=f"message refused as spam (score {verdict.score:.1f})")
        prepend = status_headers(verdict, self.settings) if self.settings.add_headers else b""
        return FilterResult(prepend=prepend, action=verdict.action, remove_headers=facts.forged,
                            on_delivered=remember)

    async def _verdict(self, ctx: MessageContext, facts: Analysis, accounts: tuple[int, ...]) -> Verdict:
        listed, allowed = await self._dns_lists(ctx)
        sender = ctx.sender.lower()
        counts, reputations = await self.store.spam_evidence(accounts, facts.tokens, sender)
        trusted = _sender_proved(sender, facts.auth)
        base = Signals(auth=facts.auth, dnsbl=listed, dnswl=allowed, heuristics=facts.heuristics,
                       reputation_trusted=trusted)
        verdicts = []
        for account_id in accounts or (0,):
            model = merge(counts[0], counts.get(account_id) if account_id else None)
            bayes = None
            if counts[0].spam >= self.settings.min_trained and counts[0].ham >= self.settings.min_trained:
                bayes = classify(model, facts.tokens).probability
            reputation = reputations.get(account_id, (0, 0))
            verdicts.append(score(replace(base, bayes=bayes, reputation=reputation), self.settings))
        return min(verdicts, key=lambda v: v.score)

    async def _dns_lists(self, ctx: MessageContext) -> tuple[tuple[tuple[str, float], ...], ...]:
        if ctx.service == "lmtp" or ctx.outgoing:
            return (), ()  # the peer is the MTA in front of us, not the sender's host
        (black, failed_b), (white, failed_w) = await asyncio.gather(
            dnsbl.lookup(self.resolver, ctx.peer_ip, self.blocklists),
            dnsbl.lookup(self.resolver, ctx.peer_ip, self.allowlists))
        if failed_b or failed_w:
            event(log, "DNS list did not answer", logging.WARNING, queue_id=ctx.queue_id,
                  zones=",".join(failed_b + failed_w))
        return (tuple((x.zone.name, x.zone.points) for x in black),
                tuple((x.zone.name, x.zone.points) for x in white))

    async def _remember(self, ctx: MessageContext, accounts: tuple[int, ...], verdict: Verdict) -> None:
        if not ctx.sender or not accounts or ctx.outgoing:
            return
        await self.store.spam_record_verdict(accounts, ctx.sender.lower(), verdict.spam, int(self.clock()))


def _sender_proved(sender: str, auth: AuthResults) -> bool:
    """SPF passed for the MAIL FROM domain, or its domain signed the message."""
    domain = sender.rpartition("@")[2]
    if not domain:
        return False
    if auth.spf == "pass" and auth.spf_domain in ("", domain):
        return True
    return any(d == domain or domain.endswith("." + d) for d in auth.dkim_domains)
