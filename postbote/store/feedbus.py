"""The change feed across processes: ``serve --workers N`` shares one store.

Each worker binds a Unix datagram socket in ``DATA/run/feed/`` and sends
every change its own store commits to the sockets of the others, which pass
it to their local subscribers (an IMAP IDLE in worker 2 wakes when worker 1
delivers). Datagrams are small, never block the sender, and a worker that is
gone simply no longer has a socket to send to. Only wake-ups travel: a
subscriber re-reads the store, so a lost datagram delays a notice until the
next command at worst, and loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from pathlib import Path

from .changes import ChangeFeed
from .types import Change

log = logging.getLogger("postbote.feedbus")

# How often the list of peer sockets is read again (seconds).
PEER_REFRESH = 1.0


def encode(change: Change) -> bytes:
    kinds = ",".join(sorted(change.kinds))
    return f"{change.account_id} {change.mailbox_id} {change.modseq} {kinds}".encode()


def decode(data: bytes) -> Change | None:
    try:
        account, mailbox, modseq, *rest = data.decode().split(" ")
        kinds = frozenset(k for k in (rest[0] if rest else "").split(",") if k)
        return Change(int(account), int(mailbox), int(modseq), kinds)
    except (ValueError, UnicodeDecodeError):
        return None


class FeedBus:
    def __init__(self, folder: Path, feed: ChangeFeed, name: str | None = None) -> None:
        self.folder = folder
        self.feed = feed
        self.path = folder / f"{name or os.getpid()}.sock"
        self._sock: socket.socket | None = None
        self._peers: list[str] = []
        self._peers_read = 0.0
        self._lock = threading.Lock()

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.path))
        sock.setblocking(False)
        self._sock = sock
        loop.add_reader(sock.fileno(), self._receive)
        self.feed.forward = self.send

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._sock is None:
            return
        self.feed.forward = None
        loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None
        self.path.unlink(missing_ok=True)

    def _peer_paths(self) -> list[str]:
        with self._lock:
            now = time.monotonic()
            if now - self._peers_read > PEER_REFRESH:
                self._peers = [str(p) for p in self.folder.glob("*.sock") if p != self.path]
                self._peers_read = now
            return list(self._peers)

    def send(self, change: Change) -> None:
        """Called from any thread, for every change this process commits."""
        sock = self._sock
        if sock is None:
            return
        data = encode(change)
        for peer in self._peer_paths():
            try:
                sock.sendto(data, peer)
            except (ConnectionRefusedError, FileNotFoundError):
                self._forget(peer)  # that worker is gone
            except BlockingIOError:
                pass  # its queue is full: it will re-read the store on its next command

    def _forget(self, peer: str) -> None:
        with self._lock:
            if peer in self._peers:
                self._peers.remove(peer)
        try:
            os.unlink(peer)
        except OSError:
            pass

    def _receive(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(512)
            except (BlockingIOError, InterruptedError):
                return
            change = decode(data)
            if change is not None:
                self.feed.publish_local(change)
