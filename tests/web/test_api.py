"""The JSON API: token authentication, every operation, and clear errors for bad input."""

from __future__ import annotations

import pytest

from tests.web.helpers import api, make_admin, make_token, request


@pytest.fixture
def token(server):
    make_admin(server)
    return make_token(server)


def test_requests_without_a_valid_token_are_refused(server, token):
    port = server.port("http")
    for path, method in (("/domains", "GET"), ("/accounts", "POST"), ("/queue", "GET"), ("/transactions", "GET")):
        assert api(port, path, None, method).status == 401
        assert api(port, path, "pbt_wrong", method).status == 401
    reply = request(port, "/api/v1/domains", headers={"Authorization": "Basic YTpi"})
    assert reply.status == 401 and reply.headers["www-authenticate"] == "Bearer"


def test_a_token_stops_working_when_its_account_is_no_admin_anymore(server, token):
    port = server.port("http")
    assert api(port, "/domains", token).status == 200
    account = server.run(server.app.store.get_account("admin@example.org"))
    server.run(server.app.store.set_admin(account.id, False))
    assert api(port, "/domains", token).status == 401


def test_domains_accounts_aliases_and_app_passwords_round_trip(server, token):
    port = server.port("http")
    assert api(port, "/domains", token, "POST", {"name": "New.Example"}).json() == {"name": "new.example"}
    assert "new.example" in api(port, "/domains", token).json()["domains"]
    created = api(port, "/accounts", token, "POST", {"address": "eve@new.example", "password": "long-enough-1",
                                                     "quota": "10M"})
    assert created.status == 201 and created.json()["quota"] == 10 * 1024 * 1024
    assert api(port, "/accounts/eve@new.example/quota", token, "PUT", {"quota": 0}).json() == {"quota": 0}
    assert api(port, "/accounts/eve@new.example/password", token, "PUT", {"password": "another-pass"}).status == 200
    app = api(port, "/accounts/eve@new.example/app-passwords", token, "POST", {"name": "phone"})
    assert app.status == 201 and len(app.json()["password"]) >= 16
    assert api(port, "/aliases", token, "POST", {"source": "info@new.example", "target": "eve@new.example"}).status == 201
    view = api(port, "/accounts/eve@new.example", token).json()
    assert view["aliases"] == ["info@new.example"] and view["app_passwords"] == ["phone"]
    assert api(port, "/accounts/eve@new.example/app-passwords/phone", token, "DELETE").status == 200
    assert api(port, "/aliases/info@new.example", token, "DELETE").status == 200
    assert api(port, "/accounts/eve@new.example", token, "DELETE").status == 200
    assert api(port, "/domains/new.example", token, "DELETE").status == 200
    records = api(port, "/domains/example.org/records", token).json()["records"]
    assert any("\tMX\t10 localhost." in line for line in records)


@pytest.mark.parametrize("path, method, body, field, words", [
    ("/domains", "POST", {"name": ""}, "name", "required"),
    ("/domains", "POST", {"name": "not a domain!"}, "name", "name:"),
    ("/domains", "POST", {"name": 42}, "name", "must be text"),
    ("/domains", "POST", {"name": "example.org"}, "name", "exists already"),
    ("/accounts", "POST", {"address": "nope", "password": "long-enough-1"}, "address", "address:"),
    ("/accounts", "POST", {"address": "x@example.org", "password": "short"}, "password", "at least 8"),
    ("/accounts", "POST", {"address": "x@unknown.test", "password": "long-enough-1"}, "address", "no domain"),
    ("/accounts", "POST", {"address": "x@example.org", "password": "long-enough-1", "quota": "lots"}, "quota",
     "size like"),
    ("/accounts/admin@example.org/quota", "PUT", {"quota": "-1"}, "quota", "size like"),
    ("/accounts/admin@example.org/password", "PUT", {}, "password", "at least 8"),
    ("/accounts/admin@example.org/app-passwords", "POST", {"name": "<script>"}, "name", "letters"),
    ("/accounts/ghost@example.org", "GET", None, "address", "no account"),
    ("/aliases", "POST", {"source": "a@example.org", "target": "not-an-address"}, "target", "target:"),
    ("/aliases", "POST", {"source": "a@foreign.test", "target": "admin@example.org"}, "source", "no domain"),
    ("/queue/abc!", "GET", None, "queue_id", "letters and digits"),
    ("/queue/ABC123/retry", "POST", {}, "queue_id", "no queued message"),
    ("/domains/example.org/check", "GET", None, None, None),
])
def test_bad_input_gets_a_clear_error_naming_the_field(server, token, path, method, body, field, words):
    reply = api(server.port("http"), path, token, method, body)
    if field is None:
        assert reply.status == 200
        return
    assert reply.status in (400, 404, 409), reply.body
    assert reply.json()["field"] == field
    assert words in reply.json()["error"]


def test_bodies_that_are_not_json_objects_are_refused(server, token):
    port = server.port("http")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    assert request(port, "/api/v1/domains", "POST", b"{not json", headers).json()["error"] == "the request body is not JSON"
    assert request(port, "/api/v1/domains", "POST", b"[1]", headers).status == 400
    assert request(port, "/api/v1/domains", "POST", b"{}" + b" " * 70_000, headers).status == 413


def test_queue_operations(server, token):
    from tests.smtp.helpers import submit

    port = server.port("http")
    with submit(server, "admin@example.org", "admin-password-1") as smtp:
        smtp.sendmail("admin@example.org", ["someone@remote.test"], b"Subject: out\r\n\r\nbody\r\n")
    [entry] = api(port, "/queue", token).json()["queue"]
    qid = entry["queue_id"]
    assert entry["recipients"] == ["someone@remote.test"]
    assert api(port, f"/queue/{qid}/hold", token, "POST").json()["entries"] == 1
    assert api(port, f"/queue/{qid}", token).json()["entries"][0]["held"] is True
    assert api(port, f"/queue/{qid}/release", token, "POST").json()["entries"] == 1
    assert api(port, f"/queue/{qid}/retry", token, "POST").json()["entries"] == 1
    assert api(port, f"/queue/{qid}", token, "DELETE").json()["entries"] == 1
    assert api(port, "/queue", token).json()["queue"] == []
    events = api(port, "/transactions", token).json()["events"]
    assert any(e["event"] == "message" and e["queue_id"] == qid for e in events)


def test_openapi_document_describes_every_api_route(server):
    doc = request(server.port("http"), "/api/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    from starlette.routing import Route

    from postbote.web.api import PREFIX

    state = server.app.listener("http").state
    for route in state.asgi.routes:
        if isinstance(route, Route) and route.path.startswith(PREFIX):
            path = route.path[len(PREFIX):]
            for method in route.methods - {"HEAD"}:
                assert method.lower() in doc["paths"][path], (method, path)
