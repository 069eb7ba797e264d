"""Wiring: settings → store, services → listeners, and the process's life.

``App`` is what ``postbote serve`` runs and what tests start in a thread: it
opens the store, builds the services once, asks each protocol server for its
listeners, and on SIGTERM drains: listening sockets close first (new
connections are refused), sessions get a grace period to finish their
transaction, then the store closes.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor

from postbote.accounts.service import AccountService
from postbote.config import Settings
from postbote.delivery.service import DeliveryService
from postbote.dns import Resolver
from postbote.filters.clamav import ClamavFilter
from postbote.filters.greylist import GreylistFilter
from postbote.filters.pipeline import MessageFilter
from postbote.filters.rspamd import RspamdFilter
from postbote.filters.spam import SpamFilter
from postbote.filters.spam_training import SpamTrainer
from postbote.filters.submission import SubmissionHeaders
from postbote.listener import ConnectionLimits, Listener
from postbote.log import event
from postbote.mail.address import normalize_domain
from postbote.mailauth.dkim_sign import DkimSigner
from postbote.mailauth.filter import MailAuthFilter
from postbote.queue.runner import QueueRunner
from postbote.store import AlreadyExists, Store, open_store
from postbote.store.feedbus import FeedBus
from postbote.tls import certificate_paths, server_context

log = logging.getLogger("postbote")

# Each module has ``listeners(app) -> list[Listener]``; one per protocol.
SERVER_MODULES: tuple[str, ...] = ("postbote.smtp.server", "postbote.pop3.server", "postbote.imap.server",
                                   "postbote.managesieve.server", "postbote.web.server")

DRAIN_GRACE = 30.0


async def ensure_domains(store: Store, names: tuple[str, ...]) -> None:
    """Add the configured domains that the store does not have yet."""
    for name in names:
        domain = normalize_domain(name)
        if await store.get_domain(domain) is None:
            try:
                await store.add_domain(domain)
            except AlreadyExists:
                pass  # another process added it meanwhile


def build_filters(app: "App") -> list[MessageFilter]:
    """The filter pipeline, in order (see postbote/filters/pipeline.py): inbound
    checks first; for our users' mail, the submission fixes and then the DKIM
    signature, which must cover the Date and Message-ID they add."""
    return [
        MailAuthFilter(app.settings.hostname, app.settings.mailauth, app.resolver,
                       store=app.store, executor=app.executor, data_dir=app.settings.data_path),
        *spam_filters(app),
        SubmissionHeaders(app.settings.hostname),
        DkimSigner(app.settings.data_path),
    ]


def spam_filters(app: "App") -> list[MessageFilter]:
    """Virus scanning, greylisting, rspamd, then the built-in spam score (postbote/filters/)."""
    return [GreylistFilter(app.settings.greylist, app.store),  # first: a deferred message costs no scanning
            ClamavFilter(app.settings.clamav, app.executor),
            RspamdFilter(app.settings.rspamd, app.executor),
            SpamFilter(app.settings.spam, app.store, app.resolver, app.executor)]


class App:
    def __init__(self, settings: Settings, prebound: dict[str, socket.socket] | None = None,
                 shared_store: bool = False) -> None:
        """``prebound``: listening sockets bound by a parent process; ``shared_store``:
        other worker processes use the same store (their changes and logins come over a FeedBus)."""
        self.settings = settings
        self.prebound = prebound or {}
        self.shared_store = shared_store
        self.executor = ThreadPoolExecutor(max_workers=settings.worker_threads, thread_name_prefix="work")
        self.store: Store = open_store(settings.data_path, workers=settings.worker_threads)
        self.accounts = AccountService(self.store, settings.limits)
        # Other processes share the store (the other workers, admin commands): this one
        # hears of their store changes and logins, and they of its.
        self.feed_bus = FeedBus(settings.data_path / "run" / "feed")
        self.feed_bus.carry_changes(self.store.changes)
        self.accounts.join(self.feed_bus)
        self.delivery = DeliveryService(self.store, settings.hostname)
        self.resolver = Resolver(settings.dns)
        self.spam = SpamTrainer(self.store, self.executor)  # training from users' moves into and out of Junk
        self.filters: list[MessageFilter] = build_filters(self)
        self.connection_limits = ConnectionLimits(settings.limits.max_connections,
                                                  settings.limits.max_connections_per_ip)
        self.listeners: list[Listener] = []
        self.ssl_context: ssl.SSLContext | None = None
        self.stopping = asyncio.Event()
        self.queue: QueueRunner | None = None

    def listener(self, service: str) -> Listener:
        """The listener of one service (tests use it to learn the bound port)."""
        return next(lst for lst in self.listeners if lst.service == service)

    async def start(self) -> None:
        await self.store.open()
        self.feed_bus.open(asyncio.get_running_loop())
        self.delivery.watch_scripts()
        await ensure_domains(self.store, self.settings.domains)
        cert, key = await asyncio.get_running_loop().run_in_executor(
            self.executor, certificate_paths, self.settings)
        self.ssl_context = server_context(cert, key)
        for name in SERVER_MODULES:
            self.listeners += importlib.import_module(name).listeners(self)
        self.queue = QueueRunner(self)
        self.queue.start()
        self.delivery.on_queued = self.queue.poke
        try:
            for lst in self.listeners:
                if lst.addresses:
                    await lst.start(self.prebound)
        except BaseException:
            await self.stop(grace=0)
            raise
        for lst in self.listeners:
            for addr, port in zip(lst.addresses, lst.ports):
                event(log, "listening", service=lst.service, address=f"{addr.host}:{port}")

    async def stop(self, grace: float = DRAIN_GRACE) -> None:
        self.stopping.set()
        for lst in self.listeners:
            lst.stop_accepting()
        await asyncio.gather(*(lst.drain(grace) for lst in self.listeners))
        if self.queue is not None:  # let outbound transactions in flight finish
            await self.queue.stop(grace)
        self.feed_bus.close(asyncio.get_running_loop())
        await self.spam.idle()  # finish training started by sessions before the store closes
        await self.store.close()
        self.executor.shutdown(wait=False)
        event(log, "stopped")

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT, then drain and stop."""
        await self.start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        event(log, "ready", hostname=self.settings.hostname, data_dir=str(self.settings.data_path))
        await stop.wait()
        event(log, "stopping: draining connections")
        await self.stop()


def run_forever(settings: Settings, prebound: dict[str, socket.socket] | None = None,
                shared_store: bool = False) -> None:
    app = App(settings, prebound, shared_store)
    try:
        import uvloop
    except ImportError:
        asyncio.run(app.run())
    else:
        uvloop.run(app.run())
