"""Recipient resolution: which local mailboxes (and outside addresses) an address means.

The order, most specific first: an account of exactly that address; an alias
of exactly that address; the same two for the address without its ``+tag``
subaddress; the domain's catch-all alias (``@domain``). Aliases expand
recursively, each account gets one copy however many paths lead to it, and a
loop or a chain deeper than ``MAX_DEPTH`` ends the expansion.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from postbote.mail.address import Address, AddressError, parse_address
from postbote.store import Account, Store

MAX_DEPTH = 10


@dataclass(frozen=True)
class Resolved:
    accounts: tuple[Account, ...]
    remote: tuple[str, ...]  # outside addresses an alias forwards to


@dataclass(frozen=True)
class Unknown:
    """A local domain, but no account or alias takes the address."""

    address: str


@dataclass(frozen=True)
class NotLocal:
    """Not one of our domains: relaying, for authenticated senders only."""

    address: str


@dataclass
class _Expansion:
    accounts: dict[int, Account] = field(default_factory=dict)
    remote: dict[str, None] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)


async def is_local_domain(store: Store, domain: str) -> bool:
    return await store.get_domain(domain) is not None


async def resolve(store: Store, address: str) -> Resolved | Unknown | NotLocal:
    try:
        addr = parse_address(address)
    except AddressError:
        return Unknown(address)
    if not await is_local_domain(store, addr.domain):
        return NotLocal(str(addr))
    exp = _Expansion()
    if not await _expand(store, addr, exp, 0):
        return Unknown(str(addr))
    return Resolved(tuple(exp.accounts.values()), tuple(exp.remote))


async def _expand(store: Store, addr: Address, exp: _Expansion, depth: int) -> bool:
    """Add what ``addr`` means to ``exp``; False if it means nothing."""
    if depth > MAX_DEPTH or str(addr) in exp.seen:
        return True  # a loop: the address is known, it just adds nothing more
    exp.seen.add(str(addr))
    for candidate in dict.fromkeys((addr, addr.base)):
        account = await store.get_account(str(candidate))
        if account is not None:
            exp.accounts.setdefault(account.id, account)
            return True
        targets = await store.alias_targets(str(candidate))
        if targets:
            await _expand_targets(store, targets, exp, depth)
            return True
    catch_all = await store.alias_targets("@" + addr.domain)
    if catch_all:
        await _expand_targets(store, catch_all, exp, depth)
        return True
    return False


async def _expand_targets(store: Store, targets: list[str], exp: _Expansion, depth: int) -> None:
    for target in targets:
        try:
            t = parse_address(target)
        except AddressError:
            continue
        if await is_local_domain(store, t.domain):
            await _expand(store, t, exp, depth + 1)
        else:
            exp.remote.setdefault(str(t), None)
