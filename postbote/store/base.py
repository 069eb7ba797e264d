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
    Delivered,
    DeliveryOutcome,
    DeliveryTarget,
    Domain,
    Flag,
    FlagMode,
    Mailbox,
    MailboxStatus,
    Message,
    OutboundEntry,
    OutboundMessage,
)


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

    # -- maintenance -----------------------------------------------------------
    @abc.abstractmethod
    async def collect_garbage(self) -> int:
        """Remove blobs no message refers to; returns how many."""
