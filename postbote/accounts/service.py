"""Accounts as the servers see them: who may log in, and as whom they may send.

Protocol-free: SMTP AUTH, IMAP LOGIN/AUTHENTICATE and POP3 USER/PASS all call
``authenticate`` and map its result to their own words.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from postbote.config import LimitSettings
from postbote import metrics
from postbote.mail.address import AddressError, parse_address
from postbote.store import Account, Store

from .passwords import hash_password, verify_password
from .throttle import AuthEvent, AuthThrottle, decode_event, encode_event

if TYPE_CHECKING:
    from postbote.store.feedbus import FeedBus

log = logging.getLogger("postbote.auth")


@dataclass(frozen=True)
class AuthOk:
    account: Account
    app_password: str | None = None  # the app password's name, if one was used


@dataclass(frozen=True)
class AuthFailed:
    reason: str
    locked: bool = False  # locked out: the adapter may say so (e.g. [LOGIN-DELAY])


AuthResult = AuthOk | AuthFailed


class AccountService:
    def __init__(self, store: Store, limits: LimitSettings) -> None:
        self.store = store
        self.limits = limits
        self.throttle = AuthThrottle(limits.auth_failures_per_ip, limits.auth_failures_per_account,
                                     limits.auth_lockout_seconds)
        # Tells the other worker processes of each login's outcome (see ``join``).
        self.share: Callable[[AuthEvent], None] | None = None

    def join(self, bus: "FeedBus") -> None:
        """Count the logins of every worker on ``bus``: each worker tells the others of
        its failures and successes, so the limits hold for the whole server, not N times."""
        bus.on("auth", self._heard)
        self.share = lambda ev: bus.send("auth", encode_event(ev))

    def _heard(self, payload: bytes) -> None:
        ev = decode_event(payload)
        if ev is not None:
            self.throttle.record(ev)

    def _record(self, ev: AuthEvent) -> None:
        self.throttle.record(ev)
        if self.share is not None:
            self.share(ev)  # before the failure delay, so the others know at once

    async def create(self, address: str, password: str, quota: int | None = None) -> Account:
        """Add an account; raises AddressError, PasswordPolicyError or a StoreError."""
        addr = str(parse_address(address))
        password_hash = await asyncio.to_thread(hash_password, password)
        return await self.store.add_account(addr, password_hash,
                                            self.limits.default_quota if quota is None else quota)

    async def authenticate(self, username: str, password: str, peer_ip: str) -> AuthResult:
        try:
            address = str(parse_address(username))
        except AddressError:
            address = None
        if self.throttle.locked_for(peer_ip, address) > 0:
            log.info("auth refused: locked out user=%s ip=%s", username, peer_ip)
            return AuthFailed("too many failures, try again later", locked=True)
        account = await self.store.get_account(address) if address else None
        result = await self._verify(account, password)
        if isinstance(result, AuthOk):
            self._record(AuthEvent(peer_ip, result.account.address, ok=True))
            return result
        delay = self.throttle.failure_delay(peer_ip, address)
        self._record(AuthEvent(peer_ip, address, ok=False))
        log.info("auth failed user=%s ip=%s", username, peer_ip)
        metrics.AUTH_FAILURES.inc()
        await asyncio.sleep(delay)
        return result

    async def _verify(self, account: Account | None, password: str) -> AuthResult:
        if account is None or account.disabled:
            await asyncio.to_thread(verify_password, None, password)  # same cost as a real check
            return AuthFailed("invalid credentials")
        if await asyncio.to_thread(verify_password, account.password_hash, password):
            return AuthOk(account)
        for app in await self.store.list_app_passwords(account.id):
            if await asyncio.to_thread(verify_password, app.password_hash, password):
                return AuthOk(account, app.name)
        return AuthFailed("invalid credentials")

    async def sender_addresses(self, account: Account) -> set[str]:
        """The addresses ``account`` may use as sender: its own and its aliases'."""
        addresses = {account.address}
        for alias in await self.store.list_aliases(account.address.rpartition("@")[2]):
            if alias.target == account.address and not alias.source.startswith("@"):
                addresses.add(alias.source)
        return addresses
