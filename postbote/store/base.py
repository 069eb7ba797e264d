"""The store contract: what every backend (embedded SQLite, PostgreSQL) provides.

Every method is a coroutine, so a backend may be natively asynchronous
(asyncpg) or offload blocking work to threads (SQLite, fsync). Names are
given in canonical form (see ``postbote.mail.address``); the services, not the
store, do the normalising. The store keeps these invariants:

- UIDs in a mailbox only grow and are never reused; UIDVALIDITY changes only
  when a mailbox of the same name is created anew.
- Every change to a message or mailbox bumps the mailbox's MODSEQ, and every
  expunged UID is journaled with the MODSEQ of its removal (RFC 7162).
- A delivery or append returns only after bytes and metadata are durable.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from .changes import ChangeFeed
from .types import (
    Account,
    Alias,
    AppPassword,
    SieveScript,
    Delivered,
    DeliveryOutcome,
    DeliveryTarget,
    Domain,
    Flag,
    FlagMode,
    Mailbox,
    MailboxSnapshot,
    MailboxStatus,
    Message,
    OutboundEntry,
    OutboundMessage,
    QueuedEntry,
    RecipientResult,
    StoreError,
)
from .types import DmarcEvaluation
from .types import ApiToken
from .types import SpamCounts


class Store(abc.ABC):
    changes: ChangeFeed

    # -- lifecycle -------------------------------------------------------------
    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    # -- domains ---------------------------------------------------------------
    @abc.abstractmethod
    async def add_domain(self, name: str) -> Domain: ...

    @abc.abstractmethod
    async def get_domain(self, name: str) -> Domain | None: ...

    @abc.abstractmethod
    async def list_domains(self) -> list[Domain]: ...

    @abc.abstractmethod
    async def delete_domain(self, name: str) -> None:
        """Refused while accounts or aliases of the domain exist."""

    # -- accounts --------------------------------------------------------------
    @abc.abstractmethod
    async def add_account(self, address: str, password_hash: str, quota: int = 0) -> Account:
        """Create the account with its default mailboxes, all subscribed."""

    @abc.abstractmethod
    async def get_account(self, address: str) -> Account | None: ...

    @abc.abstractmethod
    async def get_account_by_id(self, account_id: int) -> Account | None: ...

    @abc.abstractmethod
    async def list_accounts(self, domain: str | None = None) -> list[Account]: ...

    @abc.abstractmethod
    async def delete_account(self, address: str) -> None: ...

    @abc.abstractmethod
    async def set_password(self, address: str, password_hash: str) -> None: ...

    @abc.abstractmethod
    async def set_quota(self, address: str, quota: int) -> None: ...

    @abc.abstractmethod
    async def add_app_password(self, account_id: int, name: str, password_hash: str) -> AppPassword: ...

    @abc.abstractmethod
    async def list_app_passwords(self, account_id: int) -> list[AppPassword]: ...

    @abc.abstractmethod
    async def delete_app_password(self, account_id: int, name: str) -> None: ...

    # -- aliases ---------------------------------------------------------------
    @abc.abstractmethod
    async def add_alias(self, source: str, target: str) -> None: ...

    @abc.abstractmethod
    async def delete_alias(self, source: str, target: str | None = None) -> None: ...

    @abc.abstractmethod
    async def list_aliases(self, domain: str | None = None) -> list[Alias]: ...

    @abc.abstractmethod
    async def alias_targets(self, source: str) -> list[str]: ...

    # -- mailboxes -------------------------------------------------------------
    @abc.abstractmethod
    async def list_mailboxes(self, account_id: int) -> list[Mailbox]: ...

    @abc.abstractmethod
    async def get_mailbox(self, account_id: int, name: str) -> Mailbox | None: ...

    @abc.abstractmethod
    async def get_mailbox_by_id(self, mailbox_id: int) -> Mailbox | None: ...

    @abc.abstractmethod
    async def create_mailbox(self, account_id: int, name: str, special_use: str | None = None) -> Mailbox: ...

    @abc.abstractmethod
    async def delete_mailbox(self, account_id: int, name: str) -> None: ...

    @abc.abstractmethod
    async def rename_mailbox(self, account_id: int, old: str, new: str) -> None:
        """Rename with all inferiors; renaming INBOX moves its messages (RFC 9051 §6.3.6)."""

    @abc.abstractmethod
    async def subscribe(self, account_id: int, name: str) -> None: ...

    @abc.abstractmethod
    async def unsubscribe(self, account_id: int, name: str) -> None: ...

    @abc.abstractmethod
    async def list_subscriptions(self, account_id: int) -> list[str]: ...

    @abc.abstractmethod
    async def mailbox_status(self, mailbox_id: int) -> MailboxStatus: ...

    @abc.abstractmethod
    async def claim_recent(self, mailbox_id: int) -> int:
        """RFC 3501 \\Recent: return the first recent UID and mark all as seen-by-a-session."""

    # -- messages --------------------------------------------------------------
    @abc.abstractmethod
    async def deliver(self, source: bytes | Path, targets: Sequence[DeliveryTarget],
                      outbound: OutboundMessage | None = None) -> list[DeliveryOutcome]:
        """Store one message for several mailboxes and the outbound queue; durable when it returns.

        ``source`` is the message bytes, or a spool file on the data folder's
        file system (linked into the blob store, never copied). One outcome per
        target, in order; a target may be refused (quota, missing mailbox)
        while the others are delivered. ``outbound`` recipients are queued in
        the same transaction, one queue entry per destination domain.
        """

    @abc.abstractmethod
    async def append(
        self,
        account_id: int,
        mailbox: str,
        raw: bytes,
        flags: Flag = Flag(0),
        keywords: frozenset[str] = frozenset(),
        internaldate: int | None = None,
    ) -> Delivered:
        """IMAP APPEND: like deliver with one target; raises QuotaExceeded / NotFound."""

    @abc.abstractmethod
    async def list_messages(self, mailbox_id: int, first_uid: int = 1, last_uid: int | None = None) -> list[Message]: ...

    @abc.abstractmethod
    def iter_messages(self, mailbox_id: int, batch: int = 1000) -> AsyncIterator[list[Message]]:
        """All messages by ascending UID, in batches: for 100,000-message mailboxes."""

    @abc.abstractmethod
    async def read_blob(self, blob_id: int) -> bytes: ...

    @abc.abstractmethod
    async def blob_path(self, blob_id: int) -> Path | None:
        """The file holding a blob, for streaming large messages (None if not on disk)."""

    @abc.abstractmethod
    async def parsed(self, blob_id: int) -> dict:
        """The parse cached at delivery (``ParsedMessage.to_json()``)."""

    @abc.abstractmethod
    async def store_flags(
        self,
        mailbox_id: int,
        uids: Sequence[int],
        mode: FlagMode,
        flags: Flag,
        keywords: frozenset[str] = frozenset(),
        unchangedsince: int | None = None,
    ) -> tuple[list[Message], list[int]]:
        """Change flags; returns (messages that changed, UIDs refused by UNCHANGEDSINCE)."""

    @abc.abstractmethod
    async def expunge(self, mailbox_id: int, uids: Sequence[int] | None = None) -> list[int]:
        """Remove \\Deleted messages (all of them, or those among ``uids``); returns their UIDs."""

    @abc.abstractmethod
    async def remove_messages(self, mailbox_id: int, uids: Sequence[int]) -> list[int]:
        """Expunge exactly these UIDs, flagged \\Deleted or not, in one transaction
        (POP3's UPDATE state, RFC 1939 §6); returns the UIDs removed."""

    @abc.abstractmethod
    async def copy_messages(self, mailbox_id: int, uids: Sequence[int], target_id: int) -> list[tuple[int, int]]:
        """Copy; returns (source UID, new UID) pairs. Raises QuotaExceeded."""

    @abc.abstractmethod
    async def move_messages(self, mailbox_id: int, uids: Sequence[int], target_id: int) -> list[tuple[int, int]]:
        """Copy and expunge in one transaction (RFC 6851)."""

    @abc.abstractmethod
    async def changes_since(self, mailbox_id: int, modseq: int) -> tuple[list[Message], list[int]]:
        """Messages changed after ``modseq`` and UIDs expunged after it."""

    @abc.abstractmethod
    async def list_outbound(self) -> list[OutboundEntry]:
        """Queue entries with recipients still pending, oldest first."""

    # -- outbound queue --------------------------------------------------------
    @abc.abstractmethod
    async def due_outbound(self, now: int, limit: int = 500, exclude: Sequence[int] = ()) -> list[QueuedEntry]:
        """Entries to attempt: not held, due, not leased, with pending recipients; oldest due first."""

    @abc.abstractmethod
    async def lease_outbound(self, entry_ids: Sequence[int], until: int, now: int) -> list[int]:
        """Lease entries until ``until`` (atomically: only those whose lease ran out); returns the leased ids.

        A lease is what keeps two workers (or nodes) from sending one entry twice.
        """

    @abc.abstractmethod
    async def renew_outbound_leases(self, entry_ids: Sequence[int], until: int) -> None: ...

    @abc.abstractmethod
    async def record_outbound_attempt(self, entry_id: int, results: Sequence[RecipientResult],
                                      next_attempt: int, last_reply: str, delay_notified: bool = False) -> bool:
        """Record one attempt: each recipient's new state, the next try, the lease released.

        An entry with no pending recipient left is removed (its blob released);
        returns True if the entry is gone.
        """

    @abc.abstractmethod
    async def get_outbound(self, queue_id: str) -> list[QueuedEntry]:
        """Every entry of a message (one per destination domain), all recipients with their state."""

    @abc.abstractmethod
    async def set_outbound_held(self, queue_id: str | None, held: bool) -> int:
        """Hold or release the entries of one message (``None``: all); returns how many changed."""

    @abc.abstractmethod
    async def retry_outbound(self, queue_id: str | None, now: int) -> int:
        """Make entries due now (``None``: all); returns how many."""

    @abc.abstractmethod
    async def delete_outbound(self, queue_id: str) -> int:
        """Remove a message's entries without sending or bouncing; returns how many."""

    # -- maintenance -----------------------------------------------------------
    @abc.abstractmethod
    async def collect_garbage(self) -> int:
        """Remove blobs no message refers to; returns how many."""

    # -- imap --------------------------------------------------------------------
    # Helpers with portable defaults built on the methods above; a backend overrides them
    # where one query does better.

    async def select_snapshot(self, mailbox_id: int) -> MailboxSnapshot:
        """The UIDs, counters, first unseen UID and keywords of a mailbox (IMAP SELECT)."""
        status = await self.mailbox_status(mailbox_id)
        uids: list[int] = []
        keywords: set[str] = set()
        first_unseen = None
        async for batch in self.iter_messages(mailbox_id):
            for m in batch:
                uids.append(m.uid)
                keywords |= m.keywords
                if first_unseen is None and not m.has(Flag.SEEN):
                    first_unseen = m.uid
        return MailboxSnapshot(uids, status.uidvalidity, status.uidnext, status.highestmodseq,
                               first_unseen, frozenset(keywords))

    async def messages_by_uid(self, mailbox_id: int, uids: Sequence[int]) -> list[Message]:
        """The messages among ``uids`` (ascending) that still exist, by ascending UID."""
        wanted = set(uids)
        if not wanted:
            return []
        found = await self.list_messages(mailbox_id, min(wanted), max(wanted))
        return [m for m in found if m.uid in wanted]

    async def mailbox_changes(self, mailbox_id: int, modseq: int) -> tuple[int, list[Message], list[int]]:
        """(HIGHESTMODSEQ, messages changed after ``modseq``, UIDs expunged after it)."""
        status = await self.mailbox_status(mailbox_id)
        changed, vanished = await self.changes_since(mailbox_id, modseq)
        return status.highestmodseq, changed, vanished

    async def parsed_many(self, blob_ids: Sequence[int]) -> dict[int, dict]:
        """The cached parses of several blobs (FETCH ENVELOPE over many messages)."""
        return {blob_id: await self.parsed(blob_id) for blob_id in set(blob_ids)}

    # -- dmarc -------------------------------------------------------------------
    @abc.abstractmethod
    async def add_dmarc_evaluation(self, evaluation: DmarcEvaluation) -> None:
        """Keep one DMARC evaluation for the aggregate reports."""

    @abc.abstractmethod
    async def dmarc_evaluations(self, policy_domain: str | None, since: int, until: int) -> list[DmarcEvaluation]:
        """Evaluations received in [since, until), of one policy domain or (None) of all, oldest first."""

    @abc.abstractmethod
    async def delete_dmarc_evaluations(self, before: int) -> int:
        """Forget evaluations received before ``before`` (once reported); returns how many."""

    async def uids_with_subject(self, mailbox_id: int, text: str) -> list[int] | None:
        """UIDs whose subject may contain ``text`` (ASCII case-insensitive), a superset for
        IMAP SEARCH SUBJECT to check exactly; None when the backend cannot narrow it."""
        return None

    async def messages_with_parsed(self, mailbox_id: int, uids: Sequence[int],
                                   keys: Sequence[str] | None = None) -> list[tuple[Message, dict]]:
        """`messages_by_uid` with each message's cached parse, in one round trip where the
        backend can (FETCH ENVELOPE, SEARCH on headers). With ``keys``, only those top-level
        members of the cache (``ParsedMessage.to_json``), which is much cheaper to decode."""
        messages = await self.messages_by_uid(mailbox_id, uids)
        parsed = await self.parsed_many([m.blob_id for m in messages])
        if keys is not None:
            parsed = {b: {k: p.get(k) for k in keys} for b, p in parsed.items()}
        return [(m, parsed[m.blob_id]) for m in messages]

    async def get_metadata(self, account_id: int, mailbox_id: int, prefixes: Sequence[str],
                           depth: int | None) -> list[tuple[str, bytes]]:
        """IMAP METADATA entries (RFC 5464) named by ``prefixes`` (lowercase): each one itself,
        plus entries up to ``depth`` levels below it (None: all). ``mailbox_id`` 0 is the
        account's own entries. Sorted by name."""
        raise StoreError("this store keeps no IMAP metadata")

    async def set_metadata(self, account_id: int, mailbox_id: int,
                           entries: Sequence[tuple[str, bytes | None]], max_entries: int) -> None:
        """Set (None: remove) entries in one transaction; raises QuotaExceeded when the account
        would hold more than ``max_entries`` entries."""
        raise StoreError("this store keeps no IMAP metadata")

    # -- spam --------------------------------------------------------------------
    # The built-in spam filter's state (postbote/filters/spam/). Account 0 is the global model.
    async def spam_counts(self, account_ids: Sequence[int], tokens: Sequence[str]) -> dict[int, SpamCounts]:
        """The learned counts of ``tokens`` in each model of ``account_ids``."""
        raise StoreError("this store keeps no spam filter state")

    async def spam_evidence(self, account_ids: Sequence[int], tokens: Sequence[str],
                            sender: str) -> tuple[dict[int, SpamCounts], dict[int, tuple[int, int]]]:
        """What the filter reads for each message, in one call a backend can answer at once:
        the counts of the global model (0) and of each account, and the sender's reputation
        with each account (none for the null sender)."""
        counts = await self.spam_counts((0, *account_ids), tokens)
        reputations = {a: await self.spam_reputation(a, sender) for a in account_ids} if sender else {}
        return counts, reputations

    async def spam_learn(self, account_id: int, blob_id: int, tokens: Sequence[str], spam: bool,
                         now: int, sender: str = "") -> bool:
        """Train one message into the account's model and the global one, in one transaction.

        A message trained the other way before is untrained first (the user changed their
        mind); one trained this way already is left alone: returns False. ``sender`` (the
        message's From address) also moves the sender's reputation with this account.
        """
        raise StoreError("this store keeps no spam filter state")

    async def spam_reputation(self, account_id: int, sender: str) -> tuple[int, int]:
        """(spam, ham): earlier verdicts and trainings of mail from ``sender`` to this account."""
        raise StoreError("this store keeps no spam filter state")

    async def spam_record_verdict(self, account_ids: Sequence[int], sender: str, spam: bool, now: int) -> None:
        """Count one more spam (or ham) verdict of mail from ``sender`` for each account."""
        raise StoreError("this store keeps no spam filter state")

    async def greylist_touch(self, triplet: str, now: int, restart_before: int = 0) -> tuple[int, int]:
        """(first seen, passed at or 0) of a greylisting triplet; a new one is first seen ``now``,
        and so is one never passed and first seen before ``restart_before`` (its retry came too late)."""
        raise StoreError("this store keeps no greylist")

    async def greylist_pass(self, triplet: str, now: int) -> None:
        """Mark a triplet as let through (its retry came after the delay)."""
        raise StoreError("this store keeps no greylist")

    async def greylist_expire(self, before: int) -> int:
        """Forget triplets not seen since ``before``; returns how many."""
        raise StoreError("this store keeps no greylist")

    # -- outbound TLS policy ------------------------------------------------------
    async def mta_sts_cached(self, domain: str, now: int) -> tuple[str, str, int] | None:
        """(policy id, policy text, expiry) of the MTA-STS policy cached for ``domain``, unless expired."""
        raise StoreError("this store keeps no MTA-STS cache")

    async def mta_sts_cache(self, domain: str, policy_id: str, policy: str, expires: int) -> None:
        """Keep a freshly fetched MTA-STS policy until ``expires`` (unix time), replacing the old one."""
        raise StoreError("this store keeps no MTA-STS cache")

    # -- sieve -------------------------------------------------------------------
    async def sieve_list(self, account_id: int) -> list[SieveScript]:
        """The account's scripts, by name."""
        raise StoreError("this store keeps no Sieve scripts")

    async def sieve_get(self, account_id: int, name: str) -> str | None:
        """A script's text, or None if the account has no script of that name."""
        raise StoreError("this store keeps no Sieve scripts")

    async def sieve_put(self, account_id: int, name: str, content: str) -> None:
        """Create or replace a script (an active script stays active)."""
        raise StoreError("this store keeps no Sieve scripts")

    async def sieve_delete(self, account_id: int, name: str) -> None:
        """Remove a script. NotFound if there is none; StoreError if it is the active one
        (RFC 5804 §2.10: deactivate first)."""
        raise StoreError("this store keeps no Sieve scripts")

    async def sieve_rename(self, account_id: int, old: str, new: str) -> None:
        """NotFound if ``old`` is missing, AlreadyExists if ``new`` is taken; activeness moves along."""
        raise StoreError("this store keeps no Sieve scripts")

    async def sieve_activate(self, account_id: int, name: str | None) -> None:
        """Make ``name`` the only active script; None deactivates all. NotFound if missing."""
        raise StoreError("this store keeps no Sieve scripts")

    async def sieve_active(self, account_id: int) -> tuple[str, str] | None:
        """(name, text) of the active script, or None: what delivery runs."""
        raise StoreError("this store keeps no Sieve scripts")

    async def sieve_vacation_check(self, account_id: int, handle: str, now: int, until: int) -> bool:
        """True if a vacation reply for ``handle`` may go now, and then remember it until
        ``until``; False if one went out and its period has not ended (RFC 5230 §4.2)."""
        raise StoreError("this store keeps no Sieve scripts")

    # -- admin -------------------------------------------------------------------
    async def set_admin(self, account_id: int, admin: bool) -> None:
        """Mark (or unmark) an account as an administrator of the web interface and API."""
        raise StoreError("this store keeps no administrators")

    async def list_admins(self) -> list[int]:
        """The account ids marked as administrators."""
        raise StoreError("this store keeps no administrators")

    async def add_api_token(self, name: str, token_hash: str, account_id: int) -> "ApiToken":
        """Keep an API token's hash; raises AlreadyExists for a name in use."""
        raise StoreError("this store keeps no API tokens")

    async def list_api_tokens(self) -> list["ApiToken"]:
        raise StoreError("this store keeps no API tokens")

    async def delete_api_token(self, name: str) -> int:
        """Revoke a token; returns how many were removed (0 or 1)."""
        raise StoreError("this store keeps no API tokens")

    async def find_api_token(self, token_hash: str, now: int) -> "ApiToken | None":
        """The token with this hash, noting its use at ``now``; None if unknown."""
        raise StoreError("this store keeps no API tokens")
