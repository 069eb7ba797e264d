"""Fixtures for outbound tests: the test DNS server and a postbote pointed at it and at test peers."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from postbote.config import DnsSettings, OutboundSettings
from tests.dnsserver import DnsServer
from tests.harness import RunningServer, server_settings
from tests.queue.peers import Peer, free_port

# Loopback addresses of the test MX hosts; every peer listens on the same port on its own address.
PEER_HOSTS = tuple(f"127.0.0.{n}" for n in range(2, 10))
LOCAL_DOMAIN = "postbote.test"


@pytest.fixture
def dns():
    srv = DnsServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def mx_port() -> int:
    return free_port(PEER_HOSTS)


def start_postbote(tmp: Path, dns: DnsServer, port: int, **outbound: Any) -> RunningServer:
    """A postbote for ``postbote.test`` whose outbound mail goes to ``port`` on the MX hosts' addresses."""
    options: dict[str, Any] = dict(port=port, poll_interval=0.05, retry_schedule=("1s",), connect_timeout=5,
                                   command_timeout=10, data_timeout=10, lease_seconds=30)
    options.update(outbound)
    settings = server_settings(tmp / "data", hostname="mail.postbote.test", domains=(LOCAL_DOMAIN,),
                               dns=DnsSettings(nameservers=(dns.address,), timeout=2.0),
                               outbound=OutboundSettings(**options))
    return RunningServer(settings).start()


def route_to(dns: DnsServer, domain: str, address: str, mx: str | None = None) -> None:
    """Publish ``domain`` MX → ``mx`` (default mx.DOMAIN) A → ``address``."""
    mx = mx or f"mx.{domain}"
    dns.add(domain, "MX", f"10 {mx}.")
    dns.add(mx, "A", address)


def wait_for(condition: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def queue_entries(server: RunningServer) -> list:
    return server.run(server.app.store.list_outbound())


def replace_outbound(settings, **changes):
    return dataclasses.replace(settings, outbound=dataclasses.replace(settings.outbound, **changes))


@pytest.fixture
def server(tmp_path, dns, mx_port):
    """A postbote with the user alice@postbote.test, delivering to ``mx_port``."""
    srv = start_postbote(tmp_path, dns, mx_port)
    srv.add_user(f"alice@{LOCAL_DOMAIN}")
    yield srv
    srv.stop()


@pytest.fixture
def peers():
    """Scripted peers a test starts (see ``scripted.peer``), stopped after it."""
    started: list[Peer] = []
    yield started
    for p in started:
        p.stop()
