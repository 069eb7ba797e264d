"""The ManageSieve server over real loopback sockets with a real TLS handshake: a whole RFC 5804
session, the login rules and the brute-force throttle, and bad input."""

from __future__ import annotations

import base64
import re
import socket
import ssl

import pytest

from postbote import sieve
from postbote.accounts.passwords import generate_app_password, hash_password
from postbote.managesieve.server import core_config
from postbote.config import LimitSettings

USER, PASSWORD = "alice@localhost", "password123"
SCRIPT = ('require ["fileinto"];\r\n'
          'if header :contains "subject" "Ärger {1}" {\r\n  fileinto "Junk";\r\n}\r\n').encode()
INVALID = b'require "fileinto";\r\nkeep;\r\nfrobnicate "x";\r\n'


def client_tls() -> ssl.SSLContext:
    """The dev certificate is self-signed: no verification in tests."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Client:
    """A minimal ManageSieve client on a socket: reads lines and the literals in them."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def line(self) -> bytes:
        """One response line, with any literal it announces appended as it was sent."""
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        literal = re.search(rb"\{(\d+)\}$", line)
        if literal is None:
            return line
        size = int(literal[1])
        while len(self.buf) < size:
            self._fill()
        data, self.buf = self.buf[:size], self.buf[size:]
        return line + b"\r\n" + data + self.line()

    def response(self) -> list[bytes]:
        """Lines up to and including the final OK/NO/BYE."""
        lines = []
        while True:
            lines.append(self.line())
            if re.match(rb"(OK|NO|BYE)\b", lines[-1]):
                return lines

    def command(self, data: bytes) -> list[bytes]:
        self.sock.sendall(data + b"\r\n")
        return self.response()

    def starttls(self) -> list[bytes]:
        assert self.command(b"STARTTLS")[-1].startswith(b"OK")
        self.sock = client_tls().wrap_socket(self.sock)
        return self.response()

    def login(self, user: str = USER, password: str = PASSWORD) -> bytes:
        ir = base64.b64encode(f"\0{user}\0{password}".encode())
        return self.command(b'AUTHENTICATE "PLAIN" "' + ir + b'"')[-1]


def literal(data: bytes) -> bytes:
    return b"{%d+}\r\n" % len(data) + data


def connect(server) -> Client:
    sock = socket.create_connection(("127.0.0.1", server.port("managesieve")), timeout=10)
    client = Client(sock)
    assert client.response()[-1].startswith(b"OK")
    return client


@pytest.fixture
def alice(server):
    return server.add_user(USER, PASSWORD)


# --- the whole session -------------------------------------------------------------------------


def test_full_rfc5804_session_over_starttls(server, alice):
    client = Client(socket.create_connection(("127.0.0.1", server.port("managesieve")), timeout=10))
    greeting = client.response()
    assert b'"STARTTLS"' in greeting and b'"VERSION" "1.0"' in greeting
    caps = client.command(b"CAPABILITY")
    assert caps[:-1] == greeting[:-1] and caps[-1] == b'OK "capability completed"'
    assert any(line.startswith(b'"SIEVE" "') and b"fileinto" in line for line in caps)

    after_tls = client.starttls()
    assert b'"STARTTLS"' not in after_tls and b'"SASL" "PLAIN"' in after_tls
    assert after_tls[-1].startswith(b"OK")
    assert client.command(b"CAPABILITY")[:-1] == after_tls[:-1]

    assert client.login() == b'OK "logged in"'
    assert client.command(b'HAVESPACE "rules" %d' % len(SCRIPT)) == [b'OK "putscript would succeed"']
    assert client.command(b'PUTSCRIPT "rules" ' + literal(SCRIPT)) == [b'OK "putscript completed"']
    assert client.command(b'PUTSCRIPT "other" "keep;"') == [b'OK "putscript completed"']
    assert client.command(b'SETACTIVE "rules"') == [b'OK "setactive completed"']
    assert client.command(b"LISTSCRIPTS") == [b'"other"', b'"rules" ACTIVE', b'OK "listscripts completed"']
    got = client.command(b'GETSCRIPT "rules"')
    assert got == [b"{%d}\r\n" % len(SCRIPT) + SCRIPT, b'OK "getscript completed"']

    assert client.command(b'RENAMESCRIPT "rules" "filters"') == [b'OK "renamescript completed"']
    assert client.command(b'RENAMESCRIPT "other" "filters"')[-1].startswith(b"NO (ALREADYEXISTS)")
    assert client.command(b"LISTSCRIPTS")[:-1] == [b'"filters" ACTIVE', b'"other"']
    assert client.command(b'DELETESCRIPT "filters"')[-1].startswith(b"NO (ACTIVE)")
    assert client.command(b'DELETESCRIPT "other"') == [b'OK "deletescript completed"']
    assert client.command(b'GETSCRIPT "other"')[-1].startswith(b"NO (NONEXISTENT)")
    assert client.command(b'SETACTIVE ""') == [b'OK "setactive completed"']
    assert client.command(b'DELETESCRIPT "filters"') == [b'OK "deletescript completed"']

    assert client.command(b'CHECKSCRIPT ' + literal(INVALID))[-1].startswith(b'NO "line 3: ')
    assert client.command(b'CHECKSCRIPT ' + literal(SCRIPT)) == [b'OK "script is valid"']
    assert client.command(b"LOGOUT") == [b'OK "logout completed"']
    assert client.sock.recv(10) == b""
    assert server.run(server.app.store.sieve_list(alice.id)) == []


def test_putscript_of_an_invalid_script_stores_nothing_and_names_the_line(server, alice):
    client = connect(server)
    assert client.login() == b'OK "logged in"'
    reply = client.command(b'PUTSCRIPT "bad" ' + literal(INVALID))
    assert reply[-1].startswith(b'NO "line 3: ')
    assert server.run(server.app.store.sieve_get(alice.id, "bad")) is None


def test_script_over_the_size_limit_is_maxsize(server, alice):
    client = connect(server)
    client.login()
    big = b"#" * (sieve.MAX_SCRIPT_SIZE + 1)
    assert client.command(b'HAVESPACE "big" %d' % len(big))[-1].startswith(b"NO (QUOTA/MAXSIZE)")
    assert client.command(b'PUTSCRIPT "big" ' + literal(big))[-1].startswith(b"NO (QUOTA/MAXSIZE)")
    assert client.command(b"NOOP") == [b'OK "done"']


def test_getscript_returns_what_the_store_holds_byte_exact(server, alice):
    text = "# crlf and lf\r\nkeep;\n# ümlaut\r\n"
    server.run(server.app.store.sieve_put(alice.id, "x", text))
    client = connect(server)
    client.login()
    data = text.encode()
    assert client.command(b'GETSCRIPT "x"') == [b"{%d}\r\n" % len(data) + data, b'OK "getscript completed"']


# --- login rules -------------------------------------------------------------------------------


def test_plain_before_tls_is_allowed_only_from_loopback():
    limits = LimitSettings()
    assert core_config("h", "127.0.0.1", True, limits).allow_plaintext_auth
    assert not core_config("h", "192.0.2.1", True, limits).allow_plaintext_auth
    assert core_config("h", "192.0.2.1", True, limits).max_script_size == sieve.MAX_SCRIPT_SIZE


def test_wrong_password_is_refused(server, alice):
    client = connect(server)
    assert client.login(password="wrong") == b'NO "invalid user name or password"'
    assert client.command(b"LISTSCRIPTS")[-1].startswith(b"NO")


def test_wrong_passwords_lock_the_account_out_like_imap_and_pop3(tmp_path):
    import dataclasses

    from tests.harness import RunningServer, server_settings

    settings = server_settings(tmp_path / "data")
    # A low limit: each failure doubles the wait before the answer (0.25 s, 0.5 s, 1 s …).
    limits = dataclasses.replace(settings.limits, auth_failures_per_account=3)
    server = RunningServer(dataclasses.replace(settings, limits=limits)).start()
    try:
        server.add_user(USER, PASSWORD)
        for _ in range(3):
            client = connect(server)
            client.login(password="wrong")
            client.command(b"LOGOUT")
        client = connect(server)
        assert client.login() == b'NO (TRYLATER) "too many failed logins, try again later"'
    finally:
        server.stop()


def test_app_password_logs_in(server, alice):
    secret = generate_app_password()
    server.run(server.app.store.add_app_password(alice.id, "sieve-client", hash_password(secret)))
    client = connect(server)
    assert client.login(password=secret) == b'OK "logged in"'
    assert client.command(b"LISTSCRIPTS") == [b'OK "listscripts completed"']


def test_unauthenticate_forgets_the_login(server, alice):
    client = connect(server)
    client.login()
    assert client.command(b"UNAUTHENTICATE") == [b'OK "unauthenticate completed"']
    assert client.command(b"LISTSCRIPTS")[-1].startswith(b"NO")


# --- bad input -------------------------------------------------------------------------------


def test_garbage_is_answered_with_no_and_the_session_goes_on(server, alice):
    client = connect(server)
    assert client.command(b"\x00\xff garbage")[-1].startswith(b"NO")
    assert client.command(b"NOOP " + b"x" * 10_000)[-1] == b'NO "line too long (at most 4096 octets)"'
    assert client.command(b'NOOP "t"') == [b'OK (TAG "t") "done"']


def test_too_many_errors_end_with_bye(server, alice):
    client = connect(server)
    for _ in range(server.settings.limits.max_errors - 1):
        assert client.command(b"FROB")[-1].startswith(b"NO")
    client.sock.sendall(b"FROB\r\n")
    assert client.line().startswith(b"NO")
    assert client.line() == b'BYE "too many errors, closing connection"'
