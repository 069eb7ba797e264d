"""The filter pipeline: one mechanism for every check and change of an accepted message.

After the data of a message has arrived (and before anything is committed),
the SMTP server runs each ``MessageFilter`` in order: mail authentication
(SPF, DKIM, DMARC, ARC), spam and virus checks, DKIM signing on submission.
A filter reads the spooled message and answers with a ``FilterResult``:
header fields to add, and an action. The first refusal wins; header fields
from all filters are written into the spool once, after postbote's own trace
fields, so the message is copied at most once whatever the number of filters.
"""

from __future__ import annotations

import asyncio
import enum
import os
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Awaitable, Callable
from typing import BinaryIO, Protocol


class Action(enum.Enum):
    ACCEPT = "accept"
    JUNK = "junk"  # deliver into the recipients' Junk mailbox
    REJECT = "reject"  # a permanent refusal (5xx)
    TEMPFAIL = "tempfail"  # a temporary refusal (4xx): try again later


@dataclass(frozen=True)
class FilterResult:
    prepend: bytes = b""  # complete header fields, each ending in CRLF
    action: Action = Action.ACCEPT
    # For REJECT / TEMPFAIL: the reply, e.g. (550, "5.7.1", "DMARC policy reject").
    code: int = 0
    status: str = ""
    text: str = ""
    # Header fields of the sender's message to drop, by index (0 = the first field
    # after our trace fields, as ``header_fields`` splits them), e.g. forged
    # Authentication-Results claiming our authserv-id (RFC 8601 §5).
    remove_headers: tuple[int, ...] = ()
    # Work to do only once the message is committed (e.g. remembering a verdict):
    # a message refused or deferred by a later filter, and sent again, must not count twice.
    on_delivered: Callable[[], Awaitable[None]] | None = None


@dataclass
class MessageContext:
    """What a filter may know about the message and its sender."""

    queue_id: str
    service: str  # "smtp", "submission", "submissions", "lmtp"
    peer_ip: str
    helo: str
    sender: str  # MAIL FROM, "" for the null reverse-path
    recipients: tuple[str, ...]
    # Where the message is: in memory (most messages: ``message`` holds what the
    # sender sent), or in a spool file after our trace fields (large ones).
    spool_path: Path | None
    # Outside addresses that local aliases forward this message to (for ARC sealing).
    forwarded: tuple[str, ...] = ()
    # For each recipient, the local accounts it resolved to at RCPT (none: only
    # outside addresses), so filters need not look them up again.
    recipient_accounts: tuple[tuple[int, ...], ...] = ()
    authenticated_user: str | None = None
    tls: str = ""
    trace_length: int = 0  # octets of our own trace fields at the top of the spool
    added: bytes = b""  # header fields earlier filters added (not yet in the spool)
    notes: dict[str, object] = field(default_factory=dict)  # results one filter leaves for the next
    message: bytes | None = None

    @property
    def account_ids(self) -> tuple[int, ...]:
        """Every local account that gets the message, once."""
        return tuple(dict.fromkeys(a for accounts in self.recipient_accounts for a in accounts))

    @property
    def outgoing(self) -> bool:
        return self.authenticated_user is not None

    def read(self) -> bytes:
        """The message as it stands: fields added by earlier filters, then what
        the sender sent (our trace fields left out). May block on the spool
        file: call it in an executor thread."""
        if self.message is not None:
            return self.added + self.message
        assert self.spool_path is not None
        with open(self.spool_path, "rb") as f:
            f.seek(self.trace_length)
            return self.added + f.read()

    async def content(self, executor: Executor | None = None) -> bytes:
        """``read`` without a thread hop when the message is in memory: the hop
        would cost more than the copy."""
        if self.message is not None:
            return self.read()
        return await asyncio.get_running_loop().run_in_executor(executor, self.read)

    def read_head(self, limit: int = 256 * 1024) -> bytes:
        """Like ``read`` but at most ``limit`` octets of the original: enough for the header."""
        if self.message is not None:
            return self.added + self.message[:limit]
        assert self.spool_path is not None
        with open(self.spool_path, "rb") as f:
            f.seek(self.trace_length)
            return self.added + f.read(limit)

    @property
    def size(self) -> int:
        """Octets of the message as it stands (without our trace fields)."""
        if self.message is not None:
            return len(self.added) + len(self.message)
        assert self.spool_path is not None
        return len(self.added) + os.stat(self.spool_path).st_size - self.trace_length


class MessageFilter(Protocol):
    name: str

    async def check(self, ctx: MessageContext) -> FilterResult: ...


@dataclass(frozen=True)
class PipelineResult:
    action: Action
    prepended: bytes
    refusal: FilterResult | None = None
    removed: tuple[int, ...] = ()  # numbers of the sender's header fields to drop
    on_delivered: tuple[Callable[[], Awaitable[None]], ...] = ()

    async def delivered(self) -> None:
        """Run the filters' after-commit work; call once the message is durable."""
        for hook in self.on_delivered:
            await hook()


async def run_filters(filters: list[MessageFilter], ctx: MessageContext) -> PipelineResult:
    prepend = b""
    remove: set[int] = set()
    hooks: list[Callable[[], Awaitable[None]]] = []
    action = Action.ACCEPT
    for f in filters:
        ctx.added = prepend
        result = await f.check(ctx)
        prepend = result.prepend + prepend  # later filters' fields go on top (RFC 5322 §3.6 trace order)
        remove.update(result.remove_headers)
        if result.action in (Action.REJECT, Action.TEMPFAIL):
            return PipelineResult(result.action, prepend, result, tuple(sorted(remove)))
        if result.action is Action.JUNK:
            action = Action.JUNK
        if result.on_delivered is not None:
            hooks.append(result.on_delivered)
    return PipelineResult(action, prepend, None, tuple(sorted(remove)), tuple(hooks))


def header_fields(data: bytes) -> list[bytes]:
    """The header fields at the start of ``data``, each with its folded lines and CRLF.

    Stops at the empty line that ends the header (not included) or at the end of
    ``data``; the indices of ``FilterResult.remove_headers`` count in this list.
    """
    fields: list[bytes] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        line = data[pos:] if end < 0 else data[pos:end + 1]
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
        pos += len(line)
    return fields


def rewrite_header(message: bytes, headers: bytes, remove: tuple[int, ...] = ()) -> bytes:
    """``headers`` followed by ``message`` without its header fields numbered in ``remove``."""
    if not remove:
        return headers + message
    kept, consumed = [], 0
    for i, raw in enumerate(header_fields(message[:_HEADER_LIMIT])):
        consumed += len(raw)
        if i not in remove:
            kept.append(raw)
    return headers + b"".join(kept) + message[consumed:]


def insert_headers(spool_path: Path, offset: int, headers: bytes, remove: tuple[int, ...] = ()) -> None:
    """Write ``headers`` into the spool at ``offset`` (after the trace fields), and
    drop the sender's header fields numbered in ``remove``.

    Blocking; run in an executor. Writes a new file and renames it over the
    old one, so a crash leaves one or the other, never a mix. The body is
    copied by the kernel (copy_file_range), not through Python.
    """
    if not headers and not remove:
        return
    tmp = spool_path.with_name(spool_path.name + ".new")
    with open(spool_path, "rb") as src, open(tmp, "wb") as dst:
        dst.write(src.read(offset))
        dst.write(headers)
        if remove:
            _copy_header_without(src, dst, set(remove))
        dst.flush()
        _copy_rest(src, dst)
    os.replace(tmp, spool_path)


def _copy_rest(src: BinaryIO, dst: BinaryIO) -> None:
    in_fd, out_fd = src.fileno(), dst.fileno()
    position = src.tell()
    try:
        while n := os.copy_file_range(in_fd, out_fd, 1 << 30, position):
            position += n
    except OSError:  # a file system without it: copy in user space
        src.seek(position)
        while chunk := src.read(1 << 20):
            dst.write(chunk)


def _copy_header_without(src: BinaryIO, dst: BinaryIO, remove: set[int]) -> None:
    """Copy the header fields from ``src`` except those numbered in ``remove``;
    ``src`` is left at the end of the header (the empty line is copied later)."""
    start = src.tell()
    head = src.read(_HEADER_LIMIT)
    consumed = 0
    for i, raw in enumerate(header_fields(head)):
        consumed += len(raw)
        if i not in remove:
            dst.write(raw)
    src.seek(start + consumed)


_HEADER_LIMIT = 1 << 20
