"""Notices between the processes that share a store: the workers of ``serve``
(one or ``--workers N``) and the admin commands run beside them.

Each worker binds a Unix datagram socket in ``DATA/run/feed/`` and sends its
notices to the sockets of the others; an admin command only sends (its
changes, e.g. a Sieve script activated, must reach the server's caches). A notice is one datagram, a kind and
its payload: ``KIND SP PAYLOAD``, where KIND is a short lowercase word that
names the receiver (``change`` for the store's change feed, ``auth`` for the
brute-force throttle) and PAYLOAD is bytes only that receiver reads.

Datagrams are small, never block the sender, and a worker that is gone
simply no longer has a socket to send to. Every kind must bear a loss: the
change feed carries only wake-ups (a subscriber re-reads the store, so a lost
one delays a notice until the next command at worst), the throttle only
counts (a lost failure is one failure fewer, not a crash). Malformed or
unknown notices are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .changes import ChangeFeed
from .types import Change

log = logging.getLogger("postbote.feedbus")

# How often the list of peer sockets is read again even when the folder
# looks unchanged (seconds); a changed folder is read again at once.
PEER_REFRESH = 1.0
# The largest notice sent or read: well below the datagram limits of Unix
# sockets, and room enough for the longest e-mail address.
MAX_NOTICE = 2048

CHANGE = "change"
_KIND = re.compile(r"[a-z][a-z0-9_-]{0,15}")

Handler = Callable[[bytes], None]


def encode(change: Change) -> bytes:
    """The payload of a ``change`` notice."""
    kinds = ",".join(sorted(change.kinds))
    return f"{change.account_id} {change.mailbox_id} {change.modseq} {kinds}".encode()


def decode(data: bytes) -> Change | None:
    try:
        account, mailbox, modseq, *rest = data.decode().split(" ")
        kinds = frozenset(k for k in (rest[0] if rest else "").split(",") if k)
        return Change(int(account), int(mailbox), int(modseq), kinds)
    except (ValueError, UnicodeDecodeError):
        return None


def frame(kind: str, payload: bytes) -> bytes:
    """One datagram: the kind, a space, the payload."""
    if not _KIND.fullmatch(kind):
        raise ValueError(f"feedbus: notice kind must be a short lowercase word, got {kind!r}")
    return kind.encode() + b" " + payload


def unframe(data: bytes) -> tuple[str, bytes] | None:
    """(kind, payload) of a datagram, or None when it is not a notice."""
    head, sep, payload = data.partition(b" ")
    try:
        kind = head.decode("ascii")
    except UnicodeDecodeError:
        return None
    if not sep or not _KIND.fullmatch(kind):
        return None
    return kind, payload


class FeedBus:
    def __init__(self, folder: Path, name: str | None = None) -> None:
        self.folder = folder
        self.path = folder / f"{name or os.getpid()}.sock"
        self._sock: socket.socket | None = None
        self._listening = False
        self._handlers: dict[str, Handler] = {}
        self._feed: ChangeFeed | None = None
        self._peers: list[str] = []
        self._peers_read = 0.0
        self._peers_stamp = -1
        self._lock = threading.Lock()

    def on(self, kind: str, handler: Handler) -> None:
        """Pass the payload of every ``kind`` notice from another worker to ``handler``
        (called on the event loop that opened the bus)."""
        frame(kind, b"")  # validates the kind
        self._handlers[kind] = handler

    def carry_changes(self, feed: ChangeFeed) -> None:
        """Send the changes this process commits, and publish the others' locally."""
        self._feed = feed
        self.on(CHANGE, self._change_received)

    def open(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Bind this process's socket and hear the others on ``loop``; with no loop, only
        send (an admin command: its changes must reach the running server, which has
        nothing to tell it back)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        if loop is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.path.unlink(missing_ok=True)
            sock.bind(str(self.path))
            loop.add_reader(sock.fileno(), self._receive)
        self._sock = sock
        self._listening = loop is not None
        if self._feed is not None:
            self._feed.forward = self._send_change

    def close(self, loop: asyncio.AbstractEventLoop | None) -> None:
        if self._sock is None:
            return
        if self._feed is not None:
            self._feed.forward = None
        if loop is not None and self._listening:
            loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None
        if self._listening:
            self.path.unlink(missing_ok=True)

    def _peer_paths(self) -> list[str]:
        """The other workers' sockets. Read again when the folder changed (a worker
        bound or removed its socket) so a new worker hears the next notice, and at
        least every PEER_REFRESH seconds (a folder's time stamp is coarse)."""
        with self._lock:
            now = time.monotonic()
            try:
                stamp = os.stat(self.folder).st_mtime_ns
            except OSError:
                stamp = -1
            if stamp != self._peers_stamp or now - self._peers_read > PEER_REFRESH:
                self._peers = [str(p) for p in self.folder.glob("*.sock") if p != self.path]
                self._peers_read, self._peers_stamp = now, stamp
            return list(self._peers)

    def send(self, kind: str, payload: bytes) -> None:
        """Tell every other worker; called from any thread. Never raises for a peer's sake."""
        sock = self._sock
        if sock is None:
            return
        data = frame(kind, payload)
        if len(data) > MAX_NOTICE:
            log.warning("feedbus: %s notice of %d bytes not sent (limit %d)", kind, len(data), MAX_NOTICE)
            return
        for peer in self._peer_paths():
            try:
                sock.sendto(data, peer)
            except (ConnectionRefusedError, FileNotFoundError):
                self._forget(peer)  # that worker is gone
            except OSError:
                pass  # its queue is full, or the system is short of buffers: the notice is lost

    def _send_change(self, change: Change) -> None:
        self.send(CHANGE, encode(change))

    def _change_received(self, payload: bytes) -> None:
        change = decode(payload)
        if change is not None and self._feed is not None:
            self._feed.publish_local(change)

    def _forget(self, peer: str) -> None:
        with self._lock:
            if peer in self._peers:
                self._peers.remove(peer)
        try:
            os.unlink(peer)
        except OSError:
            pass

    def _receive(self) -> None:
        if self._sock is None:
            return
        while True:
            try:
                data = self._sock.recv(MAX_NOTICE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                log.exception("feedbus: receive failed")
                return
            self._dispatch(data)

    def _dispatch(self, data: bytes) -> None:
        notice = unframe(data)
        handler = self._handlers.get(notice[0]) if notice else None
        if notice is None or handler is None:
            return  # not a notice, or a kind this worker does not take
        try:
            handler(notice[1])
        except Exception:
            # The bus is a process boundary: one bad notice must not stop the others.
            log.exception("feedbus: %s notice failed", notice[0])
