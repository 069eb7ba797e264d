"""The admin web interface: server-rendered pages, forms with CSRF tokens, no JavaScript.

Every page needs a session of an administrator (an account marked with
``postbote admin add`` or listed in ``admin.accounts``). Logins go through the
same ``AccountService.authenticate`` as IMAP and SMTP, so the same throttle
(per IP and per account) slows and locks out password guessing. Every POST
checks the CSRF token of the session first; a mismatch is a 403 and changes
nothing. After a change the page is shown again with a note (post/redirect/get).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from postbote import metrics
from postbote.accounts.service import AuthOk
from postbote.log import event
from postbote.store import Account
from postbote.web.ops import InvalidInput
from postbote.web.session import COOKIE, Session, csrf_ok, password_fingerprint

if TYPE_CHECKING:
    from postbote.web.asgi import WebState

log = logging.getLogger("postbote.web")
MAX_FORM = 64 * 1024


def human_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + " UTC" if ts else "—"


class Admin:
    def __init__(self, state: "WebState") -> None:
        self.state = state
        self.app = state.app
        self.ops = state.ops
        state.templates.env.filters["size"] = human_size
        state.templates.env.filters["when"] = when

    # -- sessions --------------------------------------------------------------------
    def session(self, request: Request) -> Session | None:
        assert self.state.sessions is not None
        return self.state.sessions.decode(request.cookies.get(COOKIE))

    async def admin_of(self, session: Session | None) -> Account | None:
        if session is None or not session.uid:
            return None
        account = await self.app.store.get_account_by_id(session.uid)
        if account is None or account.disabled or password_fingerprint(account.password_hash) != session.pw:
            return None
        return account if account.id in await self.ops.admin_ids() else None

    def set_cookie(self, request: Request, response: Response, session: Session) -> None:
        assert self.state.sessions is not None
        response.set_cookie(COOKIE, self.state.sessions.encode(session), max_age=max(0, session.expires - int(time.time())),
                            path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https")

    def render(self, request: Request, template: str, session: Session, admin: Account | None,
               status: int = 200, **context: Any) -> Response:
        context.update(csrf=session.csrf, admin=admin, note=request.query_params.get("note", ""),
                       hostname=self.app.settings.hostname)
        response = self.state.templates.TemplateResponse(request, template, context, status_code=status)
        response.headers["Cache-Control"] = "no-store"
        return response

    # -- login -----------------------------------------------------------------------
    async def login_page(self, request: Request) -> Response:
        session = self.session(request)
        if await self.admin_of(session):
            return RedirectResponse("/admin/", 303)
        assert self.state.sessions is not None
        session = session or self.state.sessions.new()
        response = self.render(request, "login.html", session, None)
        self.set_cookie(request, response, session)
        return response

    async def login(self, request: Request) -> Response:
        session = self.session(request)
        form = await self.form(request)
        if not csrf_ok(session, form.get("csrf")):
            return self.csrf_failed(request)
        assert session is not None and self.state.sessions is not None
        username, password = str(form.get("username", ""))[:1000], str(form.get("password", ""))[:1000]
        ip = request.client.host if request.client else "?"
        result = await self.app.accounts.authenticate(username, password, ip)
        if not isinstance(result, AuthOk) or result.app_password is not None:
            error = "Too many failed logins: try again later." if getattr(result, "locked", False) \
                else "Wrong address or password."
            event(log, "admin login failed", user=username, ip=ip)
            return self.render(request, "login.html", session, None, 401, error=error, username=username)
        if result.account.id not in await self.ops.admin_ids():
            event(log, "admin login refused: not an admin", user=username, ip=ip)
            metrics.AUTH_FAILURES.inc()
            return self.render(request, "login.html", session, None, 403, username=username,
                               error="This account is not an administrator.")
        event(log, "admin login", user=result.account.address, ip=ip)
        fresh = self.state.sessions.new(result.account.id, password_fingerprint(result.account.password_hash))
        response = RedirectResponse("/admin/", 303)
        self.set_cookie(request, response, fresh)
        return response

    async def logout(self, request: Request) -> Response:
        session = self.session(request)
        form = await self.form(request)
        if not csrf_ok(session, form.get("csrf")):
            return self.csrf_failed(request)
        response = RedirectResponse("/admin/login", 303)
        response.delete_cookie(COOKIE, path="/")
        return response

    def csrf_failed(self, request: Request) -> Response:
        assert self.state.sessions is not None
        session = self.session(request) or self.state.sessions.new()
        response = self.render(request, "error.html", session, None, 403, title="Form expired",
                               message="The form's security token did not match (CSRF check). Nothing was changed. "
                                       "Reload the page and try again.")
        self.set_cookie(request, response, session)
        return response

    async def form(self, request: Request) -> dict[str, Any]:
        if int(request.headers.get("content-length") or 0) > MAX_FORM:
            return {}
        form = await request.form(max_files=0, max_fields=100)
        return {k: v for k, v in form.items() if isinstance(v, str)}

    # -- page plumbing ---------------------------------------------------------------
    def page(self, fn: Callable[..., Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            session = self.session(request)
            admin = await self.admin_of(session)
            if admin is None or session is None:
                return RedirectResponse("/admin/login", 303)
            try:
                return await fn(request, session, admin)
            except InvalidInput as exc:
                return self.render(request, "error.html", session, admin, exc.status, title="Not found"
                                   if exc.status == 404 else "Invalid input", message=exc.message)
        return handler

    def action(self, fn: Callable[..., Awaitable[str]], back: Callable[[Request], str],
               redisplay: Callable[..., Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """A POST: CSRF check, run ``fn(request, form)`` → note, redirect back; bad input re-shows the page."""
        async def handler(request: Request) -> Response:
            session = self.session(request)
            admin = await self.admin_of(session)
            form = await self.form(request)
            if admin is None or session is None:
                return RedirectResponse("/admin/login", 303)
            if not csrf_ok(session, form.get("csrf")):
                return self.csrf_failed(request)
            try:
                note = await fn(request, form)
            except InvalidInput as exc:
                return await redisplay(request, session, admin, status=exc.status, error=exc.message,
                                       error_field=exc.field, form=form)
            event(log, "admin change", user=admin.address, path=request.url.path, result=note)
            return RedirectResponse(back(request) + "?" + urlencode({"note": note}), 303)
        return handler

    # -- pages -----------------------------------------------------------------------
    async def dashboard(self, request: Request, session: Session, admin: Account, status: int = 200,
                        **extra: Any) -> Response:
        queue = await self.ops.queue()
        totals = metrics.counter_totals()  # the whole server's, whichever worker answers
        counters = {key: int(totals.get(name, 0)) for key, name in DASHBOARD_COUNTERS.items()}
        oldest = min((e.created for e in queue), default=0)
        return self.render(request, "dashboard.html", session, admin, status, counters=counters,
                           queue_size=len(queue), oldest=oldest, refusals=self.state.recent.refusals(), **extra)

    async def domains(self, request: Request, session: Session, admin: Account, status: int = 200,
                      **extra: Any) -> Response:
        return self.render(request, "domains.html", session, admin, status, domains=await self.ops.domains(),
                           **extra)

    async def domain(self, request: Request, session: Session, admin: Account, status: int = 200,
                     **extra: Any) -> Response:
        name = request.path_params["name"]
        records = await self.ops.records(name)
        checks = await self.ops.check(name) if request.query_params.get("check") else None
        return self.render(request, "domain.html", session, admin, status, name=name, records=records,
                           checks=checks, **extra)

    async def accounts(self, request: Request, session: Session, admin: Account, status: int = 200,
                       **extra: Any) -> Response:
        admins = await self.ops.admin_ids()
        return self.render(request, "accounts.html", session, admin, status, accounts=await self.ops.accounts(),
                           admins=admins, domains=await self.ops.domains(), aliases=await self.ops.aliases(),
                           **extra)

    async def account(self, request: Request, session: Session, admin: Account, status: int = 200,
                      **extra: Any) -> Response:
        view = await self.ops.view(request.path_params["address"])
        return self.render(request, "account.html", session, admin, status, account=view, **extra)

    async def queue(self, request: Request, session: Session, admin: Account, status: int = 200,
                    **extra: Any) -> Response:
        return self.render(request, "queue.html", session, admin, status, entries=await self.ops.queue(), **extra)

    async def queue_entry(self, request: Request, session: Session, admin: Account, status: int = 200,
                          **extra: Any) -> Response:
        entries = await self.ops.queue_entry(request.path_params["queue_id"])
        return self.render(request, "queue_entry.html", session, admin, status, entries=entries,
                           queue_id=request.path_params["queue_id"], **extra)

    async def transactions(self, request: Request, session: Session, admin: Account, status: int = 200,
                           **extra: Any) -> Response:
        return self.render(request, "transactions.html", session, admin, status,
                           events=self.state.recent.transactions(), **extra)


# The dashboard's traffic figures: counter names (postbote/metrics.py) summed over their labels.
DASHBOARD_COUNTERS = {
    "received": "postbote_messages_received", "delivered": "postbote_messages_delivered",
    "queued": "postbote_messages_queued", "sent": "postbote_messages_sent",
    "refused": "postbote_messages_refused", "auth_failures": "postbote_auth_failures",
    "connections": "postbote_connections",
}


def routes(state: "WebState") -> list[Route]:
    if not state.app.settings.http.admin:
        return []
    a = Admin(state)
    ops = state.ops

    def account_url(request: Request) -> str:
        return "/admin/accounts/" + quote(request.path_params["address"])

    async def add_domain(request: Request, form: dict) -> str:
        return f"domain {await ops.add_domain(form.get('name'))} added"

    async def delete_domain(request: Request, form: dict) -> str:
        await ops.delete_domain(request.path_params["name"])
        return f"domain {request.path_params['name']} deleted"

    async def create_account(request: Request, form: dict) -> str:
        account = await ops.create_account(form.get("address"), form.get("password"), form.get("quota") or None)
        return f"account {account.address} created"

    async def add_alias(request: Request, form: dict) -> str:
        source, target = await ops.add_alias(form.get("source"), form.get("target"))
        return f"alias {source} → {target} added"

    async def delete_alias(request: Request, form: dict) -> str:
        await ops.delete_alias(form.get("source"), form.get("target"))
        return f"alias {form.get('source')} deleted"

    async def set_password(request: Request, form: dict) -> str:
        if form.get("password") != form.get("confirm"):
            raise InvalidInput("confirm", "the two passwords differ")
        await ops.set_password(request.path_params["address"], form.get("password"))
        return "password changed"

    async def set_quota(request: Request, form: dict) -> str:
        quota = await ops.set_quota(request.path_params["address"], form.get("quota"))
        return f"quota set to {human_size(quota) if quota else 'unlimited'}"

    async def add_app_password(request: Request, form: dict) -> str:
        secret = await ops.add_app_password(request.path_params["address"], form.get("name"))
        return f"app password {form.get('name', '').strip()} created: {secret} (shown once: copy it now)"

    async def delete_app_password(request: Request, form: dict) -> str:
        await ops.delete_app_password(request.path_params["address"], form.get("name"))
        return f"app password {form.get('name')} revoked"

    async def delete_account(request: Request, form: dict) -> str:
        if form.get("confirm") != request.path_params["address"]:
            raise InvalidInput("confirm", "type the account's address to confirm the deletion")
        await ops.delete_account(request.path_params["address"])
        return f"account {request.path_params['address']} deleted"

    def queue_action(kind: str) -> Callable[[Request, dict], Awaitable[str]]:
        async def run(request: Request, form: dict) -> str:
            qid = request.path_params["queue_id"]
            if kind == "retry":
                n = await ops.queue_retry(qid)
            elif kind == "delete":
                n = await ops.queue_delete(qid)
            else:
                n = await ops.queue_hold(qid, kind == "hold")
            return f"{kind}: {n} queue entries of {qid}"
        return run

    def fixed(path: str) -> Callable[[Request], str]:
        return lambda request: path

    def back_to(view: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
        async def redisplay(request: Request, session: Session, admin: Account, **extra: Any) -> Response:
            try:
                return await view(request, session, admin, **extra)
            except InvalidInput as exc:  # the page itself is gone (e.g. deleted meanwhile)
                return a.render(request, "error.html", session, admin, exc.status, title="Invalid input",
                                message=extra.get("error") or exc.message)
        return redisplay

    acct = back_to(a.account)
    return [
        Route("/", lambda request: RedirectResponse("/admin/", 307)),
        Route("/admin", lambda request: RedirectResponse("/admin/", 308)),
        Route("/admin/", a.page(a.dashboard)),
        Route("/admin/login", a.login_page, methods=["GET"]),
        Route("/admin/login", a.login, methods=["POST"]),
        Route("/admin/logout", a.logout, methods=["POST"]),
        Route("/admin/domains", a.page(a.domains), methods=["GET"]),
        Route("/admin/domains", a.action(add_domain, fixed("/admin/domains"), back_to(a.domains)), methods=["POST"]),
        Route("/admin/domains/{name}", a.page(a.domain), methods=["GET"]),
        Route("/admin/domains/{name}/delete",
              a.action(delete_domain, fixed("/admin/domains"), back_to(a.domains)), methods=["POST"]),
        Route("/admin/accounts", a.page(a.accounts), methods=["GET"]),
        Route("/admin/accounts", a.action(create_account, fixed("/admin/accounts"), back_to(a.accounts)),
              methods=["POST"]),
        Route("/admin/aliases", a.action(add_alias, fixed("/admin/accounts"), back_to(a.accounts)), methods=["POST"]),
        Route("/admin/aliases/delete", a.action(delete_alias, fixed("/admin/accounts"), back_to(a.accounts)),
              methods=["POST"]),
        Route("/admin/accounts/{address}", a.page(a.account), methods=["GET"]),
        Route("/admin/accounts/{address}/password", a.action(set_password, account_url, acct), methods=["POST"]),
        Route("/admin/accounts/{address}/quota", a.action(set_quota, account_url, acct), methods=["POST"]),
        Route("/admin/accounts/{address}/app-passwords", a.action(add_app_password, account_url, acct),
              methods=["POST"]),
        Route("/admin/accounts/{address}/app-passwords/delete", a.action(delete_app_password, account_url, acct),
              methods=["POST"]),
        Route("/admin/accounts/{address}/delete",
              a.action(delete_account, fixed("/admin/accounts"), acct), methods=["POST"]),
        Route("/admin/queue", a.page(a.queue), methods=["GET"]),
        Route("/admin/queue/{queue_id}", a.page(a.queue_entry), methods=["GET"]),
        *[Route(f"/admin/queue/{{queue_id}}/{kind}", a.action(queue_action(kind), fixed("/admin/queue"),
                                                              back_to(a.queue)), methods=["POST"])
          for kind in ("retry", "hold", "release", "delete")],
        Route("/admin/transactions", a.page(a.transactions), methods=["GET"]),
    ]
