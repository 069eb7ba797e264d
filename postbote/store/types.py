"""The values the store hands out and takes in, shared by every backend.

They are plain frozen dataclasses so that no protocol ever holds a database
row or a cursor, and a PostgreSQL backend can return the very same types.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class StoreError(Exception):
    """A store operation was refused; the message says why, for a user to read."""


class NotFound(StoreError):
    pass


class AlreadyExists(StoreError):
    pass


class QuotaExceeded(StoreError):
    pass


class Flag(enum.IntFlag):
    """IMAP system flags (RFC 9051 §2.3.2), kept as a bitmask in the store.

    \\Recent is not here: it belongs to a session, not to a message row.
    """

    SEEN = 1
    ANSWERED = 2
    FLAGGED = 4
    DELETED = 8
    DRAFT = 16


FLAG_NAMES: dict[str, Flag] = {
    "\\seen": Flag.SEEN,
    "\\answered": Flag.ANSWERED,
    "\\flagged": Flag.FLAGGED,
    "\\deleted": Flag.DELETED,
    "\\draft": Flag.DRAFT,
}

# The mailboxes every new account gets, with their RFC 6154 special-use roles.
DEFAULT_MAILBOXES: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Drafts", "\\Drafts"),
    ("Sent", "\\Sent"),
    ("Junk", "\\Junk"),
    ("Trash", "\\Trash"),
    ("Archive", "\\Archive"),
)

# The hierarchy delimiter of mailbox names in the store and over IMAP.
DELIMITER = "/"


class FlagMode(enum.Enum):
    """How STORE applies flags: RFC 9051 §6.4.6 FLAGS, +FLAGS, -FLAGS."""

    REPLACE = "replace"
    ADD = "add"
    REMOVE = "remove"


@dataclass(frozen=True)
class Domain:
    id: int
    name: str


@dataclass(frozen=True)
class Account:
    id: int
    address: str
    domain_id: int
    password_hash: str
    quota: int  # bytes; 0 means unlimited
    used: int  # bytes stored in all mailboxes
    disabled: bool = False


@dataclass(frozen=True)
class AppPassword:
    id: int
    account_id: int
    name: str
    password_hash: str
    created: int


@dataclass(frozen=True)
class SieveScript:
    """One of an account's Sieve scripts (RFC 5228); ``active``: the one run at delivery."""

    name: str
    size: int  # octets of the script in UTF-8 (ManageSieve reports and limits this)
    active: bool


@dataclass(frozen=True)
class Alias:
    source: str  # an address, or "@domain" for a catch-all
    target: str


@dataclass(frozen=True)
class Mailbox:
    id: int
    account_id: int
    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    special_use: str | None
    subscribed: bool


@dataclass(frozen=True)
class MailboxStatus:
    """The counters of RFC 9051 STATUS, computed in one query."""

    messages: int
    unseen: int
    size: int
    uidnext: int
    uidvalidity: int
    highestmodseq: int
    deleted: int = 0
    recent: int = 0  # RFC 3501 \Recent: not yet claimed by a session that selected the mailbox


@dataclass(frozen=True)
class Message:
    """One message in one mailbox. ``blob_id`` points at the shared bytes."""

    id: int
    mailbox_id: int
    uid: int
    modseq: int
    flags: Flag
    keywords: frozenset[str]
    internaldate: int  # unix seconds
    size: int
    blob_id: int
    savedate: int = 0

    def has(self, flag: Flag) -> bool:
        return bool(self.flags & flag)


@dataclass(frozen=True)
class DeliveryTarget:
    """One copy of a delivery: which mailbox, with which flags."""

    account_id: int
    mailbox: str = "INBOX"
    flags: Flag = Flag(0)
    keywords: frozenset[str] = frozenset()
    internaldate: int | None = None  # None: now
    enforce_quota: bool = True


@dataclass(frozen=True)
class Delivered:
    account_id: int
    mailbox_id: int
    uidvalidity: int
    uid: int


@dataclass(frozen=True)
class DeliveryRefused:
    account_id: int
    reason: str
    quota: bool = False  # the refusal is an over-quota one (a 4xx/5xx choice for callers)
    missing_mailbox: bool = False


DeliveryOutcome = Delivered | DeliveryRefused


@dataclass(frozen=True)
class Change:
    """What the change feed publishes after a commit; subscribers re-read the store."""

    account_id: int
    mailbox_id: int
    modseq: int = 0
    kinds: frozenset[str] = field(default_factory=frozenset)  # "new", "flags", "expunge", "mailbox"


@dataclass(frozen=True)
class OutboundRecipient:
    address: str
    notify: str | None = None  # RFC 3461 NOTIFY, e.g. "SUCCESS,FAILURE"
    orcpt: str | None = None  # RFC 3461 ORCPT, "rfc822;addr"


@dataclass(frozen=True)
class OutboundMessage:
    """What the outbound queue needs besides the bytes: the envelope and DSN wishes."""

    queue_id: str
    sender: str
    recipients: tuple[OutboundRecipient, ...]
    envid: str | None = None
    ret: str | None = None
    smtputf8: bool = False
    body: str | None = None


@dataclass(frozen=True)
class OutboundEntry:
    """One queue entry: a message for one destination domain."""

    id: int
    queue_id: str
    blob_id: int
    sender: str
    domain: str
    recipients: tuple[str, ...]
    created: int
    next_attempt: int
    attempts: int
    held: bool
    last_reply: str


# -- imap --


@dataclass(frozen=True)
class MailboxSnapshot:
    """What IMAP SELECT needs, read in one snapshot so no change falls between its parts."""

    uids: list[int]
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    first_unseen_uid: int | None
    keywords: frozenset[str]


# -- outbound queue ----------------------------------------------------------------

@dataclass(frozen=True)
class QueuedRecipient:
    """One recipient of a queue entry with its own state (RFC 3461 wishes kept)."""

    address: str
    notify: str | None = None
    orcpt: str | None = None
    status: str = "pending"  # pending, sent, failed
    last_reply: str = ""


@dataclass(frozen=True)
class QueuedEntry:
    """Everything the queue runner needs to attempt one entry (one message, one domain)."""

    id: int
    queue_id: str
    blob_id: int
    sender: str
    domain: str
    recipients: tuple[QueuedRecipient, ...]
    created: int
    next_attempt: int
    attempts: int
    held: bool = False
    last_reply: str = ""
    envid: str | None = None
    ret: str | None = None
    smtputf8: bool = False
    body: str | None = None
    delay_notified: bool = False
    lease_until: int = 0

    @property
    def pending(self) -> tuple[QueuedRecipient, ...]:
        return tuple(r for r in self.recipients if r.status == "pending")


@dataclass(frozen=True)
class RecipientResult:
    """The outcome of one delivery attempt for one recipient."""

    address: str
    status: str  # "sent", "failed", or "pending" (deferred)
    reply: str = ""


# -- dmarc --------------------------------------------------------------------------

@dataclass(frozen=True)
class DmarcEvaluation:
    """One DMARC evaluation of an inbound message, kept for aggregate reports (RFC 7489 §7.2)."""

    received: int  # Unix time
    source_ip: str
    header_from: str
    envelope_from: str  # the MAIL FROM domain, "" for the null reverse-path
    policy_domain: str
    policy: str  # none, quarantine, reject: the p= or sp= that applied
    disposition: str  # none, quarantine, reject: what was done
    result: str  # pass, fail, temperror, ...
    dkim_aligned: bool
    spf_aligned: bool
    spf_domain: str
    spf_result: str
    dkim: tuple[tuple[str, str, str], ...] = ()  # (domain, selector, result) per signature
    override: str = ""  # forwarded, trusted_forwarder, sampled_out, local_policy (RFC 7489 appendix C)
    rua: tuple[str, ...] = ()
    id: int = 0


# -- spam ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SpamCounts:
    """One account's (or, for account 0, the global) learned token counts.

    ``tokens`` maps each asked token the model has seen to (spam, ham): how many
    trained spam and ham messages held it; ``spam``/``ham`` count the trained messages.
    """

    spam: int = 0
    ham: int = 0
    tokens: dict[str, tuple[int, int]] = field(default_factory=dict, hash=False)


# -- admin ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ApiToken:
    """A token for the JSON API; it acts with the rights of ``account_id`` (an admin)."""

    id: int
    name: str
    account_id: int
    created: int
    last_used: int = 0
