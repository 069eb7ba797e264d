"""Monitoring endpoints: Prometheus ``/metrics``, liveness ``/healthz``, readiness ``/readyz``."""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from postbote import metrics
from postbote.store import StoreError

if TYPE_CHECKING:
    from postbote.web.asgi import WebState


def routes(state: "WebState") -> list[Route]:
    app = state.app

    async def scrape(request: Request) -> Response:
        token = app.settings.http.metrics_token
        if token:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return PlainTextResponse("metrics need the bearer token of http.metrics_token\n", 401,
                                         headers={"WWW-Authenticate": "Bearer"})
        entries = await app.store.list_outbound()
        sizes = await asyncio.get_running_loop().run_in_executor(app.executor, metrics.measure_store,
                                                                 app.settings.data_path)
        metrics.set_state([e.created for e in entries], sizes)
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    async def healthz(request: Request) -> Response:
        """Alive: the event loop answers. (Restart the process if this fails.)"""
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        """Ready: the store answers and the server is not draining. (Take it out of the pool if not.)"""
        if app.stopping.is_set():
            return JSONResponse({"ready": False, "reason": "stopping"}, 503)
        started = time.monotonic()
        try:
            await asyncio.wait_for(app.store.list_domains(), 5)
        except (StoreError, asyncio.TimeoutError) as exc:
            return JSONResponse({"ready": False, "reason": f"store: {exc or 'timeout'}"}, 503)
        return JSONResponse({"ready": True, "store_ms": round((time.monotonic() - started) * 1000, 1)})

    return [Route("/metrics", scrape), Route("/healthz", healthz), Route("/readyz", readyz)]
