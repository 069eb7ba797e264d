"""Admin sessions, CSRF and refusals at the HTTP level; the operations' settings and CLI."""

from __future__ import annotations

import re
import urllib.parse

import pytest

from postbote.cli import main
from postbote.config import ConfigError, load_settings
from postbote.web.session import Sessions
from tests.web.helpers import ADMIN, ADMIN_PASSWORD, make_admin, request


def form(fields: dict[str, str]) -> bytes:
    return urllib.parse.urlencode(fields).encode()


def login(port: int, user: str = ADMIN, password: str = ADMIN_PASSWORD) -> tuple[str, str]:
    """Log in like a browser; returns (cookie header, the CSRF token of the new session)."""
    page = request(port, "/admin/login")
    cookie = page.headers["set-cookie"].split(";")[0]
    csrf = re.search(rb'name="csrf" value="([^"]+)"', page.body).group(1).decode()
    reply = request(port, "/admin/login", "POST", form({"csrf": csrf, "username": user, "password": password}),
                    {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status == 303, reply.body
    cookie = reply.headers["set-cookie"].split(";")[0]
    dashboard = request(port, "/admin/", headers={"Cookie": cookie})
    return cookie, re.search(rb'name="csrf" value="([^"]+)"', dashboard.body).group(1).decode()


def test_session_cookie_is_httponly_and_strict(server):
    make_admin(server)
    reply = request(server.port("http"), "/admin/login")
    cookie = reply.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert reply.headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in reply.headers["content-security-policy"]
    secure = request(server.port("https"), "/admin/login", scheme="https").headers["set-cookie"].lower()
    assert "secure" in secure


def test_changes_without_a_session_or_with_a_forged_one_are_refused(server):
    make_admin(server)
    port = server.port("http")
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    reply = request(port, "/admin/domains", "POST", form({"name": "evil.example", "csrf": "x"}), headers)
    assert reply.status == 303 and reply.headers["location"] == "/admin/login"
    cookie, csrf = login(port)
    forged = cookie[:-4] + ("aaaa" if not cookie.endswith("aaaa") else "bbbb")
    reply = request(port, "/admin/domains", "POST", form({"name": "evil.example", "csrf": csrf}),
                    {**headers, "Cookie": forged})
    assert reply.status == 303 and reply.headers["location"] == "/admin/login"
    reply = request(port, "/admin/domains", "POST", form({"name": "evil.example", "csrf": "wrong"}),
                    {**headers, "Cookie": cookie})
    assert reply.status == 403
    assert server.run(server.app.store.get_domain("evil.example")) is None
    reply = request(port, "/admin/domains", "POST", form({"name": "good.example", "csrf": csrf}),
                    {**headers, "Cookie": cookie})
    assert reply.status == 303 and server.run(server.app.store.get_domain("good.example")) is not None


def test_changing_the_admins_password_ends_their_sessions(server):
    make_admin(server)
    port = server.port("http")
    cookie, _ = login(port)
    assert request(port, "/admin/", headers={"Cookie": cookie}).status == 200
    server.run(server.app.store.set_password(ADMIN, "$argon2id$other"))
    assert request(port, "/admin/", headers={"Cookie": cookie}).status == 303


def test_sessions_expire_and_resist_tampering():
    sessions = Sessions(b"k" * 32, 60)
    s = sessions.new(uid=7, pw="fp", now=1000)
    cookie = sessions.encode(s)
    assert sessions.decode(cookie, now=1030) == s
    assert sessions.decode(cookie, now=1061) is None
    assert Sessions(b"x" * 32, 60).decode(cookie, now=1030) is None
    assert sessions.decode("garbage", now=1030) is None
    assert sessions.decode("a" * 5000, now=1030) is None


def test_plain_http_redirects_to_https_except_acme_and_monitoring(tmp_path):
    from postbote.config import HttpSettings
    from tests.harness import RunningServer, server_settings

    srv = RunningServer(server_settings(tmp_path / "d", http=HttpSettings(redirect_to_https=True))).start()
    try:
        port = srv.port("http")
        reply = request(port, "/admin/login", headers={"Host": "mail.example.org"})
        assert reply.status == 308 and reply.headers["location"] == "https://mail.example.org/admin/login"
        assert request(port, "/healthz").status == 200
        assert request(port, "/metrics").status == 200
        assert request(port, "/.well-known/acme-challenge/nothing").status == 404
        assert request(srv.port("https"), "/admin/login", scheme="https").status == 200
    finally:
        srv.stop()


def test_admin_off_serves_no_admin_or_api(tmp_path):
    from postbote.config import HttpSettings
    from tests.harness import RunningServer, server_settings

    srv = RunningServer(server_settings(tmp_path / "d", http=HttpSettings(admin=False))).start()
    try:
        assert request(srv.port("http"), "/admin/login").status == 404
        assert request(srv.port("http"), "/api/v1/domains").status == 404
        assert request(srv.port("http"), "/healthz").status == 200
    finally:
        srv.stop()


@pytest.mark.parametrize("text, message", [
    ('[acme]\ndirectory = "ftp://x"\n', "acme.directory must be an https:// URL"),
    ('[acme]\nchallenge = "dns-01"\n', 'acme.challenge must be "http-01" or "tls-alpn-01"'),
    ('[acme]\nenabled = true\n[tls]\ncert = "a"\nkey = "b"\n', "exclude each other"),
    ('[acme]\nnames = ["not a name"]\n', "acme.names must be domain names"),
    ('[admin]\naccounts = ["nobody"]\n', "admin.accounts must be account addresses"),
    ('[http]\nsession_seconds = 5\n', "http.session_seconds must be an integer from 60"),
    ('[listen]\nhttps = "x"\n', "listen.https must be"),
])
def test_operations_settings_are_validated(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(path)


def test_cli_admin_and_token_commands(tmp_path, capsys):
    data = ["--data-dir", str(tmp_path / "d")]
    assert main([*data, "domain", "add", "example.org"]) == 0
    import io
    import sys

    sys.stdin = io.StringIO("a-long-password\n")
    try:
        assert main([*data, "user", "add", ADMIN, "--password-stdin"]) == 0
    finally:
        sys.stdin = sys.__stdin__
    assert main([*data, "admin", "token", "bot", ADMIN]) == 1
    assert "is not an administrator" in capsys.readouterr().err
    assert main([*data, "admin", "add", ADMIN]) == 0
    assert main([*data, "admin", "list"]) == 0
    assert ADMIN in capsys.readouterr().out
    assert main([*data, "admin", "token", "bot", ADMIN]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("pbt_") and len(token) > 40
    assert main([*data, "admin", "tokens"]) == 0
    assert "bot\t" + ADMIN in capsys.readouterr().out
    assert main([*data, "admin", "revoke", "bot"]) == 0
    assert main([*data, "admin", "revoke", "bot"]) == 1
    assert main([*data, "admin", "del", ADMIN]) == 0
