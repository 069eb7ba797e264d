"""An outside rspamd asked about each inbound message over its HTTP protocol (``POST /checkv2``).

The envelope travels in request headers (IP, Helo, From, Rcpt, Queue-Id, User),
the message is the body, and the JSON answer's action maps onto ours:

| rspamd action                    | postbote                        |
|----------------------------------|---------------------------------|
| reject                           | REJECT 550 5.7.1                |
| soft reject                      | TEMPFAIL 451 4.7.1              |
| add header, rewrite subject      | JUNK (delivered into Junk)      |
| greylist, no action              | ACCEPT (postbote greylists itself, see greylist.py) |

Every checked message gets X-Rspamd-Status with the action, score and symbols.
When rspamd cannot be reached the message is accepted unscored, or refused for
now with ``rspamd.on_error = "tempfail"``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from concurrent.futures import Executor
from dataclasses import dataclass
from urllib.parse import urlsplit

from postbote.config import RspamdSettings
from postbote.filters.pipeline import Action, FilterResult, MessageContext
from postbote.log import event

log = logging.getLogger("postbote.rspamd")

MAX_RESPONSE = 4 * 1024 * 1024

ACTIONS = {
    "reject": Action.REJECT,
    "soft reject": Action.TEMPFAIL,
    "add header": Action.JUNK,
    "rewrite subject": Action.JUNK,
    "greylist": Action.ACCEPT,
    "no action": Action.ACCEPT,
}


class RspamdError(Exception):
    """rspamd could not be reached or gave no usable answer."""


@dataclass(frozen=True)
class RspamdVerdict:
    action: str
    score: float
    required: float
    symbols: tuple[str, ...]


def request_headers(ctx: MessageContext, password: str) -> list[tuple[str, str]]:
    """The envelope as rspamd's protocol headers (rspamd docs, "Rspamd protocol")."""
    headers = [("IP", ctx.peer_ip), ("Helo", ctx.helo), ("From", ctx.sender), ("Queue-Id", ctx.queue_id)]
    headers += [("Rcpt", r) for r in ctx.recipients]
    if ctx.authenticated_user:
        headers.append(("User", ctx.authenticated_user))
    if password:
        headers.append(("Password", password))
    return [(k, v) for k, v in headers if v]


def parse_verdict(body: bytes) -> RspamdVerdict:
    try:
        data = json.loads(body)
        return RspamdVerdict(str(data["action"]), float(data.get("score", 0.0)),
                             float(data.get("required_score", 0.0)), tuple(sorted(data.get("symbols", {}))))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RspamdError(f"rspamd answered something that is not a verdict: {exc}") from None


async def check_message(url: str, message: bytes, headers: list[tuple[str, str]], timeout: float) -> RspamdVerdict:
    try:
        return await asyncio.wait_for(_post(url, message, headers), timeout)
    except asyncio.TimeoutError:
        raise RspamdError(f"rspamd at {url} did not answer within {timeout:g} s") from None
    except (OSError, ssl.SSLError) as exc:
        raise RspamdError(f"rspamd at {url}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}") from None


async def _post(url: str, message: bytes, headers: list[tuple[str, str]]) -> RspamdVerdict:
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if tls else 80)
    reader, writer = await asyncio.open_connection(host, port, ssl=ssl.create_default_context() if tls else None)
    try:
        path = (parts.path.rstrip("/") or "") + "/checkv2"
        head = [f"POST {path} HTTP/1.0", f"Host: {host}", f"Content-Length: {len(message)}"]
        head += [f"{k}: {_clean(v)}" for k, v in headers]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("utf-8") + message)
        await writer.drain()
        response = await _read_all(reader)
    finally:
        writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    fields = status_line.split()
    if len(fields) < 2 or fields[1] != b"200":
        raise RspamdError(f"rspamd answered {status_line[:100].decode('latin-1')!r}")
    _, _, body = rest.partition(b"\r\n\r\n")
    return parse_verdict(body)


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    """The whole response: HTTP/1.0, so the server closes the connection after it."""
    data = bytearray()
    while chunk := await reader.read(65536):
        data += chunk
        if len(data) > MAX_RESPONSE:
            raise RspamdError("rspamd's answer is too long")
    return bytes(data)


def _clean(value: str) -> str:
    """Header values come from the SMTP client: no line breaks may pass into the request."""
    return value.replace("\r", " ").replace("\n", " ")


class RspamdFilter:
    name = "rspamd"

    def __init__(self, settings: RspamdSettings, executor: Executor | None = None) -> None:
        self.settings = settings
        self.executor = executor

    async def check(self, ctx: MessageContext) -> FilterResult:
        if not self.settings.enabled or ctx.outgoing:
            return FilterResult()
        message = await ctx.content(self.executor)
        try:
            verdict = await check_message(self.settings.url, message, request_headers(ctx, self.settings.password),
                                          self.settings.timeout)
        except RspamdError as exc:
            event(log, "rspamd check failed", logging.ERROR, queue_id=ctx.queue_id, error=str(exc))
            if self.settings.on_error == "tempfail":
                return FilterResult(action=Action.TEMPFAIL, code=451, status="4.7.1",
                                    text="spam filter unavailable, try again later")
            return FilterResult()
        action = ACTIONS.get(verdict.action, Action.ACCEPT)
        event(log, "rspamd verdict", queue_id=ctx.queue_id, action=verdict.action, score=verdict.score,
              symbols=",".join(verdict.symbols))
        if action is Action.REJECT:
            return FilterResult(action=action, code=550, status="5.7.1", text="message refused as spam")
        if action is Action.TEMPFAIL:
            return FilterResult(action=action, code=451, status="4.7.1", text="try again later")
        status = (f"X-Rspamd-Status: action={verdict.action.replace(' ', '_')} score={verdict.score:.2f} "
                  f"required={verdict.required:.2f}\r\n\tsymbols={','.join(verdict.symbols) or 'none'}\r\n")
        return FilterResult(prepend=status.encode("ascii", "replace"), action=action)
