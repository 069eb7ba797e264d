"""A real postbote server for tests: the whole App on loopback, in a thread.

Every listener binds port 0 (the OS picks), the data folder is a temp dir,
and tests talk to it with real clients (smtplib, imaplib, poplib, swaks …).
``run()`` executes a coroutine on the server's own loop, for setting up
accounts or inspecting the store while it serves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from postbote.app import App
from postbote.config import DnsSettings, ListenAddress, ServiceSettings, Settings, load_settings
from postbote.store import Account

T = TypeVar("T")

ANY_PORT = (ListenAddress("127.0.0.1", 0),)


def server_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Test settings: every listener on a free port, DNS on the loopback test server."""
    from tests.dnsserver import shared

    base = load_settings(None, data_dir=str(data_dir))
    listen = ServiceSettings(**{f.name: ANY_PORT for f in dataclasses.fields(ServiceSettings)})
    dns = DnsSettings(nameservers=(shared().address,), timeout=2.0)
    return dataclasses.replace(base, listen=listen, **{"dns": dns, **overrides})


class RunningServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.app: App | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="postbote-test-server", daemon=True)

    def start(self) -> "RunningServer":
        self._thread.start()

        async def boot() -> App:
            app = App(self.settings)
            await app.start()
            return app

        self.app = self.run(boot())
        return self

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        future: Future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def port(self, service: str) -> int:
        assert self.app is not None
        return self.app.listener(service).ports[0]

    def add_user(self, address: str, password: str = "password123", quota: int | None = None) -> Account:
        assert self.app is not None
        app = self.app

        async def add() -> Account:
            domain = address.rpartition("@")[2]
            if await app.store.get_domain(domain) is None:
                await app.store.add_domain(domain)
            return await app.accounts.create(address, password, quota)

        return self.run(add())

    def stop(self, grace: float = 5) -> None:
        if self.app is not None:
            self.run(self.app.stop(grace=grace))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
