"""Brute-force protection shared by SMTP AUTH, IMAP and POP3.

Failures are counted per client IP and per account. Each failure makes the
next answer slower (a growing delay), and past the limit the IP or account is
locked out for a while. State is in memory: a restart forgives everyone,
which is the usual trade-off (fail2ban, Dovecot's auth penalty) for speed.

With ``serve --workers N`` every worker keeps its own table, fed by its own
logins and by ``AuthEvent`` notices from the others (over the FeedBus, see
``AccountService.join``), so the limits hold for the whole server rather than
N times over. The class itself knows nothing of processes: local and remote
events are recorded alike.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

# The delay grows 0.25 s, 0.5 s, 1 s … capped here (seconds).
MAX_DELAY = 8.0
# Bound the memory an attack from many addresses can cost.
MAX_TRACKED = 100_000


@dataclass(frozen=True)
class AuthEvent:
    """One login's outcome as the throttle counts it (``account`` is None when the
    user name was not an address)."""
    ip: str
    account: str | None
    ok: bool


def encode_event(ev: AuthEvent) -> bytes:
    """The wire form sent to the other workers: a small JSON array."""
    return json.dumps(["ok" if ev.ok else "fail", ev.ip, ev.account], separators=(",", ":")).encode()


def decode_event(data: bytes) -> AuthEvent | None:
    """The event, or None for anything that is not one (a notice is never trusted to parse)."""
    try:
        outcome, ip, account = json.loads(data)
    except (ValueError, TypeError):  # bad JSON, bad UTF-8, not a list of three
        return None
    if outcome not in ("ok", "fail") or not isinstance(ip, str) or not (account is None or isinstance(account, str)):
        return None
    if outcome == "ok" and account is None:
        return None
    return AuthEvent(ip, account, outcome == "ok")


@dataclass
class _Record:
    failures: int
    first: float
    locked_until: float = 0.0


class AuthThrottle:
    def __init__(self, per_ip: int, per_account: int, lockout_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_ip = per_ip
        self.per_account = per_account
        self.lockout = lockout_seconds
        self.clock = clock
        self._records: dict[str, _Record] = {}

    def _get(self, key: str) -> _Record | None:
        rec = self._records.get(key)
        if rec and rec.locked_until <= self.clock() and self.clock() - rec.first > self.lockout:
            del self._records[key]  # the window has passed: forgiven
            return None
        return rec

    def locked_for(self, ip: str, account: str | None) -> float:
        """Seconds until this IP or account may try again (0: now)."""
        now = self.clock()
        waits = [rec.locked_until - now for key in _keys(ip, account) if (rec := self._get(key))]
        return max([0.0, *waits])

    def failure_delay(self, ip: str, account: str | None) -> float:
        """How long to wait before answering the current failure."""
        counts = [rec.failures for key in _keys(ip, account) if (rec := self._get(key))]
        n = max([0, *counts])
        return min(MAX_DELAY, 0.25 * (2 ** n)) if n else 0.0

    def failed(self, ip: str, account: str | None) -> None:
        now = self.clock()
        if len(self._records) >= MAX_TRACKED:
            self._records.clear()  # crude, but bounded; a flood resets the table
        for key, limit in ((f"ip:{ip}", self.per_ip), (f"acct:{account}", self.per_account)):
            if key.endswith(":None"):
                continue
            rec = self._get(key) or self._records.setdefault(key, _Record(0, now))
            rec.failures += 1
            if rec.failures >= limit:
                rec.locked_until = now + self.lockout

    def record(self, ev: AuthEvent) -> None:
        """Count a login's outcome, whichever worker saw it."""
        if ev.ok and ev.account is not None:
            self.succeeded(ev.ip, ev.account)
        elif not ev.ok:
            self.failed(ev.ip, ev.account)

    def succeeded(self, ip: str, account: str) -> None:
        self._records.pop(f"ip:{ip}", None)
        self._records.pop(f"acct:{account}", None)


def _keys(ip: str, account: str | None) -> list[str]:
    return [f"ip:{ip}"] + ([f"acct:{account}"] if account else [])
