"""The embedded store: SQLite in WAL mode for metadata, blob files for bytes.

``SqliteDb`` is synchronous and thread-safe (one connection per thread);
``SqliteStore`` is the asynchronous contract of ``base.Store``, running each
call in a bounded executor so the event loop never waits on SQLite or fsync.
Deliveries are group-committed: calls that arrive while a commit is running
share the next transaction and its fsyncs.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Generic, TypeVar

from .base import Store
from .blobs import BlobFiles, StagedBlob, fsync_dir
from .cache import FeedCache
from .changes import ChangeFeed
from .types import (
    DEFAULT_MAILBOXES,
    DELIMITER,
    Account,
    Alias,
    AlreadyExists,
    AppPassword,
    Change,
    Delivered,
    DeliveryOutcome,
    DeliveryRefused,
    DeliveryTarget,
    Domain,
    Flag,
    FlagMode,
    Mailbox,
    MailboxSnapshot,
    MailboxStatus,
    Message,
    NotFound,
    OutboundEntry,
    OutboundMessage,
    QueuedEntry,
    QueuedRecipient,
    QuotaExceeded,
    RecipientResult,
    StoreError,
)
from .types import DmarcEvaluation
from .types import ApiToken
from .types import SpamCounts
from .types import SieveScript

_DMARC_COLUMNS = ("received, source_ip, header_from, envelope_from, policy_domain, policy, disposition, "
                  "result, dkim_aligned, spf_aligned, spf_domain, spf_result, dkim, override, rua")

T = TypeVar("T")
J = TypeVar("J")
R = TypeVar("R")

# Most deliveries that one group commit takes at once.
MAX_BATCH = 256
BUSY_TIMEOUT_MS = 30_000

# Where a blob's file is, relative to DATA/blobs (see migration 0008).
_BLOB_NAME = "COALESCE(path, substr(sha256, 1, 2) || '/' || sha256)"

_MESSAGE_COLUMNS = "id, mailbox_id, uid, modseq, flags, keywords, internaldate, size, blob_id, savedate"


def canonical_mailbox_name(name: str) -> str:
    """INBOX is case-insensitive (RFC 9051 §5.1), including as a parent."""
    head, sep, rest = name.partition(DELIMITER)
    if head.upper() == "INBOX":
        return "INBOX" + sep + rest
    return name


def _message(row: sqlite3.Row | tuple) -> Message:
    id_, mailbox_id, uid, modseq, flags, keywords, internaldate, size, blob_id, savedate = row
    return Message(
        id_, mailbox_id, uid, modseq, Flag(flags),
        frozenset(keywords.split()) if keywords else frozenset(),
        internaldate, size, blob_id, savedate,
    )


def _changed_and_vanished(conn: sqlite3.Connection, mailbox_id: int,
                          modseq: int) -> tuple[list[Message], list[int]]:
    """Messages changed and UIDs expunged after ``modseq`` (RFC 7162), in the caller's snapshot."""
    rows = conn.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE mailbox_id = ? AND modseq > ?"
                        " ORDER BY uid", (mailbox_id, modseq)).fetchall()
    vanished = [r[0] for r in conn.execute(
        "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? ORDER BY uid", (mailbox_id, modseq))]
    return [_message(r) for r in rows], vanished


def _mailbox(row: tuple, subscribed: bool) -> Mailbox:
    id_, account_id, name, uidvalidity, uidnext, modseq, special_use = row
    return Mailbox(id_, account_id, name, uidvalidity, uidnext, modseq, special_use, subscribed)


def _account(row: tuple) -> Account:
    id_, address, domain_id, pw, quota, used, disabled = row
    return Account(id_, address, domain_id, pw, quota, used, bool(disabled))


@dataclass
class _DeliveryJob:
    staged: StagedBlob
    parsed: dict
    summary: dict
    targets: Sequence[DeliveryTarget]
    outbound: OutboundMessage | None = None


def parse_for_store(raw: bytes) -> tuple[dict, dict]:
    """Parse once, at delivery: the cached JSON and the indexed summary columns."""
    from postbote.mail.message import parse_message

    msg = parse_message(raw)

    def first(addrs: Any) -> str:
        for a in addrs or ():
            if getattr(a, "mailbox", None) and getattr(a, "host", None):
                return f"{a.mailbox}@{a.host}".lower()
        return ""

    date = getattr(msg, "date", None)
    summary = {
        "subject": (getattr(msg, "subject", "") or "")[:1000],
        "from_addr": first(getattr(msg, "from_", ())),
        "to_addr": first(getattr(msg, "to", ())),
        "cc_addr": first(getattr(msg, "cc", ())),
        "message_id": (getattr(msg, "message_id", "") or "")[:1000],
        "sent_date": int(date.timestamp()) if date is not None else None,
    }
    return msg.to_json(), summary


class SqliteDb:
    """Synchronous SQLite access; every public method is one transaction."""

    def __init__(self, data_dir: Path, feed: ChangeFeed | None = None) -> None:
        self.data_dir = data_dir
        self.path = data_dir / "postbote.db"
        self.blobs = BlobFiles(data_dir / "blobs")
        self.feed = feed or ChangeFeed()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock_fds: list[int] = []
        self._lock = threading.Lock()

    # -- connections and transactions -----------------------------------------
    def open(self) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.blobs.open()
            if not os.access(self.data_dir, os.W_OK):
                raise PermissionError(13, "Permission denied")
        except OSError as exc:
            raise StoreError(f"data folder {self.data_dir} is not writable: {exc.strerror}") from None
        self._migrate()
        self.blobs.sweep_temp(older_than=3600, now=time.time())

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
            for fd in self._lock_fds:
                os.close(fd)
            self._lock_fds.clear()
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=BUSY_TIMEOUT_MS / 1000)
                # WAL: readers never block the writer; FULL: a commit is on disk
                # when it returns, which is what "250 OK" promises.
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA foreign_keys=ON")
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open database {self.path}: {exc}") from None
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _write(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction. Writers queue on an ``flock`` first: the kernel
        wakes the next one the moment the lock is free, where SQLite's own busy
        handler would poll with sleeps of up to 100 ms (worker processes and
        CLI commands share the database). BEGIN IMMEDIATE then takes SQLite's
        lock up front, so two writers never deadlock upgrading from a read.

        ``durable=False`` is for bookkeeping that may lose its last second in
        a power cut but never mail (filter statistics, report records): the
        commit skips the WAL fsync (still safe against a process crash)."""
        conn = self._conn()
        lock_fd = self._writer_lock_fd()
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        try:
            if not durable:
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
        finally:
            if not durable:
                conn.execute("PRAGMA synchronous=FULL")
            fcntl.flock(lock_fd, fcntl.LOCK_UN)

    def _writer_lock_fd(self) -> int:
        """One open file per thread: flock excludes across open files, so
        threads of one process queue as processes do."""
        fd = getattr(self._local, "lock_fd", None)
        if fd is None:
            fd = os.open(self.data_dir / "postbote.db.writer", os.O_RDWR | os.O_CREAT, 0o600)
            self._local.lock_fd = fd
            with self._lock:
                self._lock_fds.append(fd)
        return fd

    def _read(self) -> sqlite3.Connection:
        return self._conn()

    def _migrate(self) -> None:
        """Apply every ``migrations/NNNN_name.sql`` not applied yet, in number order.

        Applied numbers are recorded one by one (not as a single version), so
        a migration that arrives with a lower number than one already applied
        (two features developed side by side) is still applied.
        """
        files = sorted(
            (int(f.name[:4]), f)
            for f in resources.files("postbote.store").joinpath("migrations").iterdir()
            if f.name.endswith(".sql")
        )
        known = {number for number, _ in files}
        with self._write() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (number INTEGER PRIMARY KEY, applied INTEGER)")
            applied = {r[0] for r in conn.execute("SELECT number FROM schema_migrations")}
            if applied - known:
                raise StoreError(f"database {self.path} has migrations {sorted(applied - known)} that this "
                                 f"postbote does not know: it is newer than this program")
            for number, f in files:
                if number not in applied:
                    for statement in _split_sql(f.read_text()):
                        conn.execute(statement)
                    conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (number, int(time.time())))
                    conn.execute(f"PRAGMA user_version={max(known)}")

    def schema_version(self) -> int:
        return self._read().execute("PRAGMA user_version").fetchone()[0]

    # -- domains ---------------------------------------------------------------
    def add_domain(self, name: str) -> Domain:
        try:
            with self._write() as conn:
                cur = conn.execute("INSERT INTO domains(name, created) VALUES (?, ?)", (name, int(time.time())))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"domain {name} exists already") from None
        self.feed.publish(DOMAINS_CHANGED)
        return Domain(cur.lastrowid, name)

    def get_domain(self, name: str) -> Domain | None:
        row = self._read().execute("SELECT id, name FROM domains WHERE name = ?", (name,)).fetchone()
        return Domain(*row) if row else None

    def list_domains(self) -> list[Domain]:
        return [Domain(*r) for r in self._read().execute("SELECT id, name FROM domains ORDER BY name")]

    def delete_domain(self, name: str) -> None:
        with self._write() as conn:
            row = conn.execute("SELECT id FROM domains WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"no domain {name}")
            if conn.execute("SELECT 1 FROM accounts WHERE domain_id = ? LIMIT 1", row).fetchone():
                raise StoreError(f"domain {name} still has accounts; delete them first")
            if conn.execute("SELECT 1 FROM aliases WHERE source = ? OR source LIKE ? LIMIT 1",
                            ("@" + name, "%@" + name)).fetchone():
                raise StoreError(f"domain {name} still has aliases; delete them first")
            conn.execute("DELETE FROM domains WHERE id = ?", row)
        self.feed.publish(DOMAINS_CHANGED)

    # -- accounts --------------------------------------------------------------
    _ACCOUNT = "SELECT id, address, domain_id, password_hash, quota, used, disabled FROM accounts"

    def add_account(self, address: str, password_hash: str, quota: int = 0) -> Account:
        domain = address.rpartition("@")[2]
        now = int(time.time())
        with self._write() as conn:
            drow = conn.execute("SELECT id FROM domains WHERE name = ?", (domain,)).fetchone()
            if drow is None:
                raise NotFound(f"no domain {domain}; add it first with 'postbote domain add {domain}'")
            try:
                cur = conn.execute(
                    "INSERT INTO accounts(address, domain_id, password_hash, quota, created) VALUES (?, ?, ?, ?, ?)",
                    (address, drow[0], password_hash, quota, now),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"account {address} exists already") from None
            account_id = cur.lastrowid
            for name, special_use in DEFAULT_MAILBOXES:
                self._create_mailbox(conn, account_id, name, special_use)
                conn.execute("INSERT OR IGNORE INTO subscriptions VALUES (?, ?)", (account_id, name))
        return Account(account_id, address, drow[0], password_hash, quota, 0)

    def get_account(self, address: str) -> Account | None:
        row = self._read().execute(self._ACCOUNT + " WHERE address = ?", (address,)).fetchone()
        return _account(row) if row else None

    def get_account_by_id(self, account_id: int) -> Account | None:
        row = self._read().execute(self._ACCOUNT + " WHERE id = ?", (account_id,)).fetchone()
        return _account(row) if row else None

    def list_accounts(self, domain: str | None = None) -> list[Account]:
        if domain is None:
            rows = self._read().execute(self._ACCOUNT + " ORDER BY address")
        else:
            rows = self._read().execute(
                self._ACCOUNT + " WHERE domain_id = (SELECT id FROM domains WHERE name = ?) ORDER BY address", (domain,))
        return [_account(r) for r in rows]

    def delete_account(self, address: str) -> None:
        with self._write() as conn:
            row = conn.execute("SELECT id FROM accounts WHERE address = ?", (address,)).fetchone()
            if row is None:
                raise NotFound(f"no account {address}")
            conn.execute(
                "UPDATE blobs SET refcount = refcount - sub.n FROM (SELECT blob_id, COUNT(*) AS n FROM messages"
                " WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE account_id = ?) GROUP BY blob_id) AS sub"
                " WHERE blobs.id = sub.blob_id", row)
            conn.execute("DELETE FROM expunged WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE account_id = ?)", row)
            conn.execute("DELETE FROM accounts WHERE id = ?", row)

    def _update_account(self, address: str, column: str, value: Any) -> None:
        with self._write() as conn:
            if conn.execute(f"UPDATE accounts SET {column} = ? WHERE address = ?", (value, address)).rowcount == 0:
                raise NotFound(f"no account {address}")

    def set_password(self, address: str, password_hash: str) -> None:
        self._update_account(address, "password_hash", password_hash)

    def set_quota(self, address: str, quota: int) -> None:
        self._update_account(address, "quota", quota)

    def add_app_password(self, account_id: int, name: str, password_hash: str) -> AppPassword:
        now = int(time.time())
        try:
            with self._write() as conn:
                cur = conn.execute(
                    "INSERT INTO app_passwords(account_id, name, password_hash, created) VALUES (?, ?, ?, ?)",
                    (account_id, name, password_hash, now))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"app password {name} exists already") from None
        return AppPassword(cur.lastrowid, account_id, name, password_hash, now)

    def list_app_passwords(self, account_id: int) -> list[AppPassword]:
        rows = self._read().execute(
            "SELECT id, account_id, name, password_hash, created FROM app_passwords WHERE account_id = ? ORDER BY name",
            (account_id,))
        return [AppPassword(*r) for r in rows]

    def delete_app_password(self, account_id: int, name: str) -> None:
        with self._write() as conn:
            if conn.execute("DELETE FROM app_passwords WHERE account_id = ? AND name = ?",
                            (account_id, name)).rowcount == 0:
                raise NotFound(f"no app password {name}")

    # -- aliases ---------------------------------------------------------------
    def add_alias(self, source: str, target: str) -> None:
        domain = source.rpartition("@")[2]
        try:
            with self._write() as conn:
                if conn.execute("SELECT 1 FROM domains WHERE name = ?", (domain,)).fetchone() is None:
                    raise NotFound(f"no domain {domain}; add it first with 'postbote domain add {domain}'")
                conn.execute("INSERT INTO aliases(source, target, created) VALUES (?, ?, ?)",
                             (source, target, int(time.time())))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"alias {source} -> {target} exists already") from None

    def delete_alias(self, source: str, target: str | None = None) -> None:
        with self._write() as conn:
            if target is None:
                n = conn.execute("DELETE FROM aliases WHERE source = ?", (source,)).rowcount
            else:
                n = conn.execute("DELETE FROM aliases WHERE source = ? AND target = ?", (source, target)).rowcount
            if n == 0:
                raise NotFound(f"no alias {source}" + (f" -> {target}" if target else ""))

    def list_aliases(self, domain: str | None = None) -> list[Alias]:
        if domain is None:
            rows = self._read().execute("SELECT source, target FROM aliases ORDER BY source, target")
        else:
            rows = self._read().execute(
                "SELECT source, target FROM aliases WHERE source = ? OR source LIKE ? ORDER BY source, target",
                ("@" + domain, "%@" + domain))
        return [Alias(*r) for r in rows]

    def alias_targets(self, source: str) -> list[str]:
        rows = self._read().execute("SELECT target FROM aliases WHERE source = ? ORDER BY target", (source,))
        return [r[0] for r in rows]

    # -- mailboxes -------------------------------------------------------------
    _MAILBOX = "SELECT id, account_id, name, uidvalidity, uidnext, highestmodseq, special_use FROM mailboxes"

    def _next_uidvalidity(self, conn: sqlite3.Connection) -> int:
        """Unique per store and growing, so a recreated mailbox never repeats one."""
        row = conn.execute("SELECT value FROM meta WHERE key = 'uidvalidity'").fetchone()
        value = max(int(time.time()), (row[0] if row else 0) + 1) & 0xFFFFFFFF
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('uidvalidity', ?)", (value,))
        return value

    def _create_mailbox(self, conn: sqlite3.Connection, account_id: int, name: str,
                        special_use: str | None) -> int:
        try:
            cur = conn.execute(
                "INSERT INTO mailboxes(account_id, name, uidvalidity, special_use) VALUES (?, ?, ?, ?)",
                (account_id, name, self._next_uidvalidity(conn), special_use))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"mailbox {name} exists already") from None
        return cur.lastrowid

    def _subscribed(self, account_id: int) -> set[str]:
        return {r[0] for r in self._read().execute("SELECT name FROM subscriptions WHERE account_id = ?", (account_id,))}

    def list_mailboxes(self, account_id: int) -> list[Mailbox]:
        subs = self._subscribed(account_id)
        rows = self._read().execute(self._MAILBOX + " WHERE account_id = ? ORDER BY name", (account_id,))
        return [_mailbox(r, r[2] in subs) for r in rows]

    def get_mailbox(self, account_id: int, name: str) -> Mailbox | None:
        name = canonical_mailbox_name(name)
        row = self._read().execute(self._MAILBOX + " WHERE account_id = ? AND name = ?", (account_id, name)).fetchone()
        return _mailbox(row, name in self._subscribed(account_id)) if row else None

    def get_mailbox_by_id(self, mailbox_id: int) -> Mailbox | None:
        row = self._read().execute(self._MAILBOX + " WHERE id = ?", (mailbox_id,)).fetchone()
        return _mailbox(row, row[2] in self._subscribed(row[1])) if row else None

    def create_mailbox(self, account_id: int, name: str, special_use: str | None = None) -> Mailbox:
        name = canonical_mailbox_name(name)
        if not name or name.startswith(DELIMITER) or name.endswith(DELIMITER) or DELIMITER * 2 in name:
            raise StoreError(f"invalid mailbox name {name!r}")
        with self._write() as conn:
            mailbox_id = self._create_mailbox(conn, account_id, name, special_use)
        self.feed.publish(Change(account_id, mailbox_id, 0, frozenset({"mailbox"})))
        mailbox = self.get_mailbox_by_id(mailbox_id)
        assert mailbox is not None
        return mailbox

    def delete_mailbox(self, account_id: int, name: str) -> None:
        name = canonical_mailbox_name(name)
        if name == "INBOX":
            raise StoreError("INBOX cannot be deleted")
        with self._write() as conn:
            row = conn.execute("SELECT id FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, name)).fetchone()
            if row is None:
                raise NotFound(f"no mailbox {name}")
            self._drop_messages(conn, "mailbox_id = ?", row)
            conn.execute("DELETE FROM expunged WHERE mailbox_id = ?", row)
            conn.execute("DELETE FROM mailboxes WHERE id = ?", row)
        self.feed.publish(Change(account_id, row[0], 0, frozenset({"mailbox"})))

    def rename_mailbox(self, account_id: int, old: str, new: str) -> None:
        old, new = canonical_mailbox_name(old), canonical_mailbox_name(new)
        with self._write() as conn:
            row = conn.execute("SELECT id FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, old)).fetchone()
            if row is None:
                raise NotFound(f"no mailbox {old}")
            if conn.execute("SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, new)).fetchone():
                raise AlreadyExists(f"mailbox {new} exists already")
            if old == "INBOX":
                # RFC 9051 §6.3.6: renaming INBOX moves its messages to a new
                # mailbox and leaves INBOX empty; its inferiors stay where they are.
                self._move_all_from_inbox(conn, account_id, row[0], new)
            else:
                like = old.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + DELIMITER + "%"
                children = conn.execute(
                    "SELECT id, name FROM mailboxes WHERE account_id = ? AND name LIKE ? ESCAPE '\\'",
                    (account_id, like)).fetchall()
                conn.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (new, row[0]))
                for child_id, child_name in children:
                    conn.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (new + child_name[len(old):], child_id))
        self.feed.publish(Change(account_id, row[0], 0, frozenset({"mailbox"})))

    def _move_all_from_inbox(self, conn: sqlite3.Connection, account_id: int, inbox_id: int, new: str) -> None:
        target_id = self._create_mailbox(conn, account_id, new, None)
        uids = [r[0] for r in conn.execute("SELECT uid FROM messages WHERE mailbox_id = ? ORDER BY uid", (inbox_id,))]
        self._copy(conn, inbox_id, uids, target_id, check_quota=False)
        self._expunge(conn, inbox_id, uids, only_deleted=False)

    def subscribe(self, account_id: int, name: str) -> None:
        with self._write() as conn:
            conn.execute("INSERT OR IGNORE INTO subscriptions VALUES (?, ?)", (account_id, canonical_mailbox_name(name)))
            mailbox_id = self._mailbox_id(conn, account_id, name)
        self._subscription_changed(account_id, mailbox_id)

    def unsubscribe(self, account_id: int, name: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM subscriptions WHERE account_id = ? AND name = ?",
                         (account_id, canonical_mailbox_name(name)))
            mailbox_id = self._mailbox_id(conn, account_id, name)
        self._subscription_changed(account_id, mailbox_id)

    @staticmethod
    def _mailbox_id(conn: sqlite3.Connection, account_id: int, name: str) -> int:
        row = conn.execute("SELECT id FROM mailboxes WHERE account_id = ? AND name = ?",
                           (account_id, canonical_mailbox_name(name))).fetchone()
        return row[0] if row else 0

    def _subscription_changed(self, account_id: int, mailbox_id: int) -> None:
        """For IMAP NOTIFY's SubscriptionChange (RFC 5465 §5.5), whoever changed it."""
        self.feed.publish(Change(account_id, mailbox_id, 0, frozenset({"subscription"})))

    def list_subscriptions(self, account_id: int) -> list[str]:
        return sorted(self._subscribed(account_id))

    def mailbox_status(self, mailbox_id: int) -> MailboxStatus:
        conn = self._read()
        conn.execute("BEGIN")  # one snapshot for all counters
        try:
            mb = conn.execute("SELECT uidnext, uidvalidity, highestmodseq, recent_uid FROM mailboxes WHERE id = ?",
                              (mailbox_id,)).fetchone()
            if mb is None:
                raise NotFound("no such mailbox")
            count, size, deleted = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM((flags & 8) != 0), 0)"
                " FROM messages WHERE mailbox_id = ?", (mailbox_id,)).fetchone()
            unseen = conn.execute("SELECT COUNT(*) FROM messages WHERE mailbox_id = ? AND (flags & 1) = 0",
                                  (mailbox_id,)).fetchone()[0]
            recent = conn.execute("SELECT COUNT(*) FROM messages WHERE mailbox_id = ? AND uid >= ?",
                                  (mailbox_id, mb[3])).fetchone()[0]
        finally:
            conn.execute("COMMIT")
        return MailboxStatus(count, unseen, size, mb[0], mb[1], mb[2], deleted, recent)

    def claim_recent(self, mailbox_id: int) -> int:
        with self._write() as conn:
            row = conn.execute("SELECT recent_uid FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
            if row is None:
                raise NotFound("no such mailbox")
            conn.execute("UPDATE mailboxes SET recent_uid = uidnext WHERE id = ?", (mailbox_id,))
        return row[0]

    # -- delivery --------------------------------------------------------------
    def prepare_delivery(self, source: bytes | Path, targets: Sequence[DeliveryTarget],
                         outbound: OutboundMessage | None = None) -> _DeliveryJob:
        """The part of a delivery that needs no lock: stage the bytes, parse once."""
        if isinstance(source, Path):
            staged = self.blobs.stage_file(source)
            raw = source.read_bytes()
        else:
            staged = self.blobs.stage(source)
            raw = source
        parsed, summary = parse_for_store(raw)
        return _DeliveryJob(staged, parsed, summary, targets, outbound)

    def commit_deliveries(self, jobs: list[_DeliveryJob]) -> list[list[DeliveryOutcome] | BaseException]:
        """One transaction (one WAL fsync) for many deliveries: the group commit."""
        results: list[list[DeliveryOutcome] | BaseException] = []
        changes: list[Change] = []
        try:
            with self._write() as conn:
                dirs: set[Path] = set()
                for job in jobs:
                    conn.execute("SAVEPOINT job")
                    try:
                        outcome = self._commit_job(conn, job, dirs, changes)
                    except (StoreError, OSError) as exc:
                        conn.execute("ROLLBACK TO job")
                        results.append(exc)
                    else:
                        results.append(outcome)
                    conn.execute("RELEASE job")
                for d in dirs:
                    fsync_dir(d)
        finally:
            for job in jobs:
                self.blobs.discard(job.staged)
        for change in changes:
            self.feed.publish(change)
        return results

    def _blob_id(self, conn: sqlite3.Connection, job: _DeliveryJob, dirs: set[Path]) -> int:
        row = conn.execute(f"SELECT id, {_BLOB_NAME} FROM blobs WHERE sha256 = ?", (job.staged.sha256,)).fetchone()
        name = row[1] if row else self.blobs.new_name(job.staged.sha256)
        changed_dir = self.blobs.materialize(job.staged, name)  # even for a known row: GC may have raced
        if changed_dir is not None:
            dirs.add(changed_dir)
        if row:
            return row[0]
        s = job.summary
        cur = conn.execute(
            "INSERT INTO blobs(sha256, path, size, parsed, subject, from_addr, to_addr, cc_addr, message_id, sent_date)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job.staged.sha256, name, job.staged.size, json.dumps(job.parsed, separators=(",", ":")),
             s["subject"], s["from_addr"], s["to_addr"], s["cc_addr"], s["message_id"], s["sent_date"]))
        return cur.lastrowid

    def _commit_job(self, conn: sqlite3.Connection, job: _DeliveryJob, dirs: set[Path],
                    changes: list[Change]) -> list[DeliveryOutcome]:
        blob_id = self._blob_id(conn, job, dirs)
        outcomes: list[DeliveryOutcome] = []
        now = int(time.time())
        for t in job.targets:
            name = canonical_mailbox_name(t.mailbox)
            mb = conn.execute("SELECT id FROM mailboxes WHERE account_id = ? AND name = ?", (t.account_id, name)).fetchone()
            if mb is None:
                outcomes.append(DeliveryRefused(t.account_id, f"no mailbox {name}", missing_mailbox=True))
                continue
            acct = conn.execute("SELECT quota, used FROM accounts WHERE id = ?", (t.account_id,)).fetchone()
            if acct is None:
                outcomes.append(DeliveryRefused(t.account_id, "no such account"))
                continue
            if t.enforce_quota and acct[0] and acct[1] + job.staged.size > acct[0]:
                outcomes.append(DeliveryRefused(t.account_id, "mailbox full", quota=True))
                continue
            uidvalidity, uid, modseq = self._insert_message(
                conn, mb[0], t.account_id, blob_id, job.staged.size, t.flags, t.keywords,
                t.internaldate if t.internaldate is not None else now, now)
            outcomes.append(Delivered(t.account_id, mb[0], uidvalidity, uid))
            changes.append(Change(t.account_id, mb[0], modseq, frozenset({"new"})))
        if job.outbound is not None and job.outbound.recipients:
            self._enqueue(conn, blob_id, job.outbound, now)
        return outcomes

    def _enqueue(self, conn: sqlite3.Connection, blob_id: int, msg: OutboundMessage, now: int) -> None:
        by_domain: dict[str, list] = {}
        for r in msg.recipients:
            by_domain.setdefault(r.address.rpartition("@")[2].lower(), []).append(r)
        for domain, rcpts in sorted(by_domain.items()):
            entry_id = conn.execute(
                "INSERT INTO outbound(queue_id, blob_id, sender, domain, envid, ret, smtputf8, body, created,"
                " next_attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (msg.queue_id, blob_id, msg.sender, domain, msg.envid, msg.ret, int(msg.smtputf8), msg.body,
                 now, now)).lastrowid
            conn.executemany("INSERT OR IGNORE INTO outbound_rcpt(entry_id, address, orcpt, notify) VALUES (?, ?, ?, ?)",
                             [(entry_id, r.address, r.orcpt, r.notify) for r in rcpts])
            conn.execute("UPDATE blobs SET refcount = refcount + 1 WHERE id = ?", (blob_id,))

    def list_outbound(self) -> list[OutboundEntry]:
        rows = self._read().execute(
            "SELECT o.id, o.queue_id, o.blob_id, o.sender, o.domain, group_concat(r.address, ' '), o.created,"
            " o.next_attempt, o.attempts, o.held, o.last_reply FROM outbound o"
            " JOIN outbound_rcpt r ON r.entry_id = o.id AND r.status = 'pending'"
            " GROUP BY o.id ORDER BY o.created, o.id").fetchall()
        return [OutboundEntry(r[0], r[1], r[2], r[3], r[4], tuple(sorted(r[5].split())), r[6], r[7], r[8],
                              bool(r[9]), r[10]) for r in rows]

    def _insert_message(self, conn: sqlite3.Connection, mailbox_id: int, account_id: int, blob_id: int,
                        size: int, flags: Flag, keywords: frozenset[str], internaldate: int,
                        savedate: int) -> tuple[int, int, int]:
        uidvalidity, uid, modseq = conn.execute(
            "UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1 WHERE id = ?"
            " RETURNING uidvalidity, uidnext - 1, highestmodseq", (mailbox_id,)).fetchone()
        conn.execute(
            "INSERT INTO messages(mailbox_id, uid, modseq, flags, keywords, internaldate, savedate, size, blob_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (mailbox_id, uid, modseq, int(flags), " ".join(sorted(keywords)), internaldate, savedate, size, blob_id))
        conn.execute("UPDATE blobs SET refcount = refcount + 1 WHERE id = ?", (blob_id,))
        conn.execute("UPDATE accounts SET used = used + ? WHERE id = ?", (size, account_id))
        return uidvalidity, uid, modseq

    # -- messages --------------------------------------------------------------
    def list_messages(self, mailbox_id: int, first_uid: int = 1, last_uid: int | None = None,
                      limit: int = -1) -> list[Message]:
        rows = self._read().execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE mailbox_id = ? AND uid >= ? AND uid <= ?"
            " ORDER BY uid LIMIT ?", (mailbox_id, first_uid, last_uid if last_uid is not None else 2**62, limit))
        return [_message(r) for r in rows]

    def _blob_row(self, blob_id: int, column: str) -> Any:
        row = self._read().execute(f"SELECT {column} FROM blobs WHERE id = ?", (blob_id,)).fetchone()
        if row is None:
            raise NotFound(f"no blob {blob_id}")
        return row[0]

    def read_blob(self, blob_id: int) -> bytes:
        return self.blobs.read(self._blob_row(blob_id, _BLOB_NAME))

    def blob_path(self, blob_id: int) -> Path | None:
        path = self.blobs.path(self._blob_row(blob_id, _BLOB_NAME))
        return path if path.exists() else None

    def parsed(self, blob_id: int) -> dict:
        return json.loads(self._blob_row(blob_id, "parsed"))

    def _uid_chunks(self, uids: Sequence[int]) -> Iterator[Sequence[int]]:
        # SQLite limits bound parameters; 500 at a time is well inside.
        for i in range(0, len(uids), 500):
            yield uids[i:i + 500]

    def store_flags(self, mailbox_id: int, uids: Sequence[int], mode: FlagMode, flags: Flag,
                    keywords: frozenset[str] = frozenset(),
                    unchangedsince: int | None = None) -> tuple[list[Message], list[int]]:
        changed: list[Message] = []
        refused: list[int] = []
        with self._write() as conn:
            account_id, modseq = conn.execute(
                "SELECT account_id, highestmodseq + 1 FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
            for chunk in self._uid_chunks(uids):
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE mailbox_id = ? AND uid IN ({marks})",
                                    (mailbox_id, *chunk)).fetchall()
                for m in map(_message, rows):
                    # RFC 7162 §3.2: UNCHANGEDSINCE refuses messages changed after it.
                    if unchangedsince is not None and m.modseq > unchangedsince:
                        refused.append(m.uid)
                        continue
                    new_flags, new_keywords = _apply_flags(m, mode, flags, keywords)
                    if new_flags == m.flags and new_keywords == m.keywords:
                        continue
                    conn.execute("UPDATE messages SET flags = ?, keywords = ?, modseq = ? WHERE id = ?",
                                 (int(new_flags), " ".join(sorted(new_keywords)), modseq, m.id))
                    changed.append(Message(m.id, m.mailbox_id, m.uid, modseq, new_flags, new_keywords,
                                           m.internaldate, m.size, m.blob_id, m.savedate))
            if changed:
                conn.execute("UPDATE mailboxes SET highestmodseq = ? WHERE id = ?", (modseq, mailbox_id))
        if changed:
            self.feed.publish(Change(account_id, mailbox_id, modseq, frozenset({"flags"})))
        return changed, refused

    def expunge(self, mailbox_id: int, uids: Sequence[int] | None = None) -> list[int]:
        with self._write() as conn:
            if uids is None:
                uids = [r[0] for r in conn.execute(
                    "SELECT uid FROM messages WHERE mailbox_id = ? AND (flags & 8) != 0 ORDER BY uid", (mailbox_id,))]
            gone, account_id, modseq = self._expunge(conn, mailbox_id, uids, only_deleted=True)
        if gone:
            self.feed.publish(Change(account_id, mailbox_id, modseq, frozenset({"expunge"})))
        return gone

    def remove_messages(self, mailbox_id: int, uids: Sequence[int]) -> list[int]:
        with self._write() as conn:
            gone, account_id, modseq = self._expunge(conn, mailbox_id, uids, only_deleted=False)
        if gone:
            self.feed.publish(Change(account_id, mailbox_id, modseq, frozenset({"expunge"})))
        return gone

    def _expunge(self, conn: sqlite3.Connection, mailbox_id: int, uids: Sequence[int],
                 only_deleted: bool) -> tuple[list[int], int, int]:
        account_id, modseq = conn.execute(
            "SELECT account_id, highestmodseq + 1 FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
        gone: list[int] = []
        cond = " AND (flags & 8) != 0" if only_deleted else ""
        for chunk in self._uid_chunks(sorted(uids)):
            marks = ",".join("?" * len(chunk))
            gone += self._drop_messages(conn, f"mailbox_id = ? AND uid IN ({marks}){cond}", (mailbox_id, *chunk))
        if gone:
            conn.executemany("INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq) VALUES (?, ?, ?)",
                             [(mailbox_id, uid, modseq) for uid in gone])
            conn.execute("UPDATE mailboxes SET highestmodseq = ? WHERE id = ?", (modseq, mailbox_id))
        return sorted(gone), account_id, modseq

    def _drop_messages(self, conn: sqlite3.Connection, where: str, args: Sequence[Any]) -> list[int]:
        """Delete message rows, releasing their blobs and quota; returns their UIDs."""
        rows = conn.execute(
            f"DELETE FROM messages WHERE {where} RETURNING uid, blob_id, size, mailbox_id", args).fetchall()
        for uid, blob_id, size, mailbox_id in rows:
            conn.execute("UPDATE blobs SET refcount = refcount - 1 WHERE id = ?", (blob_id,))
            conn.execute("UPDATE accounts SET used = used - ? WHERE id = "
                         "(SELECT account_id FROM mailboxes WHERE id = ?)", (size, mailbox_id))
        return [r[0] for r in rows]

    def copy_messages(self, mailbox_id: int, uids: Sequence[int], target_id: int) -> list[tuple[int, int]]:
        with self._write() as conn:
            pairs = self._copy(conn, mailbox_id, uids, target_id, check_quota=True)
            account_id, modseq = conn.execute("SELECT account_id, highestmodseq FROM mailboxes WHERE id = ?",
                                              (target_id,)).fetchone()
        if pairs:
            self.feed.publish(Change(account_id, target_id, modseq, frozenset({"new"})))
        return pairs

    def move_messages(self, mailbox_id: int, uids: Sequence[int], target_id: int) -> list[tuple[int, int]]:
        with self._write() as conn:
            pairs = self._copy(conn, mailbox_id, uids, target_id, check_quota=False)
            _, account_id, modseq = self._expunge(conn, mailbox_id, [p[0] for p in pairs], only_deleted=False)
            target_modseq = conn.execute("SELECT highestmodseq FROM mailboxes WHERE id = ?", (target_id,)).fetchone()[0]
        if pairs:
            self.feed.publish(Change(account_id, target_id, target_modseq, frozenset({"new"})))
            self.feed.publish(Change(account_id, mailbox_id, modseq, frozenset({"expunge"})))
        return pairs

    def _copy(self, conn: sqlite3.Connection, mailbox_id: int, uids: Sequence[int], target_id: int,
              check_quota: bool) -> list[tuple[int, int]]:
        target = conn.execute("SELECT account_id FROM mailboxes WHERE id = ?", (target_id,)).fetchone()
        if target is None:
            raise NotFound("no such target mailbox")
        messages: list[Message] = []
        for chunk in self._uid_chunks(sorted(set(uids))):
            marks = ",".join("?" * len(chunk))
            messages += map(_message, conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE mailbox_id = ? AND uid IN ({marks}) ORDER BY uid",
                (mailbox_id, *chunk)))
        if check_quota:
            quota, used = conn.execute("SELECT quota, used FROM accounts WHERE id = ?", target).fetchone()
            if quota and used + sum(m.size for m in messages) > quota:
                raise QuotaExceeded("the copy would exceed the storage quota")
        now = int(time.time())
        pairs = []
        for m in messages:
            _, uid, _ = self._insert_message(conn, target_id, target[0], m.blob_id, m.size, m.flags,
                                             m.keywords, m.internaldate, now)
            pairs.append((m.uid, uid))
        return pairs

    def changes_since(self, mailbox_id: int, modseq: int) -> tuple[list[Message], list[int]]:
        conn = self._read()
        conn.execute("BEGIN")
        try:
            return _changed_and_vanished(conn, mailbox_id, modseq)
        finally:
            conn.execute("COMMIT")

    # -- outbound queue --------------------------------------------------------
    _ENTRY_COLUMNS = ("o.id, o.queue_id, o.blob_id, o.sender, o.domain, o.created, o.next_attempt, o.attempts,"
                      " o.held, o.last_reply, o.envid, o.ret, o.smtputf8, o.body, o.delay_notified, o.lease_until")

    def _entries(self, conn: sqlite3.Connection, where: str, args: Sequence[Any], tail: str = "") -> list[QueuedEntry]:
        rows = conn.execute(f"SELECT {self._ENTRY_COLUMNS} FROM outbound o WHERE {where} {tail}", args).fetchall()
        rcpts: dict[int, list[QueuedRecipient]] = {r[0]: [] for r in rows}
        ids = list(rcpts)
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for row in conn.execute(
                    "SELECT entry_id, address, notify, orcpt, status, last_reply FROM outbound_rcpt"
                    f" WHERE entry_id IN ({','.join('?' * len(chunk))}) ORDER BY rowid", chunk):
                rcpts[row[0]].append(QueuedRecipient(*row[1:]))
        return [QueuedEntry(r[0], r[1], r[2], r[3], r[4], tuple(rcpts[r[0]]), r[5], r[6], r[7], bool(r[8]), r[9],
                            r[10], r[11], bool(r[12]), r[13], bool(r[14]), r[15]) for r in rows]

    def due_outbound(self, now: int, limit: int = 500, exclude: Sequence[int] = ()) -> list[QueuedEntry]:
        conn = self._read()
        conn.execute("BEGIN")
        try:
            skip = f" AND o.id NOT IN ({','.join(str(int(i)) for i in exclude)})" if exclude else ""
            return self._entries(
                conn, "o.held = 0 AND o.next_attempt <= ? AND o.lease_until <= ?" + skip +
                " AND EXISTS (SELECT 1 FROM outbound_rcpt r WHERE r.entry_id = o.id AND r.status = 'pending')",
                (now, now), "ORDER BY o.next_attempt, o.id LIMIT " + str(int(limit)))
        finally:
            conn.execute("COMMIT")

    def lease_outbound(self, entry_ids: Sequence[int], until: int, now: int) -> list[int]:
        if not entry_ids:
            return []
        with self._write() as conn:
            marks = ",".join("?" * len(entry_ids))
            rows = conn.execute(f"UPDATE outbound SET lease_until = ? WHERE id IN ({marks}) AND held = 0"
                                " AND lease_until <= ? RETURNING id", (until, *entry_ids, now)).fetchall()
        return sorted(r[0] for r in rows)

    def renew_outbound_leases(self, entry_ids: Sequence[int], until: int) -> None:
        if not entry_ids:
            return
        with self._write() as conn:
            conn.execute(f"UPDATE outbound SET lease_until = ? WHERE id IN ({','.join('?' * len(entry_ids))})",
                         (until, *entry_ids))

    def record_outbound_attempt(self, entry_id: int, results: Sequence[RecipientResult], next_attempt: int,
                                last_reply: str, delay_notified: bool = False) -> bool:
        [gone] = self.record_outbound_attempts([(entry_id, results, next_attempt, last_reply, delay_notified)])
        if isinstance(gone, BaseException):
            raise gone
        return gone

    def record_outbound_attempts(self, attempts: Sequence[tuple]) -> list[bool | BaseException]:
        """Several ``record_outbound_attempt`` calls in one transaction (one fsync): the queue's group commit."""
        out: list[bool | BaseException] = []
        with self._write() as conn:
            for entry_id, results, next_attempt, last_reply, delay_notified in attempts:
                conn.execute("SAVEPOINT attempt")
                try:
                    out.append(self._record(conn, entry_id, results, next_attempt, last_reply, delay_notified))
                except sqlite3.Error as exc:
                    conn.execute("ROLLBACK TO attempt")
                    out.append(StoreError(f"cannot record the attempt: {exc}"))
                conn.execute("RELEASE attempt")
        return out

    def _record(self, conn: sqlite3.Connection, entry_id: int, results: Sequence[RecipientResult],
                next_attempt: int, last_reply: str, delay_notified: bool) -> bool:
        conn.executemany(
            "UPDATE outbound_rcpt SET status = ?, last_reply = ? WHERE entry_id = ? AND address = ?"
            " AND status = 'pending'", [(r.status, r.reply, entry_id, r.address) for r in results])
        conn.execute("UPDATE outbound SET attempts = attempts + 1, last_reply = ?, next_attempt = ?,"
                     " lease_until = 0, delay_notified = MAX(delay_notified, ?) WHERE id = ?",
                     (last_reply, next_attempt, int(delay_notified), entry_id))
        left = conn.execute("SELECT 1 FROM outbound_rcpt WHERE entry_id = ? AND status = 'pending' LIMIT 1",
                            (entry_id,)).fetchone()
        if left is None:
            self._drop_outbound(conn, "id = ?", (entry_id,))
        return left is None

    def _drop_outbound(self, conn: sqlite3.Connection, where: str, args: Sequence[Any]) -> int:
        rows = conn.execute(f"DELETE FROM outbound WHERE {where} RETURNING blob_id", args).fetchall()
        for (blob_id,) in rows:
            conn.execute("UPDATE blobs SET refcount = refcount - 1 WHERE id = ?", (blob_id,))
        return len(rows)

    def get_outbound(self, queue_id: str) -> list[QueuedEntry]:
        conn = self._read()
        conn.execute("BEGIN")
        try:
            return self._entries(conn, "o.queue_id = ?", (queue_id,), "ORDER BY o.domain")
        finally:
            conn.execute("COMMIT")

    def set_outbound_held(self, queue_id: str | None, held: bool) -> int:
        with self._write() as conn:
            where, args = ("queue_id = ?", (queue_id,)) if queue_id else ("1", ())
            return conn.execute(f"UPDATE outbound SET held = ? WHERE {where} AND held != ?",
                                (int(held), *args, int(held))).rowcount

    def retry_outbound(self, queue_id: str | None, now: int) -> int:
        with self._write() as conn:
            where, args = ("queue_id = ?", (queue_id,)) if queue_id else ("1", ())
            return conn.execute(f"UPDATE outbound SET next_attempt = ? WHERE {where}", (now, *args)).rowcount

    def delete_outbound(self, queue_id: str) -> int:
        with self._write() as conn:
            return self._drop_outbound(conn, "queue_id = ?", (queue_id,))

    # -- maintenance -----------------------------------------------------------
    def collect_garbage(self) -> int:
        """Delete unreferenced blobs, rows and files together, under the write lock
        (see blobs.py for why that ordering keeps concurrent deliveries safe)."""
        with self._write() as conn:
            rows = conn.execute(f"DELETE FROM blobs WHERE refcount <= 0 RETURNING {_BLOB_NAME}").fetchall()
            for (name,) in rows:
                self.blobs.remove(name)
        return len(rows)

    def sweep_orphans(self) -> int:
        """Remove blob files that no row names (a crash between link and commit)."""
        with self._write() as conn:
            known = {r[0] for r in conn.execute(f"SELECT {_BLOB_NAME} FROM blobs")}
            orphans = [name for name in self.blobs.all_names() if name not in known]
            for name in orphans:
                self.blobs.remove(name)
        return len(orphans)


    # -- dmarc -------------------------------------------------------------------
    def add_dmarc_evaluation(self, e: DmarcEvaluation) -> None:
        with self._write(durable=False) as conn:  # report bookkeeping, not mail
            conn.execute(
                f"INSERT INTO dmarc_evaluations ({_DMARC_COLUMNS}) VALUES ({', '.join('?' * 15)})",
                (e.received, e.source_ip, e.header_from, e.envelope_from, e.policy_domain, e.policy, e.disposition,
                 e.result, int(e.dkim_aligned), int(e.spf_aligned), e.spf_domain, e.spf_result,
                 json.dumps([list(d) for d in e.dkim]), e.override, ",".join(e.rua)))

    def dmarc_evaluations(self, policy_domain: str | None, since: int, until: int) -> list[DmarcEvaluation]:
        where, args = "received >= ? AND received < ?", [since, until]
        if policy_domain is not None:
            where += " AND policy_domain = ?"
            args.append(policy_domain)
        rows = self._read().execute(
            f"SELECT id, {_DMARC_COLUMNS} FROM dmarc_evaluations WHERE {where} ORDER BY id", args)
        return [DmarcEvaluation(*r[1:9], bool(r[9]), bool(r[10]), r[11], r[12],
                                tuple(tuple(d) for d in json.loads(r[13])), r[14],
                                tuple(u for u in r[15].split(",") if u), r[0]) for r in rows]

    def delete_dmarc_evaluations(self, before: int) -> int:
        with self._write() as conn:
            return conn.execute("DELETE FROM dmarc_evaluations WHERE received < ?", (before,)).rowcount

    # -- spam --------------------------------------------------------------------
    def spam_counts(self, account_ids: Sequence[int], tokens: Sequence[str]) -> dict[int, SpamCounts]:
        conn = self._read()
        wanted = list(dict.fromkeys(tokens))
        out: dict[int, SpamCounts] = {}
        for account_id in dict.fromkeys(account_ids):
            row = conn.execute("SELECT spam, ham FROM spam_totals WHERE account_id = ?", (account_id,)).fetchone()
            found: dict[str, tuple[int, int]] = {}
            if row is not None:
                for i in range(0, len(wanted), _SPAM_BATCH):
                    chunk = wanted[i:i + _SPAM_BATCH]
                    found.update((t, (sp, hm)) for t, sp, hm in conn.execute(
                        f"SELECT token, spam, ham FROM spam_tokens WHERE account_id = ? AND token IN "
                        f"({', '.join('?' * len(chunk))})", (account_id, *chunk)))
            out[account_id] = SpamCounts(row[0] if row else 0, row[1] if row else 0, found)
        return out

    def spam_evidence(self, account_ids: Sequence[int], tokens: Sequence[str],
                      sender: str) -> tuple[dict[int, SpamCounts], dict[int, tuple[int, int]]]:
        counts = self.spam_counts((0, *account_ids), tokens)
        reputations = {a: self.spam_reputation(a, sender) for a in account_ids} if sender else {}
        return counts, reputations

    def spam_learn(self, account_id: int, blob_id: int, tokens: Sequence[str], spam: bool,
                   now: int, sender: str = "") -> bool:
        unique = list(dict.fromkeys(tokens))
        with self._write() as conn:
            row = conn.execute("SELECT spam FROM spam_trained WHERE account_id = ? AND blob_id = ?",
                               (account_id, blob_id)).fetchone()
            if row is not None and bool(row[0]) == spam:
                return False
            for model in dict.fromkeys((account_id, 0)):
                if row is not None:
                    _spam_count(conn, model, unique, not spam, -1)
                _spam_count(conn, model, unique, spam, +1)
            conn.execute("INSERT OR REPLACE INTO spam_trained VALUES (?, ?, ?, ?)", (account_id, blob_id, int(spam), now))
            if sender:
                _reputation(conn, account_id, sender, spam, now, undo=row is not None)
        return True

    def spam_reputation(self, account_id: int, sender: str) -> tuple[int, int]:
        row = self._read().execute("SELECT spam, ham FROM spam_reputation WHERE account_id = ? AND sender = ?",
                                   (account_id, sender.lower())).fetchone()
        return (row[0], row[1]) if row else (0, 0)

    def spam_record_verdict(self, account_ids: Sequence[int], sender: str, spam: bool, now: int) -> None:
        self.spam_record_verdicts([(account_ids, sender, spam, now)])

    def spam_record_verdicts(self, verdicts: Sequence[tuple[Sequence[int], str, bool, int]]) -> list[None]:
        """Many verdicts in one transaction (the store group-commits them)."""
        with self._write(durable=False) as conn:  # filter statistics, not mail
            for account_ids, sender, spam, now in verdicts:
                for account_id in dict.fromkeys(account_ids):
                    _reputation(conn, account_id, sender, spam, now)
        return [None] * len(verdicts)

    def greylist_touch(self, triplet: str, now: int, restart_before: int = 0) -> tuple[int, int]:
        with self._write() as conn:
            conn.execute("INSERT INTO greylist (triplet, first_seen, passed, updated) VALUES (?, ?, 0, ?) "
                         "ON CONFLICT (triplet) DO UPDATE SET updated = excluded.updated, first_seen = "
                         "CASE WHEN passed = 0 AND first_seen < ? THEN excluded.first_seen ELSE first_seen END",
                         (triplet, now, now, restart_before))
            first, passed = conn.execute("SELECT first_seen, passed FROM greylist WHERE triplet = ?",
                                         (triplet,)).fetchone()
        return first, passed

    def greylist_pass(self, triplet: str, now: int) -> None:
        with self._write() as conn:
            conn.execute("UPDATE greylist SET passed = ?, updated = ? WHERE triplet = ?", (now, now, triplet))

    def greylist_expire(self, before: int) -> int:
        with self._write() as conn:
            return conn.execute("DELETE FROM greylist WHERE updated < ?", (before,)).rowcount

    # -- outbound TLS policy --------------------------------------------------------
    def mta_sts_cached(self, domain: str, now: int) -> tuple[str, str, int] | None:
        row = self._read().execute("SELECT policy_id, policy, expires FROM mta_sts_policies "
                                   "WHERE domain = ? AND expires > ?", (domain, now)).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def mta_sts_cache(self, domain: str, policy_id: str, policy: str, expires: int) -> None:
        with self._write() as conn:
            conn.execute("INSERT INTO mta_sts_policies (domain, policy_id, policy, expires) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT (domain) DO UPDATE SET policy_id = excluded.policy_id, "
                         "policy = excluded.policy, expires = excluded.expires",
                         (domain, policy_id, policy, expires))

    # -- imap --------------------------------------------------------------------
    def select_snapshot(self, mailbox_id: int) -> MailboxSnapshot:
        conn = self._read()
        conn.execute("BEGIN")  # one snapshot: no delivery falls between the UIDs and the counters
        try:
            mb = conn.execute("SELECT uidvalidity, uidnext, highestmodseq FROM mailboxes WHERE id = ?",
                              (mailbox_id,)).fetchone()
            if mb is None:
                raise NotFound("no such mailbox")
            uids = [r[0] for r in conn.execute("SELECT uid FROM messages WHERE mailbox_id = ? ORDER BY uid",
                                               (mailbox_id,))]
            unseen = conn.execute("SELECT MIN(uid) FROM messages WHERE mailbox_id = ? AND (flags & 1) = 0",
                                  (mailbox_id,)).fetchone()[0]
            keywords: set[str] = set()
            for (text,) in conn.execute("SELECT DISTINCT keywords FROM messages WHERE mailbox_id = ?"
                                        " AND keywords != ''", (mailbox_id,)):
                keywords.update(text.split())
        finally:
            conn.execute("COMMIT")
        return MailboxSnapshot(uids, mb[0], mb[1], mb[2], unseen, frozenset(keywords))

    def messages_by_uid(self, mailbox_id: int, uids: Sequence[int]) -> list[Message]:
        found: list[Message] = []
        conn = self._read()
        for chunk in self._uid_chunks(sorted(uids)):
            marks = ",".join("?" * len(chunk))
            found += map(_message, conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE mailbox_id = ? AND uid IN ({marks}) ORDER BY uid",
                (mailbox_id, *chunk)))
        return found

    def mailbox_changes(self, mailbox_id: int, modseq: int) -> tuple[int, list[Message], list[int]]:
        conn = self._read()
        conn.execute("BEGIN")
        try:
            row = conn.execute("SELECT highestmodseq FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
            if row is None:
                raise NotFound("no such mailbox")
            changed, vanished = _changed_and_vanished(conn, mailbox_id, modseq)
        finally:
            conn.execute("COMMIT")
        return row[0], changed, vanished

    def uids_with_subject(self, mailbox_id: int, text: str) -> list[int] | None:
        if not text.isascii():
            return None  # LIKE folds ASCII case only: it could miss a match
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        # The column holds the first 1000 characters, and non-ASCII text may fold to ASCII:
        # such subjects stay candidates.
        rows = self._read().execute(
            "SELECT m.uid FROM messages m JOIN blobs b ON b.id = m.blob_id WHERE m.mailbox_id = ?"
            " AND (b.subject LIKE ? ESCAPE '\\' OR length(b.subject) >= 1000"
            " OR length(b.subject) != length(CAST(b.subject AS BLOB))) ORDER BY m.uid",
            (mailbox_id, pattern))
        return [r[0] for r in rows]

    def messages_with_parsed(self, mailbox_id: int, uids: Sequence[int],
                             keys: Sequence[str] | None = None) -> list[tuple[Message, dict]]:
        found: list[tuple[Message, dict]] = []
        conn = self._read()
        columns = ", ".join("m." + name.strip() for name in _MESSAGE_COLUMNS.split(","))
        if keys is None:
            wanted = "b.parsed"
        else:  # only these top-level members: decoding a whole cached parse is the cost
            if not all(key.isalnum() for key in keys):
                raise StoreError("invalid parse cache key")
            # json_extract keeps the JSON subtype of arrays and objects, so json_object nests
            # them as JSON and quotes strings: one small document to decode.
            wanted = "json_object(" + ", ".join(f"'{key}', json_extract(b.parsed, '$.{key}')"
                                                for key in keys) + ")"
        for chunk in self._uid_chunks(sorted(uids)):
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT {columns}, {wanted} FROM messages m JOIN blobs b ON b.id = m.blob_id"
                f" WHERE m.mailbox_id = ? AND m.uid IN ({marks}) ORDER BY m.uid", (mailbox_id, *chunk))
            found += [(_message(row[:-1]), json.loads(row[-1])) for row in rows]
        return found

    def get_metadata(self, account_id: int, mailbox_id: int, prefixes: Sequence[str],
                     depth: int | None) -> list[tuple[str, bytes]]:
        rows = self._read().execute("SELECT entry, value FROM imap_metadata WHERE account_id = ?"
                                    " AND mailbox_id = ? ORDER BY entry", (account_id, mailbox_id)).fetchall()
        found = []
        for entry, value in rows:
            for prefix in prefixes:
                below = entry[len(prefix):]
                if entry == prefix or (depth != 0 and entry.startswith(prefix + "/")
                                       and (depth is None or below.count("/") <= depth)):
                    found.append((entry, bytes(value)))
                    break
        return found

    def set_metadata(self, account_id: int, mailbox_id: int,
                     entries: Sequence[tuple[str, bytes | None]], max_entries: int) -> None:
        with self._write() as conn:
            for entry, value in entries:
                if value is None:
                    conn.execute("DELETE FROM imap_metadata WHERE account_id = ? AND mailbox_id = ? AND entry = ?",
                                 (account_id, mailbox_id, entry))
                else:
                    conn.execute("INSERT OR REPLACE INTO imap_metadata VALUES (?, ?, ?, ?)",
                                 (account_id, mailbox_id, entry, value))
            count = conn.execute("SELECT COUNT(*) FROM imap_metadata WHERE account_id = ?", (account_id,)).fetchone()[0]
            if count > max_entries:
                raise QuotaExceeded(f"more than {max_entries} metadata entries")

    def parsed_many(self, blob_ids: Sequence[int]) -> dict[int, dict]:
        found: dict[int, dict] = {}
        conn = self._read()
        for chunk in self._uid_chunks(sorted(set(blob_ids))):
            marks = ",".join("?" * len(chunk))
            for blob_id, text in conn.execute(f"SELECT id, parsed FROM blobs WHERE id IN ({marks})", tuple(chunk)):
                found[blob_id] = json.loads(text)
        return found

    # -- sieve -------------------------------------------------------------------
    def sieve_list(self, account_id: int) -> list[SieveScript]:
        rows = self._read().execute("SELECT name, length(CAST(content AS BLOB)), active FROM sieve_scripts "
                                    "WHERE account_id = ? ORDER BY name", (account_id,))
        return [SieveScript(name, size, bool(active)) for name, size, active in rows]

    def sieve_get(self, account_id: int, name: str) -> str | None:
        row = self._read().execute("SELECT content FROM sieve_scripts WHERE account_id = ? AND name = ?",
                                   (account_id, name)).fetchone()
        return row[0] if row else None

    def sieve_put(self, account_id: int, name: str, content: str) -> None:
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
                raise NotFound(f"no account with id {account_id}")
            conn.execute("INSERT INTO sieve_scripts (account_id, name, content, updated) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT (account_id, name) DO UPDATE SET content = excluded.content, "
                         "updated = excluded.updated", (account_id, name, content, int(time.time())))
        self._sieve_changed(account_id)

    def sieve_delete(self, account_id: int, name: str) -> None:
        with self._write() as conn:
            row = conn.execute("SELECT active FROM sieve_scripts WHERE account_id = ? AND name = ?",
                               (account_id, name)).fetchone()
            if row is None:
                raise NotFound(f"no script {name!r}")
            if row[0]:
                raise StoreError(f"script {name!r} is active")
            conn.execute("DELETE FROM sieve_scripts WHERE account_id = ? AND name = ?", (account_id, name))
        self._sieve_changed(account_id)

    def sieve_rename(self, account_id: int, old: str, new: str) -> None:
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM sieve_scripts WHERE account_id = ? AND name = ?",
                            (account_id, old)).fetchone() is None:
                raise NotFound(f"no script {old!r}")
            if old != new and conn.execute("SELECT 1 FROM sieve_scripts WHERE account_id = ? AND name = ?",
                                           (account_id, new)).fetchone() is not None:
                raise AlreadyExists(f"script {new!r} exists")
            conn.execute("UPDATE sieve_scripts SET name = ?, updated = ? WHERE account_id = ? AND name = ?",
                         (new, int(time.time()), account_id, old))
        self._sieve_changed(account_id)

    def sieve_activate(self, account_id: int, name: str | None) -> None:
        with self._write() as conn:
            if name is not None and conn.execute("SELECT 1 FROM sieve_scripts WHERE account_id = ? AND name = ?",
                                                 (account_id, name)).fetchone() is None:
                raise NotFound(f"no script {name!r}")
            conn.execute("UPDATE sieve_scripts SET active = 0 WHERE account_id = ? AND active = 1", (account_id,))
            if name is not None:
                conn.execute("UPDATE sieve_scripts SET active = 1 WHERE account_id = ? AND name = ?",
                             (account_id, name))
        self._sieve_changed(account_id)

    def _sieve_changed(self, account_id: int) -> None:
        """Tell caches of the active script (delivery's, in every process) to look again."""
        self.feed.publish(Change(account_id, 0, 0, frozenset({"sieve"})))

    def sieve_active(self, account_id: int) -> tuple[str, str] | None:
        row = self._read().execute("SELECT name, content FROM sieve_scripts WHERE account_id = ? AND active = 1",
                                   (account_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def sieve_vacation_check(self, account_id: int, handle: str, now: int, until: int) -> bool:
        with self._write() as conn:
            row = conn.execute("SELECT until FROM sieve_vacation_replies WHERE account_id = ? AND handle = ?",
                               (account_id, handle)).fetchone()
            if row is not None and row[0] > now:
                return False
            conn.execute("INSERT INTO sieve_vacation_replies (account_id, handle, until) VALUES (?, ?, ?) "
                         "ON CONFLICT (account_id, handle) DO UPDATE SET until = excluded.until",
                         (account_id, handle, until))
            conn.execute("DELETE FROM sieve_vacation_replies WHERE until <= ?", (now,))
            return True

    # -- admin -------------------------------------------------------------------
    def set_admin(self, account_id: int, admin: bool) -> None:
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
                raise NotFound(f"no account with id {account_id}")
            if admin:
                conn.execute("INSERT OR IGNORE INTO admin_accounts VALUES (?, ?)", (account_id, int(time.time())))
            else:
                conn.execute("DELETE FROM admin_accounts WHERE account_id = ?", (account_id,))

    def list_admins(self) -> list[int]:
        return [r[0] for r in self._read().execute("SELECT account_id FROM admin_accounts ORDER BY account_id")]

    _TOKEN = "SELECT id, name, account_id, created, last_used FROM api_tokens"

    def add_api_token(self, name: str, token_hash: str, account_id: int) -> ApiToken:
        now = int(time.time())
        try:
            with self._write() as conn:
                cur = conn.execute("INSERT INTO api_tokens(name, token_hash, account_id, created) VALUES (?, ?, ?, ?)",
                                   (name, token_hash, account_id, now))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"API token {name} exists already") from None
        return ApiToken(cur.lastrowid, name, account_id, now)

    def list_api_tokens(self) -> list[ApiToken]:
        return [ApiToken(*r) for r in self._read().execute(self._TOKEN + " ORDER BY name")]

    def delete_api_token(self, name: str) -> int:
        with self._write() as conn:
            return conn.execute("DELETE FROM api_tokens WHERE name = ?", (name,)).rowcount

    def find_api_token(self, token_hash: str, now: int) -> ApiToken | None:
        row = self._read().execute(self._TOKEN + " WHERE token_hash = ?", (token_hash,)).fetchone()
        if row is None:
            return None
        if now - row[4] > 60:  # note the use, at most once a minute per token: reads stay reads
            with self._write() as conn:
                conn.execute("UPDATE api_tokens SET last_used = ? WHERE id = ?", (now, row[0]))
        return ApiToken(*row)


def _apply_flags(m: Message, mode: FlagMode, flags: Flag, keywords: frozenset[str]) -> tuple[Flag, frozenset[str]]:
    if mode is FlagMode.REPLACE:
        return flags, keywords
    if mode is FlagMode.ADD:
        return m.flags | flags, m.keywords | keywords
    return m.flags & ~flags, m.keywords - keywords


def _split_sql(script: str) -> list[str]:
    statements, current = [], []
    for line in script.splitlines():
        if line.strip().startswith("--"):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(current))
            current = []
    return [s for s in statements if s.strip()]


# -- spam --
_SPAM_BATCH = 500  # tokens per IN (...) query: well under SQLite's bound on parameters


def _spam_count(conn: sqlite3.Connection, model: int, tokens: list[str], spam: bool, delta: int) -> None:
    """Add ``delta`` to the spam (or ham) count of a model and of each of ``tokens`` in it."""
    column = "spam" if spam else "ham"
    conn.execute(f"INSERT INTO spam_totals (account_id, {column}) VALUES (?, max(?, 0)) "
                 f"ON CONFLICT (account_id) DO UPDATE SET {column} = max({column} + ?, 0)", (model, delta, delta))
    conn.executemany(
        f"INSERT INTO spam_tokens (account_id, token, {column}) VALUES (?, ?, max(?, 0)) "
        f"ON CONFLICT (account_id, token) DO UPDATE SET {column} = max({column} + ?, 0)",
        [(model, t, delta, delta) for t in tokens])
    if delta < 0:
        conn.executemany("DELETE FROM spam_tokens WHERE account_id = ? AND token = ? AND spam = 0 AND ham = 0",
                         [(model, t) for t in tokens])


def _reputation(conn: sqlite3.Connection, account_id: int, sender: str, spam: bool, now: int,
                undo: bool = False) -> None:
    """One more spam (or ham) mark for ``sender``; ``undo`` also takes back one of the other kind."""
    column, other = ("spam", "ham") if spam else ("ham", "spam")
    conn.execute(f"INSERT INTO spam_reputation (account_id, sender, {column}, updated) VALUES (?, ?, 1, ?) "
                 f"ON CONFLICT (account_id, sender) DO UPDATE SET {column} = {column} + 1, updated = excluded.updated",
                 (account_id, sender.lower(), now))
    if undo:
        conn.execute(f"UPDATE spam_reputation SET {other} = max({other} - 1, 0) WHERE account_id = ? AND sender = ?",
                     (account_id, sender.lower()))


# -- the asynchronous contract -------------------------------------------------

def _offloaded(method: Callable[..., T]) -> Callable[..., Any]:
    """An async method that runs the synchronous one in the store's executor."""

    @functools.wraps(method)
    async def run(self: "SqliteStore", *args: Any, **kwargs: Any) -> T:
        return await self._run(method, self.db, *args, **kwargs)

    return run


class _GroupCommit(Generic[J, R]):
    """Requests that arrive together share one transaction (and its fsyncs).

    A request waits only while a commit is already running; everything that
    arrives in the meantime goes into the next one. ``commit`` takes a batch
    and returns one result per request, an exception for a request that
    failed alone. Used for deliveries and for the outbound queue's attempt
    records alike.
    """

    def __init__(self, commit: Callable[[list[J]], Awaitable[list[R | BaseException]]]) -> None:
        self._commit = commit
        self._pending: list[tuple[J, asyncio.Future]] = []
        self._running = False

    async def submit(self, item: J) -> R:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if not self._running:
            self._running = True
            asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                try:
                    results = await self._commit([item for item, _ in batch])
                except BaseException as exc:  # the whole commit failed: every caller learns it
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result if isinstance(result, StoreError) else StoreError(str(result)))
                    else:
                        future.set_result(result)
        finally:
            self._running = False


# Published when a domain is added or removed: every process drops its cached domains.
DOMAINS_CHANGED = Change(0, 0, 0, frozenset({"domains"}))


class SqliteStore(Store):
    """The embedded backend of the store contract."""

    def __init__(self, data_dir: Path, executor: Executor | None = None, workers: int = 8) -> None:
        self.changes = ChangeFeed()
        self.db = SqliteDb(Path(data_dir), self.changes)
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=workers, thread_name_prefix="store")
        # Staging and committing deliveries wait on fsync for milliseconds; they
        # get threads of their own, so quick reads (recipient lookups at RCPT,
        # filter state) never queue behind them.
        self._durable = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="store-fsync")
        self._commits: _GroupCommit[_DeliveryJob, list[DeliveryOutcome]] = _GroupCommit(
            lambda jobs: self._run_durable(SqliteDb.commit_deliveries, self.db, jobs))
        self._verdicts: _GroupCommit[tuple, None] = _GroupCommit(
            lambda verdicts: self._run(SqliteDb.spam_record_verdicts, self.db, verdicts))
        self._domains: FeedCache[str, Domain | None] = FeedCache("domains", lambda change: None, size=10_000)
        self._attempts: _GroupCommit[tuple, bool] = _GroupCommit(
            lambda attempts: self._run_durable(SqliteDb.record_outbound_attempts, self.db, attempts))

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def _run_durable(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._durable, functools.partial(fn, *args))

    async def open(self) -> None:
        await self._run(self.db.open)
        self._domains.watch(self.changes)

    async def get_domain(self, name: str) -> Domain | None:
        # Asked at every RCPT, changed almost never: kept in memory (see store/cache.py).
        return await self._domains.get(name, lambda: self._run(self.db.get_domain, name))

    async def close(self) -> None:
        await self._run(self.db.close)
        self._durable.shutdown(wait=True)
        if self._own_executor:
            self._executor.shutdown(wait=True)

    async def deliver(self, source: bytes | Path, targets: Sequence[DeliveryTarget],
                      outbound: OutboundMessage | None = None) -> list[DeliveryOutcome]:
        job = await self._run_durable(self.db.prepare_delivery, source, targets, outbound)
        return await self._commits.submit(job)

    async def append(self, account_id: int, mailbox: str, raw: bytes, flags: Flag = Flag(0),
                     keywords: frozenset[str] = frozenset(), internaldate: int | None = None) -> Delivered:
        [outcome] = await self.deliver(raw, [DeliveryTarget(account_id, mailbox, flags, keywords, internaldate)])
        if isinstance(outcome, Delivered):
            return outcome
        if outcome.quota:
            raise QuotaExceeded(outcome.reason)
        raise NotFound(outcome.reason)

    async def iter_messages(self, mailbox_id: int, batch: int = 1000) -> AsyncIterator[list[Message]]:
        first = 1
        while True:
            chunk = await self._run(self.db.list_messages, mailbox_id, first, None, batch)
            if not chunk:
                return
            yield chunk
            first = chunk[-1].uid + 1

    add_domain = _offloaded(SqliteDb.add_domain)
    list_domains = _offloaded(SqliteDb.list_domains)
    delete_domain = _offloaded(SqliteDb.delete_domain)
    add_account = _offloaded(SqliteDb.add_account)
    get_account = _offloaded(SqliteDb.get_account)
    get_account_by_id = _offloaded(SqliteDb.get_account_by_id)
    list_accounts = _offloaded(SqliteDb.list_accounts)
    delete_account = _offloaded(SqliteDb.delete_account)
    set_password = _offloaded(SqliteDb.set_password)
    set_quota = _offloaded(SqliteDb.set_quota)
    add_app_password = _offloaded(SqliteDb.add_app_password)
    list_app_passwords = _offloaded(SqliteDb.list_app_passwords)
    delete_app_password = _offloaded(SqliteDb.delete_app_password)
    add_alias = _offloaded(SqliteDb.add_alias)
    delete_alias = _offloaded(SqliteDb.delete_alias)
    list_aliases = _offloaded(SqliteDb.list_aliases)
    alias_targets = _offloaded(SqliteDb.alias_targets)
    list_mailboxes = _offloaded(SqliteDb.list_mailboxes)
    get_mailbox = _offloaded(SqliteDb.get_mailbox)
    get_mailbox_by_id = _offloaded(SqliteDb.get_mailbox_by_id)
    create_mailbox = _offloaded(SqliteDb.create_mailbox)
    delete_mailbox = _offloaded(SqliteDb.delete_mailbox)
    rename_mailbox = _offloaded(SqliteDb.rename_mailbox)
    subscribe = _offloaded(SqliteDb.subscribe)
    unsubscribe = _offloaded(SqliteDb.unsubscribe)
    list_subscriptions = _offloaded(SqliteDb.list_subscriptions)
    mailbox_status = _offloaded(SqliteDb.mailbox_status)
    claim_recent = _offloaded(SqliteDb.claim_recent)
    list_messages = _offloaded(SqliteDb.list_messages)
    read_blob = _offloaded(SqliteDb.read_blob)
    blob_path = _offloaded(SqliteDb.blob_path)
    parsed = _offloaded(SqliteDb.parsed)
    store_flags = _offloaded(SqliteDb.store_flags)
    expunge = _offloaded(SqliteDb.expunge)
    remove_messages = _offloaded(SqliteDb.remove_messages)
    copy_messages = _offloaded(SqliteDb.copy_messages)
    move_messages = _offloaded(SqliteDb.move_messages)
    changes_since = _offloaded(SqliteDb.changes_since)
    list_outbound = _offloaded(SqliteDb.list_outbound)
    collect_garbage = _offloaded(SqliteDb.collect_garbage)
    async def record_outbound_attempt(self, entry_id: int, results: Sequence[RecipientResult],
                                      next_attempt: int, last_reply: str, delay_notified: bool = False) -> bool:
        return await self._attempts.submit((entry_id, tuple(results), next_attempt, last_reply, delay_notified))

    # -- outbound queue --
    due_outbound = _offloaded(SqliteDb.due_outbound)
    lease_outbound = _offloaded(SqliteDb.lease_outbound)
    renew_outbound_leases = _offloaded(SqliteDb.renew_outbound_leases)
    get_outbound = _offloaded(SqliteDb.get_outbound)
    set_outbound_held = _offloaded(SqliteDb.set_outbound_held)
    retry_outbound = _offloaded(SqliteDb.retry_outbound)
    delete_outbound = _offloaded(SqliteDb.delete_outbound)
    sweep_orphans = _offloaded(SqliteDb.sweep_orphans)
    # -- dmarc --
    add_dmarc_evaluation = _offloaded(SqliteDb.add_dmarc_evaluation)
    dmarc_evaluations = _offloaded(SqliteDb.dmarc_evaluations)
    delete_dmarc_evaluations = _offloaded(SqliteDb.delete_dmarc_evaluations)
    # -- spam --
    spam_counts = _offloaded(SqliteDb.spam_counts)
    spam_evidence = _offloaded(SqliteDb.spam_evidence)
    spam_learn = _offloaded(SqliteDb.spam_learn)
    spam_reputation = _offloaded(SqliteDb.spam_reputation)

    async def spam_record_verdict(self, account_ids: Sequence[int], sender: str, spam: bool, now: int) -> None:
        await self._verdicts.submit((tuple(account_ids), sender, spam, now))

    greylist_touch = _offloaded(SqliteDb.greylist_touch)
    greylist_pass = _offloaded(SqliteDb.greylist_pass)
    greylist_expire = _offloaded(SqliteDb.greylist_expire)
    mta_sts_cached = _offloaded(SqliteDb.mta_sts_cached)
    mta_sts_cache = _offloaded(SqliteDb.mta_sts_cache)
    # -- imap --
    select_snapshot = _offloaded(SqliteDb.select_snapshot)
    messages_by_uid = _offloaded(SqliteDb.messages_by_uid)
    mailbox_changes = _offloaded(SqliteDb.mailbox_changes)
    parsed_many = _offloaded(SqliteDb.parsed_many)
    get_metadata = _offloaded(SqliteDb.get_metadata)
    set_metadata = _offloaded(SqliteDb.set_metadata)
    messages_with_parsed = _offloaded(SqliteDb.messages_with_parsed)
    uids_with_subject = _offloaded(SqliteDb.uids_with_subject)
    # -- admin --
    set_admin = _offloaded(SqliteDb.set_admin)
    sieve_list = _offloaded(SqliteDb.sieve_list)
    sieve_get = _offloaded(SqliteDb.sieve_get)
    sieve_put = _offloaded(SqliteDb.sieve_put)
    sieve_delete = _offloaded(SqliteDb.sieve_delete)
    sieve_rename = _offloaded(SqliteDb.sieve_rename)
    sieve_activate = _offloaded(SqliteDb.sieve_activate)
    sieve_active = _offloaded(SqliteDb.sieve_active)
    sieve_vacation_check = _offloaded(SqliteDb.sieve_vacation_check)
    list_admins = _offloaded(SqliteDb.list_admins)
    add_api_token = _offloaded(SqliteDb.add_api_token)
    list_api_tokens = _offloaded(SqliteDb.list_api_tokens)
    delete_api_token = _offloaded(SqliteDb.delete_api_token)
    find_api_token = _offloaded(SqliteDb.find_api_token)
