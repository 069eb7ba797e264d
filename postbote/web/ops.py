"""The administrative operations, validated once for the admin pages and the JSON API.

Each takes the raw text a form or a JSON body gave and raises ``InvalidInput``
naming the field and the fix; the pages show the message beside the form, the
API returns it as ``{"error": ..., "field": ...}`` with status 400.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from postbote.accounts.passwords import MIN_PASSWORD_LENGTH, generate_app_password, hash_password
from postbote.mail.address import AddressError, normalize_domain, parse_address
from postbote.store import Account, AlreadyExists, NotFound, StoreError

if TYPE_CHECKING:
    from postbote.app import App

MAX_FIELD = 1000
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_QUEUE_ID = re.compile(r"[A-Za-z0-9]{1,64}")
_APP_NAME = re.compile(r"[\w .@+-]{1,64}")


class InvalidInput(Exception):
    """Bad input from a form or the API; ``field`` names what to fix."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.field, self.message, self.status = field, message, status


def text(value: Any, field: str, required: bool = True) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidInput(field, f"{field} must be text")
    value = value.strip()
    if required and not value:
        raise InvalidInput(field, f"{field} is required")
    if len(value) > MAX_FIELD:
        raise InvalidInput(field, f"{field} is longer than {MAX_FIELD} characters")
    return value


def address(value: Any, field: str = "address") -> str:
    raw = text(value, field)
    try:
        return str(parse_address(raw))
    except AddressError as exc:
        raise InvalidInput(field, f"{field}: {exc}") from None


def domain(value: Any, field: str = "domain") -> str:
    raw = text(value, field)
    try:
        return normalize_domain(raw)
    except AddressError as exc:
        raise InvalidInput(field, f"{field}: {exc}") from None


def size(value: Any, field: str = "quota") -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raw = text(value, field)
    m = re.fullmatch(r"(\d{1,15})\s*([KMGT]?)i?B?", raw, re.IGNORECASE)
    if not m:
        raise InvalidInput(field, f"{field} must be a size like 500M or 2G (0: unlimited), got {raw!r}")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def password(value: Any, field: str = "password") -> str:
    raw = value if isinstance(value, str) else ""
    if len(raw) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(field, f"{field} must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(raw) > MAX_FIELD:
        raise InvalidInput(field, f"{field} is longer than {MAX_FIELD} characters")
    return raw


def queue_id(value: Any) -> str:
    raw = text(value, "queue_id")
    if not _QUEUE_ID.fullmatch(raw):
        raise InvalidInput("queue_id", f"queue_id must be letters and digits, got {raw!r}")
    return raw


@dataclass(frozen=True)
class AccountView:
    address: str
    quota: int
    used: int
    disabled: bool
    admin: bool
    aliases: tuple[str, ...]
    app_passwords: tuple[str, ...]

    def to_json(self) -> dict:
        return {"address": self.address, "quota": self.quota, "used": self.used, "disabled": self.disabled,
                "admin": self.admin, "aliases": list(self.aliases), "app_passwords": list(self.app_passwords)}


class Operations:
    def __init__(self, app: "App") -> None:
        self.app = app
        self.store = app.store

    # -- domains ---------------------------------------------------------------------
    async def domains(self) -> list[str]:
        return [d.name for d in await self.store.list_domains()]

    async def add_domain(self, name: Any) -> str:
        d = domain(name, "name")
        try:
            await self.store.add_domain(d)
        except AlreadyExists:
            raise InvalidInput("name", f"domain {d} exists already", 409) from None
        return d

    async def delete_domain(self, name: Any) -> None:
        d = domain(name, "name")
        try:
            await self.store.delete_domain(d)
        except NotFound:
            raise InvalidInput("name", f"no domain {d}", 404) from None
        except StoreError as exc:
            raise InvalidInput("name", str(exc), 409) from None

    async def known_domain(self, name: Any) -> str:
        d = domain(name, "domain")
        if await self.store.get_domain(d) is None:
            raise InvalidInput("domain", f"no domain {d}", 404)
        return d

    async def records(self, name: Any) -> list[str]:
        from postbote.mailauth.keys import load_keys
        from postbote.queue.records import dns_records

        d = await self.known_domain(name)
        keys = await asyncio.to_thread(load_keys, self.app.settings.data_path, d)
        return dns_records(d, self.app.settings.hostname, keys)

    async def check(self, name: Any) -> list:
        from postbote.dnscheck import check_domain

        d = await self.known_domain(name)
        return await check_domain(self.app.resolver, d, self.app.settings.hostname, self.app.settings.data_path)

    # -- accounts --------------------------------------------------------------------
    async def account(self, value: Any) -> Account:
        addr = address(value)
        account = await self.store.get_account(addr)
        if account is None:
            raise InvalidInput("address", f"no account {addr}", 404)
        return account

    async def accounts(self) -> list[Account]:
        return await self.store.list_accounts()

    async def view(self, value: Any) -> AccountView:
        account = await self.account(value)
        admins = await self.admin_ids()
        aliases = [a.source for a in await self.store.list_aliases(account.address.rpartition("@")[2])
                   if a.target == account.address]
        apps = [a.name for a in await self.store.list_app_passwords(account.id)]
        return AccountView(account.address, account.quota, account.used, account.disabled,
                           account.id in admins, tuple(aliases), tuple(apps))

    async def admin_ids(self) -> set[int]:
        ids = set(await self.store.list_admins())
        for addr in self.app.settings.admin.accounts:
            account = await self.store.get_account(str(parse_address(addr)))
            if account is not None:
                ids.add(account.id)
        return ids

    async def create_account(self, addr: Any, pw: Any, quota: Any = None) -> Account:
        a = address(addr)
        p = password(pw)
        q = None if quota in (None, "") else size(quota)
        if await self.store.get_domain(a.rpartition("@")[2]) is None:
            raise InvalidInput("address", f"no domain {a.rpartition('@')[2]}: add the domain first")
        try:
            return await self.app.accounts.create(a, p, q)
        except AlreadyExists:
            raise InvalidInput("address", f"account {a} exists already", 409) from None

    async def delete_account(self, addr: Any) -> None:
        account = await self.account(addr)
        await self.store.delete_account(account.address)

    async def set_password(self, addr: Any, pw: Any) -> None:
        account = await self.account(addr)
        hashed = await asyncio.to_thread(hash_password, password(pw))
        await self.store.set_password(account.address, hashed)

    async def set_quota(self, addr: Any, quota: Any) -> int:
        account = await self.account(addr)
        q = size(quota)
        await self.store.set_quota(account.address, q)
        return q

    async def add_alias(self, source: Any, target: Any) -> tuple[str, str]:
        raw = text(source, "source")
        if raw.startswith("@"):
            src = "@" + domain(raw[1:], "source")
        else:
            src = address(raw, "source")
        tgt = address(target, "target")
        if await self.store.get_domain(src.rpartition("@")[2]) is None:
            raise InvalidInput("source", f"no domain {src.rpartition('@')[2]}: aliases must be in our domains")
        try:
            await self.store.add_alias(src, tgt)
        except AlreadyExists:
            raise InvalidInput("source", f"alias {src} -> {tgt} exists already", 409) from None
        return src, tgt

    async def delete_alias(self, source: Any, target: Any = None) -> None:
        raw = text(source, "source")
        src = "@" + domain(raw[1:], "source") if raw.startswith("@") else address(raw, "source")
        tgt = address(target, "target") if target else None
        try:
            await self.store.delete_alias(src, tgt)
        except NotFound:
            raise InvalidInput("source", f"no alias {src}", 404) from None

    async def aliases(self) -> list:
        return await self.store.list_aliases()

    async def add_app_password(self, addr: Any, name: Any) -> str:
        account = await self.account(addr)
        n = text(name, "name")
        if not _APP_NAME.fullmatch(n):
            raise InvalidInput("name", "name must be 1-64 letters, digits, spaces or . @ + - _")
        secret = generate_app_password()
        hashed = await asyncio.to_thread(hash_password, secret)
        try:
            await self.store.add_app_password(account.id, n, hashed)
        except AlreadyExists:
            raise InvalidInput("name", f"app password {n} exists already", 409) from None
        return secret

    async def delete_app_password(self, addr: Any, name: Any) -> None:
        account = await self.account(addr)
        try:
            await self.store.delete_app_password(account.id, text(name, "name"))
        except NotFound:
            raise InvalidInput("name", f"no app password {name}", 404) from None

    # -- queue -----------------------------------------------------------------------
    async def queue(self) -> list:
        return await self.store.list_outbound()

    async def queue_entry(self, qid: Any) -> list:
        q = queue_id(qid)
        entries = await self.store.get_outbound(q)
        if not entries:
            raise InvalidInput("queue_id", f"no queued message {q}", 404)
        return entries

    async def queue_retry(self, qid: Any) -> int:
        await self.queue_entry(qid)
        return await self.store.retry_outbound(queue_id(qid), int(time.time()))

    async def queue_hold(self, qid: Any, held: bool) -> int:
        await self.queue_entry(qid)
        return await self.store.set_outbound_held(queue_id(qid), held)

    async def queue_delete(self, qid: Any) -> int:
        await self.queue_entry(qid)
        return await self.store.delete_outbound(queue_id(qid))


def queue_json(e: Any) -> dict:
    return {"queue_id": e.queue_id, "sender": e.sender, "domain": e.domain, "recipients": list(e.recipients),
            "created": e.created, "next_attempt": e.next_attempt, "attempts": e.attempts, "held": e.held,
            "last_reply": e.last_reply}
