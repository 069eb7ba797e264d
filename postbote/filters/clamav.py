"""Virus scanning: every accepted message streamed to clamd with INSTREAM.

clamd's INSTREAM command (clamd(8)) takes the message in chunks, each a 4-octet
big-endian length and the bytes, ended by a zero length; it answers
``stream: OK``, ``stream: NAME FOUND`` or ``... ERROR``. Infected mail is
refused with 554 5.7.0 and logged; when the scanner cannot be reached or
fails, the message is refused for now (451 4.7.0) so the sender retries,
unless ``clamav.on_error = "accept"``. Messages larger than ``clamav.max_size``
(clamd's StreamMaxLength) are passed unscanned, marked so in X-Virus-Status.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

from postbote.config import ClamavSettings
from postbote.filters.pipeline import Action, FilterResult, MessageContext
from postbote.log import event

log = logging.getLogger("postbote.clamav")

CHUNK = 256 * 1024
MAX_REPLY = 4096


class ScannerError(Exception):
    """clamd could not be reached, or answered with an error."""


@dataclass(frozen=True)
class ScanResult:
    infected: bool
    signature: str = ""


async def scan_stream(address: str, chunks: Sequence[bytes], timeout: float) -> ScanResult:
    """Send ``chunks`` to clamd at ``address`` ("unix:/path" or "tcp:host:port") and read its verdict."""
    try:
        return await asyncio.wait_for(_scan(address, chunks), timeout)
    except asyncio.TimeoutError:
        raise ScannerError(f"clamd at {address} did not answer within {timeout:g} s") from None
    except OSError as exc:
        raise ScannerError(f"clamd at {address}: {exc.strerror or exc}") from None


async def _scan(address: str, chunks: Sequence[bytes]) -> ScanResult:
    reader, writer = await _connect(address)
    try:
        writer.write(b"zINSTREAM\0")
        for chunk in chunks:
            writer.write(struct.pack(">I", len(chunk)) + chunk)
            await writer.drain()
        writer.write(struct.pack(">I", 0))
        await writer.drain()
        reply = await reader.readuntil(b"\0")
    except asyncio.IncompleteReadError as exc:
        raise ScannerError(f"clamd at {address} closed the connection: {exc.partial[:200]!r}") from None
    except asyncio.LimitOverrunError:
        raise ScannerError(f"clamd at {address} sent an overlong reply") from None
    finally:
        writer.close()
    return parse_reply(reply.rstrip(b"\0").decode("utf-8", "replace"))


async def _connect(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if address.startswith("unix:"):
        return await asyncio.open_unix_connection(address[5:], limit=MAX_REPLY)
    host, _, port = address[4:].rpartition(":")
    return await asyncio.open_connection(host.strip("[]"), int(port), limit=MAX_REPLY)


def parse_reply(text: str) -> ScanResult:
    """``stream: OK`` / ``stream: Eicar-Signature FOUND`` / ``... ERROR``."""
    _, _, verdict = text.partition(": ")
    if verdict == "OK":
        return ScanResult(False)
    if verdict.endswith(" FOUND"):
        return ScanResult(True, verdict[:-len(" FOUND")].strip())
    raise ScannerError(f"clamd: {text.strip()[:200]}")


class ClamavFilter:
    name = "clamav"

    def __init__(self, settings: ClamavSettings, executor: Executor | None = None) -> None:
        self.settings = settings
        self.executor = executor

    async def check(self, ctx: MessageContext) -> FilterResult:
        if not self.settings.enabled:
            return FilterResult()
        size = ctx.size
        if size > self.settings.max_size:
            return FilterResult(prepend=b"X-Virus-Status: Unscanned (larger than clamav.max_size)\r\n")
        try:
            found = await scan_stream(self.settings.address, await self._chunks(ctx), self.settings.timeout)
        except ScannerError as exc:
            return self._unscanned(ctx, str(exc))
        if found.infected:
            event(log, "virus found", logging.WARNING, queue_id=ctx.queue_id, signature=found.signature,
                  sender=ctx.sender, peer=ctx.peer_ip)
            return FilterResult(action=Action.REJECT, code=554, status="5.7.0",
                                text=f"message refused: virus found ({found.signature})")
        return FilterResult(prepend=b"X-Virus-Status: Clean\r\n")

    async def _chunks(self, ctx: MessageContext) -> list[bytes]:
        """The message in INSTREAM-sized chunks (read off the loop; at most max_size in memory)."""
        whole = await ctx.content(self.executor)
        return [whole[i:i + CHUNK] for i in range(0, len(whole), CHUNK)] or [b""]

    def _unscanned(self, ctx: MessageContext, reason: str) -> FilterResult:
        event(log, "virus scan failed", logging.ERROR, queue_id=ctx.queue_id, error=reason,
              action=self.settings.on_error)
        if self.settings.on_error == "accept":
            return FilterResult(prepend=b"X-Virus-Status: Unscanned (scanner unavailable)\r\n")
        return FilterResult(action=Action.TEMPFAIL, code=451, status="4.7.0",
                            text="virus scanner unavailable, try again later")
