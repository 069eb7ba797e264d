"""Listening sockets shared by every protocol server.

A ``Listener`` accepts connections for one service, enforces the connection
limits (in total and per client IP), wraps implicit TLS, gives each
connection an ID, logs its start and end, and knows how to drain: stop
accepting, let in-flight sessions finish, then cut what is left.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import secrets
import socket
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from postbote.config import ListenAddress
from postbote.log import event
from postbote import metrics

log = logging.getLogger("postbote.conn")


class ListenError(Exception):
    """A listening socket could not be opened; the message says which and why."""


@dataclass
class Connection:
    id: str
    service: str
    peer_ip: str
    peer_port: int
    local_port: int
    implicit_tls: bool
    started: float = field(default_factory=time.monotonic)
    # Set by the session: called when the server drains, so an idle session can
    # say goodbye at once and a busy one after its current transaction.
    on_stop: Callable[[], None] | None = None


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Connection], Awaitable[None]]


class ConnectionLimits:
    """Counts open connections across all listeners of a process."""

    def __init__(self, total: int, per_ip: int) -> None:
        self.total, self.per_ip = total, per_ip
        self.open = 0
        self.by_ip: Counter[str] = Counter()

    def admit(self, ip: str) -> bool:
        # Loopback is exempt from the per-IP limit: local tools and tests.
        if self.open >= self.total or (self.by_ip[ip] >= self.per_ip and ip not in ("127.0.0.1", "::1")):
            return False
        self.open += 1
        self.by_ip[ip] += 1
        return True

    def release(self, ip: str) -> None:
        self.open -= 1
        self.by_ip[ip] -= 1
        if self.by_ip[ip] <= 0:
            del self.by_ip[ip]


def socket_key(service: str, addr: ListenAddress) -> str:
    return f"{service}@{addr}"


def bind(service: str, addr: ListenAddress) -> socket.socket:
    """A listening TCP socket; a clear ListenError when the port is taken."""
    try:
        return socket.create_server((addr.host, addr.port), family=socket.AF_INET6 if ":" in addr.host
                                    else socket.AF_INET, backlog=1024, reuse_port=False)
    except OSError as exc:
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise ListenError(f"cannot listen on {addr} for {service}: {reason}") from None


class Listener:
    def __init__(self, service: str, addresses: tuple[ListenAddress, ...], handler: Handler,
                 limits: ConnectionLimits, busy_reply: bytes, ssl_context: ssl.SSLContext | None = None) -> None:
        self.service = service
        self.addresses = addresses
        self.handler = handler
        self.limits = limits
        self.busy_reply = busy_reply
        self.ssl_context = ssl_context
        self.servers: list[asyncio.base_events.Server] = []
        self.sessions: dict[asyncio.Task, Connection] = {}

    @property
    def ports(self) -> list[int]:
        """The ports actually bound (port 0 in the config lets the OS choose)."""
        return [s.sockets[0].getsockname()[1] for s in self.servers if s.sockets]

    async def start(self, prebound: dict[str, socket.socket] | None = None) -> None:
        """Listen on every address; ``prebound`` holds sockets a parent process
        bound for its workers (``serve --workers``), keyed by ``socket_key``."""
        for addr in self.addresses:
            sock = (prebound or {}).get(socket_key(self.service, addr)) or bind(self.service, addr)
            server = await asyncio.start_server(
                self._accept, sock=sock, ssl=self.ssl_context,
                ssl_handshake_timeout=30 if self.ssl_context else None, backlog=1024, limit=256 * 1024)
            self.servers.append(server)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        sock = writer.get_extra_info("sockname") or ("?", 0)
        conn = Connection(secrets.token_hex(6), self.service, peer[0], peer[1], sock[1], self.ssl_context is not None)
        if not self.limits.admit(conn.peer_ip):
            event(log, "connection refused: too many", session=conn.id, service=self.service, ip=conn.peer_ip)
            metrics.CONNECTIONS_REFUSED.labels(self.service).inc()
            await _refuse(writer, self.busy_reply)
            return
        task = asyncio.current_task()
        assert task is not None
        self.sessions[task] = conn
        event(log, "connect", session=conn.id, service=self.service, ip=conn.peer_ip, port=conn.peer_port)
        metrics.CONNECTIONS.labels(self.service).inc()
        try:
            await self.handler(reader, writer, conn)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError) as exc:
            event(log, "connection lost", session=conn.id, error=type(exc).__name__)
        except asyncio.CancelledError:
            event(log, "connection cut at shutdown", session=conn.id)
        except Exception:
            log.exception("session crashed", extra={"fields": {"session": conn.id}})
        finally:
            self.sessions.pop(task, None)
            self.limits.release(conn.peer_ip)
            writer.close()
            event(log, "disconnect", session=conn.id, seconds=round(time.monotonic() - conn.started, 3))

    def stop_accepting(self) -> None:
        for server in self.servers:
            server.close()

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for sessions to end, then cancel the rest."""
        for conn in list(self.sessions.values()):
            if conn.on_stop is not None:
                conn.on_stop()
        if self.sessions:
            _, pending = await asyncio.wait(set(self.sessions), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        for server in self.servers:
            await server.wait_closed()


async def _refuse(writer: asyncio.StreamWriter, reply: bytes) -> None:
    try:
        writer.write(reply)
        await asyncio.wait_for(writer.drain(), 5)
    except (OSError, asyncio.TimeoutError):
        pass
    finally:
        writer.close()
