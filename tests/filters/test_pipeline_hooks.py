"""After-delivery work of filters: run once the message is committed, never for a refused one."""

from __future__ import annotations

import asyncio

from postbote.filters.pipeline import Action, FilterResult, MessageContext, run_filters


class Remembering:
    """Like the spam filter: wants to note something once the message is delivered."""

    name = "remembering"

    def __init__(self) -> None:
        self.noted = 0

    async def check(self, ctx: MessageContext) -> FilterResult:
        async def note() -> None:
            self.noted += 1

        return FilterResult(on_delivered=note)


class Deferring:
    name = "deferring"

    async def check(self, ctx: MessageContext) -> FilterResult:
        return FilterResult(action=Action.TEMPFAIL, code=451, status="4.7.0", text="try later")


def _context() -> MessageContext:
    return MessageContext("Q1", "smtp", "192.0.2.1", "mail.example.org", "a@example.org", ("b@example.net",),
                          None, message=b"Subject: x\r\n\r\nbody\r\n")


def test_after_delivery_work_runs_once_when_the_message_is_delivered():
    first = Remembering()
    result = asyncio.run(run_filters([first], _context()))
    assert first.noted == 0  # not before the commit
    asyncio.run(result.delivered())
    assert first.noted == 1


def test_after_delivery_work_is_dropped_when_a_later_filter_defers():
    first = Remembering()
    result = asyncio.run(run_filters([first, Deferring()], _context()))
    assert result.action is Action.TEMPFAIL
    assert result.on_delivered == ()
    assert first.noted == 0
