"""The ASGI application: routes of every part, and the state they share.

``WebState`` is built once per App (both HTTP listeners share it) and holds the
operations, the session signer, the ring of recent events and the templates.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute
from starlette.templating import Jinja2Templates

from postbote import metrics
from postbote.web.ops import Operations
from postbote.web.recent import RecentEvents
from postbote.web.session import Sessions, load_key

if TYPE_CHECKING:
    from postbote.app import App

TEMPLATES = Path(__file__).parent / "templates"

# Served over plain HTTP even when redirect_to_https is on: ACME needs port 80 (RFC 8555 §8.3),
# and monitoring often scrapes over a private network.
PLAIN_HTTP_PATHS = ("/.well-known/acme-challenge/", "/metrics", "/healthz", "/readyz")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; form-action 'self';"
                               " frame-ancestors 'none'",
}


def host_name(header: str) -> str:
    """The Host header without its port (``[v6]:443`` keeps its brackets)."""
    if header.startswith("["):
        return header.partition("]")[0] + "]"
    return header.partition(":")[0].lower()


class WebState:
    def __init__(self, app: "App") -> None:
        self.app = app
        self.ops = Operations(app)
        self.recent = RecentEvents()
        self.templates = Jinja2Templates(directory=str(TEMPLATES))
        self.sessions: Sessions | None = None
        self.acme_challenges: dict[str, str] = {}  # http-01 token -> key authorization
        self.acme: Any = None
        self._users = 0
        self.asgi = Starlette(routes=self._routes(), middleware=[Middleware(BaseHTTPMiddleware, dispatch=self._wrap)])

    def _routes(self) -> list[BaseRoute]:
        from postbote.web import admin, api, autoconfig, monitor

        return [*monitor.routes(self), *autoconfig.routes(self), *admin.routes(self), *api.routes(self)]

    async def start(self) -> None:
        self._users += 1
        if self._users > 1:
            return
        key = await asyncio.get_running_loop().run_in_executor(self.app.executor, load_key,
                                                                self.app.settings.data_path)
        self.sessions = Sessions(key, self.app.settings.http.session_seconds)
        self.recent.attach(self.app.settings.log.level)
        if self.app.settings.acme.enabled:
            from postbote.acme import AcmeManager

            self.acme = AcmeManager(self.app, self.acme_challenges)
            self.acme.start()

    async def stop(self) -> None:
        self._users -= 1
        if self._users > 0:
            return
        self.recent.detach()
        if self.acme is not None:
            await self.acme.stop()

    async def _wrap(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        path = request.url.path
        if (self.app.settings.http.redirect_to_https and request.url.scheme == "http"
                and not path.startswith(PLAIN_HTTP_PATHS)):
            host = host_name(request.headers.get("host", "")) or self.app.settings.hostname
            return RedirectResponse(f"https://{host}{path}", status_code=308)
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        group = path.strip("/").split("/")[0] or "root"
        if group not in ("admin", "api", "metrics", "healthz", "readyz", "autodiscover", ".well-known", "mail"):
            group = "other"
        metrics.HTTP_REQUESTS.labels(group, f"{response.status_code // 100}xx").inc()
        return response
