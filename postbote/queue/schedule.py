"""When to try again: the retry schedule, the delay notice, and giving up."""

from __future__ import annotations

from postbote.config import OutboundSettings, parse_duration


def retry_waits(settings: OutboundSettings) -> list[int]:
    return [parse_duration(w) or 60 for w in settings.retry_schedule]


def next_attempt(settings: OutboundSettings, attempts: int, now: int) -> int:
    """``attempts`` is how many attempts failed so far (1 after the first); the last wait repeats."""
    waits = retry_waits(settings)
    return now + waits[min(max(attempts, 1), len(waits)) - 1]


def expired(settings: OutboundSettings, created: int, now: int) -> bool:
    return now - created >= settings.give_up_after


def delay_notice_due(settings: OutboundSettings, created: int, now: int, notified: bool) -> bool:
    return bool(settings.delay_notice_after) and not notified and now - created >= settings.delay_notice_after
