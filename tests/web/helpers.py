"""Plumbing for the web tests: plain HTTP requests to the test server, and an admin."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

ADMIN, ADMIN_PASSWORD = "admin@example.org", "admin-password-1"


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def request(port: int, path: str, method: str = "GET", body: bytes | None = None,
            headers: dict[str, str] | None = None, scheme: str = "http") -> Reply:
    req = urllib.request.Request(f"{scheme}://127.0.0.1:{port}{path}", data=body, method=method,
                                 headers=headers or {})
    handlers: list[Any] = [_NoRedirect()]
    if scheme == "https":
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        handlers.append(urllib.request.HTTPSHandler(context=ctx))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(req, timeout=30) as r:
            return Reply(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


def api(port: int, path: str, token: str | None, method: str = "GET", data: Any = None) -> Reply:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps(data).encode() if data is not None else (b"{}" if method in ("POST", "PUT") else None)
    return request(port, "/api/v1" + path, method, body, headers)


def make_admin(server: Any, address: str = ADMIN, password: str = ADMIN_PASSWORD) -> None:
    account = server.add_user(address, password)
    server.run(server.app.store.set_admin(account.id, True))


def make_token(server: Any, name: str = "test", address: str = ADMIN) -> str:
    import secrets

    from postbote.web.api import token_hash

    token = "pbt_" + secrets.token_urlsafe(32)

    async def add() -> None:
        account = await server.app.store.get_account(address)
        await server.app.store.add_api_token(name, token_hash(token), account.id)

    server.run(add())
    return token
