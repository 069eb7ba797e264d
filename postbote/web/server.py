"""The web server as a listener of the App: uvicorn's HTTP protocol on our own sockets.

``listeners(app)`` gives an ``http`` listener (plain: dev 8080, production 80
for ACME and redirects) and an ``https`` one (production 443) that share one
ASGI application. They look like ``postbote.listener.Listener`` to the App
(start, stop_accepting, drain, ports), so the App starts and drains them with
the others. uvicorn runs in the App's event loop; its own ``Server.serve`` is
not used because it would take over the process's signal handlers.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.server import ServerState

from postbote.config import ListenAddress
from postbote.listener import bind, socket_key

if TYPE_CHECKING:
    from postbote.app import App
    from postbote.web.asgi import WebState


class WebListener:
    def __init__(self, service: str, addresses: tuple[ListenAddress, ...], state: "WebState",
                 ssl_context: ssl.SSLContext | None) -> None:
        self.service = service
        self.addresses = addresses
        self.state = state
        self.ssl_context = ssl_context
        self.servers: list[asyncio.base_events.Server] = []
        self.started = False
        self.server_state = ServerState()
        self.config = uvicorn.Config(state.asgi, lifespan="off", log_config=None, access_log=False,
                                     proxy_headers=False, server_header=False, date_header=False,
                                     ws="none", http="h11", timeout_keep_alive=30, limit_concurrency=1000,
                                     h11_max_incomplete_event_size=64 * 1024)
        self.config.load()

    @property
    def ports(self) -> list[int]:
        return [s.sockets[0].getsockname()[1] for s in self.servers if s.sockets]

    def _protocol(self) -> asyncio.Protocol:
        return self.config.http_protocol_class(config=self.config, server_state=self.server_state, app_state={})

    async def start(self, prebound: dict[str, socket.socket] | None = None) -> None:
        """Listen on every address (``prebound``: sockets of ``serve --workers``, as for Listener)."""
        loop = asyncio.get_running_loop()
        await self.state.start()
        self.started = True
        for addr in self.addresses:
            sock = (prebound or {}).get(socket_key(self.service, addr)) or bind(self.service, addr)
            server = await loop.create_server(self._protocol, sock=sock, ssl=self.ssl_context, backlog=1024,
                                              ssl_handshake_timeout=30 if self.ssl_context else None)
            self.servers.append(server)

    def stop_accepting(self) -> None:
        for server in self.servers:
            server.close()

    async def drain(self, grace: float) -> None:
        """Finish the responses in flight (up to ``grace`` seconds), then close what is left."""
        for conn in list(self.server_state.connections):
            conn.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while (self.server_state.connections or self.server_state.tasks) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for task in list(self.server_state.tasks):
            task.cancel()
        for conn in list(self.server_state.connections):
            transport: Any = getattr(conn, "transport", None)
            if transport is not None:
                transport.close()
        for server in self.servers:
            await server.wait_closed()
        if self.started:
            self.started = False
            await self.state.stop()


def listeners(app: "App") -> list[WebListener]:
    from postbote.web.asgi import WebState

    state = WebState(app)
    listen = app.settings.listen
    return [WebListener("http", listen.http, state, None),
            WebListener("https", listen.https, state, app.ssl_context)]
