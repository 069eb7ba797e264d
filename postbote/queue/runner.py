"""The queue runner: finds due entries, leases them, and delivers them per destination.

Every ``poll_interval`` the runner asks the store for due entries and groups
them by destination domain; each group gets up to
``connections_per_destination`` workers, each worker one SMTP connection
carrying up to ``messages_per_connection`` messages. An entry is leased before
it is touched, and the lease is renewed while the worker holds it, so another
process (or node) never sends it as well; after a crash the lease simply
runs out. Every attempt is recorded per recipient: sent, failed (bounced,
once, with a DSN) or deferred to the next time of the retry schedule.
Recipients in our own domains are delivered through the delivery service,
never over the network.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import TYPE_CHECKING

from postbote.delivery.recipients import NotLocal, Resolved, resolve
from postbote.dns import DnsError
from postbote.delivery.service import Accepted, Envelope, PermFailure, Recipient, RecipientOutcome, new_queue_id
from postbote import metrics
from postbote.log import event
from postbote.queue import dane, schedule
from postbote.queue.dsn import RecipientReport, build_dsn, status_of, strip_return_path, wants
from postbote.queue.mtasts import MtaSts, Policy
from postbote.queue.routing import NoRoute, Route, route
from postbote.queue.sender import HostFailure, SendResult, Session, Timeouts, TlsPolicy, client_context
from postbote.store import QueuedEntry, RecipientResult, StoreError

if TYPE_CHECKING:
    from postbote.app import App

log = logging.getLogger("postbote.queue")

BATCH = 1000


class QueueRunner:
    def __init__(self, app: "App") -> None:
        self.app = app
        self.settings = app.settings.outbound
        self.store = app.store
        self.mta_sts = MtaSts(app.resolver, client_context(True, self.settings.tls_ca_file),
                              self.settings.mta_sts_port, store=app.store)
        self.in_flight: set[int] = set()
        self.workers: dict[str, set[asyncio.Task]] = defaultdict(set)
        self.connections = asyncio.Semaphore(self.settings.max_connections)
        self.wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self.stopping = False
        self._tasks: list[asyncio.Task] = []
        o = self.settings
        self.timeouts = Timeouts(o.connect_timeout, o.command_timeout, o.data_timeout)

    # -- life -----------------------------------------------------------------------
    def start(self) -> None:
        if not self.settings.enabled:
            event(log, "outbound delivery is off (outbound.enabled): remote mail stays queued")
            return
        self._tasks = [asyncio.ensure_future(self._loop()), asyncio.ensure_future(self._renew_leases())]

    async def stop(self, grace: float) -> None:
        """Take no new work; let transactions in flight finish for up to ``grace`` seconds.

        The scan and lease tasks are not cancelled but told to end: cancelling one
        in the middle of a store call would leave its thread using the database
        while the store closes.
        """
        self.stopping = True
        self.wake.set()
        self._stopped.set()
        workers = [t for ts in self.workers.values() for t in ts]
        if workers:
            _, late = await asyncio.wait(workers, timeout=grace)
            for t in late:
                t.cancel()
            if late:
                await asyncio.wait(late, timeout=5)
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def poke(self) -> None:
        """Look for due entries now (after a retry command, or new mail)."""
        self.wake.set()

    async def _loop(self) -> None:
        while not self.stopping:
            try:
                await self.run_once()
            except StoreError as exc:
                event(log, "queue scan failed", logging.WARNING, error=str(exc))
            try:
                await asyncio.wait_for(self.wake.wait(), self.settings.poll_interval)
            except asyncio.TimeoutError:
                pass
            self.wake.clear()

    async def _renew_leases(self) -> None:
        every = max(self.settings.lease_seconds / 3, 0.2)
        while not self.stopping:
            try:
                await asyncio.wait_for(self._stopped.wait(), every)
            except asyncio.TimeoutError:
                pass
            if self.in_flight and not self.stopping:
                try:
                    await self.store.renew_outbound_leases(sorted(self.in_flight),
                                                           int(time.time()) + self.settings.lease_seconds)
                except StoreError as exc:
                    event(log, "lease renewal failed", logging.WARNING, error=str(exc))

    async def run_once(self) -> None:
        now = int(time.time())
        due = await self.store.due_outbound(now, BATCH, sorted(self.in_flight))
        if self.stopping:
            return
        by_domain: dict[str, list[QueuedEntry]] = defaultdict(list)
        for entry in due:
            by_domain[entry.domain].append(entry)
        per = self.settings.messages_per_connection
        for domain, entries in by_domain.items():
            while entries and len(self.workers[domain]) < self.settings.connections_per_destination:
                batch, entries = entries[:per], entries[per:]
                self.in_flight.update(e.id for e in batch)
                task = asyncio.ensure_future(self._work(domain, batch))
                self.workers[domain].add(task)
                task.add_done_callback(lambda t, d=domain, b=batch: self._done(t, d, b))

    def _done(self, task: asyncio.Task, domain: str, batch: list[QueuedEntry]) -> None:
        self.workers[domain].discard(task)
        if not self.workers[domain]:
            del self.workers[domain]
        self.in_flight.difference_update(e.id for e in batch)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            event(log, "queue worker failed", logging.ERROR, domain=domain, error=repr(exc))
        if not self.stopping:
            self.wake.set()  # more may be waiting for this destination

    # -- one destination --------------------------------------------------------------
    async def _work(self, domain: str, batch: list[QueuedEntry]) -> None:
        now = int(time.time())
        leased = set(await self.store.lease_outbound([e.id for e in batch], now + self.settings.lease_seconds, now))
        entries = [e for e in batch if e.id in leased]
        if not entries:
            return
        async with self.connections:
            if await self.store.get_domain(domain) is not None:
                for entry in entries:
                    await self._deliver_locally(entry)
                return
            await self._deliver_remote(domain, entries)

    async def _deliver_remote(self, domain: str, entries: list[QueuedEntry]) -> None:
        o = self.settings
        smarthost = bool(o.smarthost)
        found = Route((o.smarthost,)) if smarthost else await route(self.app.resolver, domain)
        if isinstance(found, NoRoute):
            for entry in entries:
                await self._finish(entry, _all(entry, "failed" if found.permanent else "pending",
                                               f"{550 if found.permanent else 451} {found.status} {found.reason}"))
            return
        policy: Policy | None = None
        hosts = list(found.hosts)
        if not smarthost and o.mta_sts:
            policy = await self.mta_sts.policy(domain)
            if policy is not None and policy.enforced:
                hosts = [h for h in hosts if found.mx and policy.matches(h)]
        remaining = list(entries)
        last = f"451 4.4.1 No MX host of {domain} could be used"
        if policy is not None and policy.enforced and not hosts:
            last = f"451 4.7.5 No MX host of {domain} matches its MTA-STS policy"
        for host in hosts:
            if not remaining or self.stopping:
                break
            try:
                remaining, last = await self._via_host(host, domain, policy, remaining, last, found.secure)
            except HostFailure as exc:
                last = f"451 4.4.1 {exc.reason}"
        if self.stopping and remaining:
            # Stopping is not a failed attempt: hand the entries back, due as before.
            await self.store.renew_outbound_leases([e.id for e in remaining], 0)
            return
        for entry in remaining:
            await self._finish(entry, _all(entry, "pending", last))

    async def _via_host(self, host: str, domain: str, policy: Policy | None, entries: list[QueuedEntry],
                        last: str, secure_mx: bool = False) -> tuple[list[QueuedEntry], str]:
        o = self.settings
        smarthost = bool(o.smarthost)
        port = o.smarthost_port if smarthost else o.port
        try:
            addresses = [host] if _is_ip(host) else await self.app.resolver.addresses(host)
        except DnsError as exc:
            raise HostFailure(f"address lookup for {host} failed: {exc}") from None
        if not addresses:
            raise HostFailure(f"{host} has no address records")
        tls = await self._tls_policy(host, port, policy, secure_mx)
        auth = (o.smarthost_user, o.smarthost_password) if smarthost and o.smarthost_user else None
        remaining = list(entries)
        for address in addresses:
            if not remaining or self.stopping:
                break
            try:
                session = await Session.open(host, address, port, self.app.settings.hostname, tls,
                                             self.timeouts, o.tls_ca_file, auth)
            except HostFailure as exc:
                last = f"451 4.4.1 {exc.reason}"
                event(log, "connect failed", domain=domain, host=host, address=address, error=exc.reason)
                if exc.tls_failed and tls.mode == "opportunistic":
                    session = await self._plain_fallback(host, address, port, auth)
                    if session is None:
                        continue
                else:
                    continue
            try:
                while remaining and not self.stopping:
                    entry = remaining[0]
                    result = await self._send(session, entry)
                    remaining.pop(0)
                    last = result.reply
            except HostFailure as exc:
                last = f"451 4.4.2 {exc.reason}"
                session.abort()
                continue
            await session.quit()
        return remaining, last

    async def _plain_fallback(self, host: str, address: str, port: int,
                              auth: tuple[str, str] | None) -> Session | None:
        """RFC 7435 §1: opportunistic TLS that fails to start is retried in the clear."""
        try:
            return await Session.open(host, address, port, self.app.settings.hostname, TlsPolicy("none"),
                                      self.timeouts, self.settings.tls_ca_file, auth)
        except HostFailure:
            return None

    async def _tls_policy(self, host: str, port: int, policy: Policy | None, secure_mx: bool) -> TlsPolicy:
        o = self.settings
        if o.smarthost:
            return TlsPolicy({"starttls": "verify", "implicit": "implicit", "none": "none"}[o.smarthost_tls], host)
        # RFC 7672 §2.2.1: TLSA records count only for an MX host found through a validated MX answer.
        if o.dane and secure_mx:
            found = await dane.lookup(self.app.resolver, host, port)
            if found.temporary_failure:
                raise HostFailure(f"TLSA lookup for {host} failed: {found.temporary_failure}")
            if found.required:
                # RFC 8461 §2: DANE, when present, takes precedence over MTA-STS.
                return TlsPolicy("dane" if found.records else "encrypt", host, found.records)
        if policy is not None and policy.enforced:
            return TlsPolicy("verify", host)
        return TlsPolicy("opportunistic", host)

    async def _send(self, session: Session, entry: QueuedEntry) -> SendResult:
        raw = strip_return_path(await self.store.read_blob(entry.blob_id))
        started = time.monotonic()
        result = await session.send(entry, raw)
        event(log, "delivery attempt", queue_id=entry.queue_id, domain=entry.domain, host=session.host,
              tls=session.tls, rcpts=len(result.results),
              sent=sum(r.status == "sent" for r in result.results),
              failed=sum(r.status == "failed" for r in result.results), reply=result.reply,
              ms=round((time.monotonic() - started) * 1000, 1))
        relayed = not session.core.extensions.has("DSN")
        await self._finish(entry, result.results, session.host, relayed)
        return result

    # -- local recipients ----------------------------------------------------------------
    async def _deliver_locally(self, entry: QueuedEntry) -> None:
        recipients = []
        results = []
        for r in entry.pending:
            found = await resolve(self.store, r.address)
            if isinstance(found, Resolved):
                recipients.append(Recipient(r.address, tuple(a.id for a in found.accounts), found.remote,
                                            r.notify, r.orcpt))
            elif isinstance(found, NotLocal):
                recipients.append(Recipient(r.address, remote=(r.address,), notify=r.notify, orcpt=r.orcpt))
            else:
                results.append(RecipientResult(r.address, "failed", "550 5.1.1 No such user here"))
        if recipients:
            raw = await self.store.read_blob(entry.blob_id)
            envelope = Envelope(entry.sender, tuple(recipients), entry.queue_id, entry.envid, entry.ret,
                                entry.smtputf8, entry.body)
            outcomes = await self.app.delivery.deliver(envelope, raw, enforce_quota=False)
            results += [_local_result(o) for o in outcomes]
        await self._finish(entry, results, self.app.settings.hostname)

    # -- recording and notifying ------------------------------------------------------------
    async def _finish(self, entry: QueuedEntry, results: tuple[RecipientResult, ...] | list[RecipientResult],
                      remote_mta: str = "", relayed: bool = False) -> None:
        now = int(time.time())
        o = self.settings
        results = list(results)
        by_address = {r.address: r for r in entry.pending}
        gave_up: set[str] = set()
        if schedule.expired(o, entry.created, now):
            gave_up = {r.address for r in results if r.status == "pending"}
            results = [RecipientResult(r.address, "failed", f"{r.reply} (gave up after {_age(o.give_up_after)})")
                       if r.address in gave_up else r for r in results]
        failed = [r for r in results if r.status == "failed"]
        deferred = [r for r in results if r.status == "pending"]
        notices = []
        if failed:
            notices.append(("failed", failed, None))
        delay = bool(deferred) and schedule.delay_notice_due(o, entry.created, now, entry.delay_notified)
        if delay:
            notices.append(("delayed", deferred, entry.created + o.give_up_after))
        sent = [r for r in results if r.status == "sent"]
        if relayed and sent:
            notices.append(("relayed", sent, None))
        for action, rs, until in notices:
            # RFC 3463 X.4.7: delivery time expired, a persistent transient failure.
            reports = [RecipientReport(by_address[r.address], action,
                                       "2.0.0" if action == "relayed" else "4.4.7" if r.address in gave_up
                                       else status_of(r.reply, action == "failed"), r.reply, remote_mta)
                       for r in rs if r.address in by_address and wants(by_address[r.address], action)]
            if reports:
                await self._notify(entry, reports, until)
        last = (deferred or failed or sent or [RecipientResult("", "", "")])[0].reply
        retry_at = schedule.next_attempt(o, entry.attempts + 1, now)
        await self.store.record_outbound_attempt(entry.id, results, retry_at, last, delay_notified=delay)
        event(log, "queue entry", queue_id=entry.queue_id, domain=entry.domain, attempt=entry.attempts + 1,
              sent=len(sent), failed=len(failed), deferred=len(deferred),
              next=retry_at if deferred else None, reply=last)
        for result, rs in (("sent", sent), ("failed", failed), ("deferred", deferred)):
            if rs:
                metrics.MESSAGES_SENT.labels(result).inc(len(rs))
        self.in_flight.discard(entry.id)

    async def _notify(self, entry: QueuedEntry, reports: list[RecipientReport], until: float | None) -> None:
        """Send a DSN to the original sender, from the null sender; never for a null-sender message."""
        if not entry.sender:
            event(log, "no dsn for null sender", queue_id=entry.queue_id)
            return
        original = strip_return_path(await self.store.read_blob(entry.blob_id))
        hostname = self.app.settings.hostname
        dsn = build_dsn(entry, reports, original, hostname, time.time(), until)
        queue_id = new_queue_id()
        found = await resolve(self.store, entry.sender)
        if isinstance(found, Resolved):
            rcpt = Recipient(entry.sender, tuple(a.id for a in found.accounts), found.remote)
        elif isinstance(found, NotLocal):
            rcpt = Recipient(entry.sender, remote=(entry.sender,))
        else:
            event(log, "dsn dropped: unknown sender", queue_id=entry.queue_id, sender=entry.sender)
            return
        raw = b"Return-Path: <>\r\n" + dsn
        outcomes = await self.app.delivery.deliver(Envelope("", (rcpt,), queue_id), raw, enforce_quota=False)
        event(log, "dsn", queue_id=entry.queue_id, dsn_queue_id=queue_id, action=reports[0].action,
              to=entry.sender, rcpts=len(reports), ok=all(isinstance(o, Accepted) for o in outcomes))


def _local_result(outcome: RecipientOutcome) -> RecipientResult:
    """The delivery service's outcome in the queue's terms, with an SMTP-like reply for the DSN."""
    if isinstance(outcome, Accepted):
        return RecipientResult(outcome.address, "sent", "250 2.0.0 delivered locally")
    if isinstance(outcome, PermFailure):
        return RecipientResult(outcome.address, "failed", f"550 5.2.0 {outcome.reason}")
    return RecipientResult(outcome.address, "pending", f"451 4.2.0 {outcome.reason}")


def _all(entry: QueuedEntry, status: str, reply: str) -> list[RecipientResult]:
    return [RecipientResult(r.address, status, reply) for r in entry.pending]


def _age(seconds: int) -> str:
    return f"{seconds // 86400} days" if seconds >= 86400 else f"{seconds // 3600} h" if seconds >= 3600 \
        else f"{seconds} s"


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
