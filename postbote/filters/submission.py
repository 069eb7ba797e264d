"""Submission fixes (RFC 6409 §8): a message from our users gets a Message-ID and a Date if it lacks them."""

from __future__ import annotations

import asyncio
import email.utils
import re
import secrets

from .pipeline import FilterResult, MessageContext

_HEADER_LIMIT = 256 * 1024


class SubmissionHeaders:
    name = "submission-headers"

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname

    async def check(self, ctx: MessageContext) -> FilterResult:
        if not ctx.outgoing:
            return FilterResult()
        header = await asyncio.to_thread(_read_header, ctx)
        added = []
        # RFC 6409 §8.3: add Message-ID if missing.
        if not re.search(rb"(?im)^message-id[ \t]*:", header):
            added.append(f"Message-ID: <{ctx.queue_id}.{secrets.token_hex(4)}@{self.hostname}>\r\n")
        # RFC 6409 §8.2: add Date if missing.
        if not re.search(rb"(?im)^date[ \t]*:", header):
            added.append(f"Date: {email.utils.formatdate(localtime=True)}\r\n")
        return FilterResult(prepend="".join(added).encode())


def _read_header(ctx: MessageContext) -> bytes:
    data = ctx.read_head(_HEADER_LIMIT)
    end = data.find(b"\r\n\r\n")
    return data if end < 0 else data[:end]
