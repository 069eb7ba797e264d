"""The delivery service: commit one accepted message for all its recipients.

Every way mail comes in (SMTP, LMTP, submission, the queue's local
recipients, imports) ends here, so quota, copies and the outbound queue are
decided once. The result is one outcome per envelope recipient, in the
service's own terms; each protocol maps them to its reply codes.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from postbote.log import event
from postbote import metrics
from postbote.store import (
    Delivered,
    DeliveryTarget,
    OutboundMessage,
    OutboundRecipient,
    Store,
    StoreError,
)

log = logging.getLogger("postbote.delivery")


def new_queue_id() -> str:
    """Sortable by time, unique by chance: 8 hex digits of seconds, 8 random."""
    return f"{int(time.time()):08X}{secrets.token_hex(4).upper()}"


@dataclass(frozen=True)
class Recipient:
    """One envelope recipient and what it resolved to at RCPT time."""

    address: str
    accounts: tuple[int, ...] = ()  # local accounts that get a copy
    remote: tuple[str, ...] = ()  # outside addresses: relayed or alias-forwarded
    notify: str | None = None
    orcpt: str | None = None


@dataclass(frozen=True)
class Envelope:
    sender: str  # "" for the null reverse-path
    recipients: tuple[Recipient, ...]
    queue_id: str
    envid: str | None = None
    ret: str | None = None
    smtputf8: bool = False
    body: str | None = None


@dataclass(frozen=True)
class Accepted:
    address: str


@dataclass(frozen=True)
class TempFailure:
    address: str
    reason: str
    quota: bool = False


@dataclass(frozen=True)
class PermFailure:
    address: str
    reason: str


RecipientOutcome = Accepted | TempFailure | PermFailure


class DeliveryService:
    def __init__(self, store: Store) -> None:
        self.store = store
        # Called after remote recipients were queued (the queue runner's poke),
        # so new outbound mail leaves at once instead of at the next poll.
        self.on_queued: Callable[[], None] | None = None

    async def deliver(self, envelope: Envelope, source: bytes | Path, enforce_quota: bool = True,
                      mailbox: str = "INBOX") -> list[RecipientOutcome]:
        """Durably store the message for every recipient, then say how each fared.

        SMTP checks quotas at RCPT and passes ``enforce_quota=False``: a message
        accepted there is not refused after its data arrived, it may take the
        mailbox past its quota, and the next one is refused at RCPT.
        """
        account_ids = list(dict.fromkeys(a for r in envelope.recipients for a in r.accounts))
        outbound = self._outbound(envelope)
        started = time.monotonic()
        try:
            targets = [DeliveryTarget(a, mailbox, enforce_quota=enforce_quota) for a in account_ids]
            outcomes = await self.store.deliver(source, targets, outbound)
        except StoreError as exc:
            event(log, "delivery failed", logging.WARNING, queue_id=envelope.queue_id, error=str(exc))
            return [TempFailure(r.address, str(exc)) for r in envelope.recipients]
        by_account = dict(zip(account_ids, outcomes))
        results = [self._outcome(r, by_account) for r in envelope.recipients]
        event(log, "delivered", queue_id=envelope.queue_id, sender=envelope.sender,
              local=sum(isinstance(o, Delivered) for o in outcomes),
              queued=len(outbound.recipients) if outbound else 0,
              failed=sum(not isinstance(r, Accepted) for r in results),
              ms=round((time.monotonic() - started) * 1000, 1))
        metrics.record_delivery(time.monotonic() - started, sum(isinstance(o, Delivered) for o in outcomes),
                                len(outbound.recipients) if outbound else 0)
        if outbound is not None and self.on_queued is not None:
            self.on_queued()
        return results

    @staticmethod
    def _outbound(envelope: Envelope) -> OutboundMessage | None:
        remote = {}
        for r in envelope.recipients:
            for address in r.remote:
                remote.setdefault(address, OutboundRecipient(address, r.notify, r.orcpt))
        if not remote:
            return None
        return OutboundMessage(envelope.queue_id, envelope.sender, tuple(remote.values()), envelope.envid,
                               envelope.ret, envelope.smtputf8, envelope.body)

    @staticmethod
    def _outcome(r: Recipient, by_account: dict) -> RecipientOutcome:
        """A recipient is accepted when any copy of it is stored or queued: an
        alias that reaches several mailboxes must not be retried (and so
        duplicated) because one of them is full."""
        if r.remote:
            return Accepted(r.address)
        mine = [by_account[a] for a in r.accounts]
        if any(isinstance(o, Delivered) for o in mine):
            return Accepted(r.address)
        if any(getattr(o, "quota", False) for o in mine):
            return TempFailure(r.address, "mailbox full", quota=True)
        if not mine:
            return PermFailure(r.address, "no mailbox for this recipient")
        return TempFailure(r.address, mine[0].reason)
