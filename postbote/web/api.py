"""The JSON API: the admin operations for scripts, with bearer-token authentication.

Tokens are made with ``postbote admin token add NAME ADMIN-ADDRESS``; only their
SHA-256 is stored. A request without a valid token of a (still) administrator
gets 401; bad input gets 400 with ``{"error": ..., "field": ...}``. The API is
described by the OpenAPI 3.1 document at ``/api/openapi.json``.
"""

from __future__ import annotations

import logging
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from postbote.log import event
from postbote.web.ops import InvalidInput, queue_json

if TYPE_CHECKING:
    from postbote.web.asgi import WebState

log = logging.getLogger("postbote.web")
MAX_BODY = 64 * 1024
PREFIX = "/api/v1"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def error(status: int, message: str, field: str | None = None) -> JSONResponse:
    body = {"error": message} | ({"field": field} if field else {})
    return JSONResponse(body, status, headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)


Handler = Callable[[Request, dict], Awaitable[Any]]


def routes(state: "WebState") -> list[Route]:
    if not state.app.settings.http.admin:
        return []
    ops = state.ops
    store = state.app.store

    async def authorized(request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token or len(token) > 200:
            return False
        found = await store.find_api_token(token_hash(token.strip()), int(time.time()))
        return found is not None and found.account_id in await ops.admin_ids()

    def endpoint(fn: Handler, status: int = 200) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            if not await authorized(request):
                return error(401, "authentication required: send 'Authorization: Bearer TOKEN' "
                                  "(make one with 'postbote admin token add')")
            body: dict = {}
            if request.method in ("POST", "PUT"):
                raw = await request.body()
                if len(raw) > MAX_BODY:
                    return error(413, f"request body larger than {MAX_BODY} bytes")
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    return error(400, "the request body is not JSON")
                if not isinstance(body, dict):
                    return error(400, "the request body must be a JSON object")
            try:
                result = await fn(request, body)
            except InvalidInput as exc:
                return error(exc.status, exc.message, exc.field)
            if request.method != "GET":
                event(log, "api change", method=request.method, path=request.url.path)
            return JSONResponse(result, status)
        return handler

    p = lambda request, name: request.path_params[name]  # noqa: E731

    async def list_domains(request: Request, body: dict) -> Any:
        return {"domains": await ops.domains()}

    async def add_domain(request: Request, body: dict) -> Any:
        return {"name": await ops.add_domain(body.get("name"))}

    async def delete_domain(request: Request, body: dict) -> Any:
        await ops.delete_domain(p(request, "name"))
        return {"deleted": p(request, "name")}

    async def records(request: Request, body: dict) -> Any:
        return {"records": await ops.records(p(request, "name"))}

    async def check(request: Request, body: dict) -> Any:
        return {"checks": [c.to_json() for c in await ops.check(p(request, "name"))]}

    async def list_accounts(request: Request, body: dict) -> Any:
        admins = await ops.admin_ids()
        return {"accounts": [{"address": a.address, "quota": a.quota, "used": a.used, "disabled": a.disabled,
                              "admin": a.id in admins} for a in await ops.accounts()]}

    async def create_account(request: Request, body: dict) -> Any:
        account = await ops.create_account(body.get("address"), body.get("password"), body.get("quota"))
        return (await ops.view(account.address)).to_json()

    async def get_account(request: Request, body: dict) -> Any:
        return (await ops.view(p(request, "address"))).to_json()

    async def delete_account(request: Request, body: dict) -> Any:
        await ops.delete_account(p(request, "address"))
        return {"deleted": p(request, "address")}

    async def set_password(request: Request, body: dict) -> Any:
        await ops.set_password(p(request, "address"), body.get("password"))
        return {"changed": True}

    async def set_quota(request: Request, body: dict) -> Any:
        return {"quota": await ops.set_quota(p(request, "address"), body.get("quota"))}

    async def add_app_password(request: Request, body: dict) -> Any:
        return {"name": str(body.get("name", "")).strip(),
                "password": await ops.add_app_password(p(request, "address"), body.get("name"))}

    async def delete_app_password(request: Request, body: dict) -> Any:
        await ops.delete_app_password(p(request, "address"), p(request, "name"))
        return {"deleted": p(request, "name")}

    async def list_aliases(request: Request, body: dict) -> Any:
        return {"aliases": [{"source": a.source, "target": a.target} for a in await ops.aliases()]}

    async def add_alias(request: Request, body: dict) -> Any:
        source, target = await ops.add_alias(body.get("source"), body.get("target"))
        return {"source": source, "target": target}

    async def delete_alias(request: Request, body: dict) -> Any:
        await ops.delete_alias(p(request, "source"), request.query_params.get("target"))
        return {"deleted": p(request, "source")}

    async def list_queue(request: Request, body: dict) -> Any:
        return {"queue": [queue_json(e) for e in await ops.queue()]}

    async def get_queue(request: Request, body: dict) -> Any:
        entries = await ops.queue_entry(p(request, "queue_id"))
        return {"queue_id": p(request, "queue_id"), "entries": [
            {"domain": e.domain, "sender": e.sender, "attempts": e.attempts, "held": e.held,
             "next_attempt": e.next_attempt, "last_reply": e.last_reply,
             "recipients": [{"address": r.address, "status": r.status, "last_reply": r.last_reply}
                            for r in e.recipients]} for e in entries]}

    def queue_action(kind: str) -> Handler:
        async def run(request: Request, body: dict) -> Any:
            qid = p(request, "queue_id")
            n = (await ops.queue_retry(qid) if kind == "retry" else await ops.queue_delete(qid)
                 if kind == "delete" else await ops.queue_hold(qid, kind == "hold"))
            return {"queue_id": qid, "action": kind, "entries": n}
        return run

    async def transactions(request: Request, body: dict) -> Any:
        return {"events": [e.to_json() for e in state.recent.transactions()]}

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document())

    return [
        Route("/api/openapi.json", openapi),
        Route(f"{PREFIX}/domains", endpoint(list_domains), methods=["GET"]),
        Route(f"{PREFIX}/domains", endpoint(add_domain, 201), methods=["POST"]),
        Route(f"{PREFIX}/domains/{{name}}", endpoint(delete_domain), methods=["DELETE"]),
        Route(f"{PREFIX}/domains/{{name}}/records", endpoint(records), methods=["GET"]),
        Route(f"{PREFIX}/domains/{{name}}/check", endpoint(check), methods=["GET"]),
        Route(f"{PREFIX}/accounts", endpoint(list_accounts), methods=["GET"]),
        Route(f"{PREFIX}/accounts", endpoint(create_account, 201), methods=["POST"]),
        Route(f"{PREFIX}/accounts/{{address}}", endpoint(get_account), methods=["GET"]),
        Route(f"{PREFIX}/accounts/{{address}}", endpoint(delete_account), methods=["DELETE"]),
        Route(f"{PREFIX}/accounts/{{address}}/password", endpoint(set_password), methods=["PUT"]),
        Route(f"{PREFIX}/accounts/{{address}}/quota", endpoint(set_quota), methods=["PUT"]),
        Route(f"{PREFIX}/accounts/{{address}}/app-passwords", endpoint(add_app_password, 201), methods=["POST"]),
        Route(f"{PREFIX}/accounts/{{address}}/app-passwords/{{name}}", endpoint(delete_app_password),
              methods=["DELETE"]),
        Route(f"{PREFIX}/aliases", endpoint(list_aliases), methods=["GET"]),
        Route(f"{PREFIX}/aliases", endpoint(add_alias, 201), methods=["POST"]),
        Route(f"{PREFIX}/aliases/{{source}}", endpoint(delete_alias), methods=["DELETE"]),
        Route(f"{PREFIX}/queue", endpoint(list_queue), methods=["GET"]),
        Route(f"{PREFIX}/queue/{{queue_id}}", endpoint(get_queue), methods=["GET"]),
        Route(f"{PREFIX}/queue/{{queue_id}}", endpoint(queue_action("delete")), methods=["DELETE"]),
        *[Route(f"{PREFIX}/queue/{{queue_id}}/{kind}", endpoint(queue_action(kind)), methods=["POST"])
          for kind in ("retry", "hold", "release")],
        Route(f"{PREFIX}/transactions", endpoint(transactions), methods=["GET"]),
    ]


# -- the OpenAPI document ---------------------------------------------------------------

def _op(summary: str, body: dict | None = None, status: str = "200", params: tuple[str, ...] = ()) -> dict:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {status: {"description": "done", "content": {"application/json": {"schema": {"type": "object"}}}},
                      "400": {"$ref": "#/components/responses/Invalid"},
                      "401": {"$ref": "#/components/responses/Unauthorized"}},
    }
    if params:
        op["parameters"] = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in params]
        op["responses"]["404"] = {"$ref": "#/components/responses/Invalid"}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "properties": body, "required": list(body)}}}}
    return op


def openapi_document() -> dict:
    s = {"type": "string"}
    quota = {"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string", "example": "500M"}]}
    paths = {
        "/domains": {"get": _op("List domains"), "post": _op("Add a domain", {"name": s}, "201")},
        "/domains/{name}": {"delete": _op("Delete a domain (no accounts or aliases left)", params=("name",))},
        "/domains/{name}/records": {"get": _op("The DNS records to publish", params=("name",))},
        "/domains/{name}/check": {"get": _op("Check the DNS records live", params=("name",))},
        "/accounts": {"get": _op("List accounts"),
                      "post": _op("Create an account", {"address": s, "password": s}, "201")},
        "/accounts/{address}": {"get": _op("An account with aliases and app passwords", params=("address",)),
                                "delete": _op("Delete an account and its mail", params=("address",))},
        "/accounts/{address}/password": {"put": _op("Set the password", {"password": s}, params=("address",))},
        "/accounts/{address}/quota": {"put": _op("Set the quota (0: unlimited)", {"quota": quota},
                                                 params=("address",))},
        "/accounts/{address}/app-passwords": {"post": _op("Make an app password (returned once)", {"name": s},
                                                          "201", params=("address",))},
        "/accounts/{address}/app-passwords/{name}": {"delete": _op("Revoke an app password",
                                                                   params=("address", "name"))},
        "/aliases": {"get": _op("List aliases"), "post": _op("Add an alias", {"source": s, "target": s}, "201")},
        "/aliases/{source}": {"delete": _op("Delete an alias (all targets, or ?target=)", params=("source",))},
        "/queue": {"get": _op("List the outbound queue")},
        "/queue/{queue_id}": {"get": _op("A queued message per destination", params=("queue_id",)),
                              "delete": _op("Remove without sending or bouncing", params=("queue_id",))},
        "/queue/{queue_id}/retry": {"post": _op("Attempt now", params=("queue_id",))},
        "/queue/{queue_id}/hold": {"post": _op("Hold", params=("queue_id",))},
        "/queue/{queue_id}/release": {"post": _op("Release a held message", params=("queue_id",))},
        "/transactions": {"get": _op("Recent transactions and refusals")},
    }
    error_schema = {"type": "object", "properties": {"error": s, "field": s}, "required": ["error"]}
    return {
        "openapi": "3.1.0",
        "info": {"title": "postbote admin API", "version": "1"},
        "servers": [{"url": PREFIX}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Invalid": {"description": "bad input or unknown object",
                            "content": {"application/json": {"schema": error_schema}}},
                "Unauthorized": {"description": "no valid token of an administrator",
                                 "content": {"application/json": {"schema": error_schema}}},
            },
        },
    }
