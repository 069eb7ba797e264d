"""serve --workers 2 as one server: the brute-force limits and the metrics cover every worker.

The kernel hands each connection to whichever worker accepts first, so these
tests do not hope for a spread: they find out which worker holds the server
side of each connection (its socket inode in /proc) and choose, alternating
between the two workers on purpose.
"""

from __future__ import annotations

import imaplib
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from postbote import metrics
from postbote.web.admin import DASHBOARD_COUNTERS
from tests.core.test_cli_and_serve import SERVICES, free_port, serve_log, write_config
from tests.smtp.helpers import insecure_context

PASSWORD = "long-password"
C = TypeVar("C")


class Server:
    """A ``postbote serve --workers 2`` subprocess and its ports."""

    def __init__(self, tmp_path: Path, limits: dict[str, int] | None = None) -> None:
        self.ports = {name: free_port() for name in SERVICES}
        self.config = write_config(tmp_path, self.ports)
        if limits:
            with open(self.config, "a") as f:
                f.write("[limits]\n" + "".join(f"{k} = {v}\n" for k, v in limits.items()))
        self.proc: subprocess.Popen | None = None

    def cli(self, *args: str, stdin: str = "") -> str:
        return subprocess.run([sys.executable, "-m", "postbote", "--config", str(self.config), *args],
                              input=stdin, capture_output=True, text=True, check=True).stdout

    def start(self) -> "Server":
        log = open(self.config.parent / "serve.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "postbote", "--config", str(self.config), "serve",
                                      "--workers", "2"], stderr=log, stdout=log)
        log.close()
        self.wait_ready(2)
        return self

    def wait_ready(self, count: int) -> None:
        deadline = time.monotonic() + 30
        while serve_log(self.config).count("msg=ready") < count and time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, serve_log(self.config)
            time.sleep(0.1)
        assert serve_log(self.config).count("msg=ready") >= count, serve_log(self.config)

    def workers(self) -> list[int]:
        """The worker processes' ids: the children of the serve process."""
        assert self.proc is not None
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if int(stat.rpartition(")")[2].split()[1]) == self.proc.pid:
                    pids.append(int(entry))
        return sorted(pids)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def make(limits: dict[str, int] | None = None) -> Server:
        server = Server(tmp_path, limits)
        server.cli("user", "add", "alice@localhost", "--password-stdin", stdin=PASSWORD + "\n")
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def _server_side_inode(server_port: int, client_port: int) -> int:
    """The inode of the accepted socket (0 while it waits in the listen queue)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{server_port:04X}") and fields[2].endswith(f":{client_port:04X}"):
            return int(fields[9])
    return 0


def worker_of(sock: socket.socket, pids: list[int]) -> int:
    """Which worker accepted the connection of ``sock``."""
    server_port, client_port = sock.getpeername()[1], sock.getsockname()[1]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        inode = _server_side_inode(server_port, client_port)
        if inode:
            target = f"socket:[{inode}]"
            for pid in pids:
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    try:
                        if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                            return pid
                    except OSError:
                        pass  # closed while we looked
        time.sleep(0.02)
    raise AssertionError(f"no worker holds the server side of port {client_port}")


def connect_to(worker: int, pids: list[int], connect: Callable[[], C], sock_of: Callable[[C], socket.socket],
               close: Callable[[C], object]) -> C:
    """A connection that ``worker`` accepted: connect until the kernel gives it one."""
    for _ in range(200):
        conn = connect()
        if worker_of(sock_of(conn), pids) == worker:
            return conn
        close(conn)
    raise AssertionError(f"worker {worker} accepted none of 200 connections")


def imap_to(server: Server, worker: int, pids: list[int]) -> imaplib.IMAP4:
    return connect_to(worker, pids, lambda: imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30),
                      lambda c: c.sock, lambda c: c.shutdown())


def smtp_to(server: Server, service: str, worker: int, pids: list[int]) -> smtplib.SMTP:
    return connect_to(worker, pids, lambda: smtplib.SMTP("127.0.0.1", server.ports[service], timeout=30),
                      lambda c: c.sock, lambda c: c.close())


def http_get(server: Server, worker: int, pids: list[int], path: str, cookie: str = "") -> tuple[int, str]:
    """GET ``path`` from ``worker``: status and body."""
    sock = connect_to(worker, pids, lambda: socket.create_connection(("127.0.0.1", server.ports["http"]), 30),
                      lambda s: s, lambda s: s.close())
    with sock:
        head = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        sock.sendall((head + (f"Cookie: {cookie}\r\n" if cookie else "") + "\r\n").encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    headers, _, body = data.partition(b"\r\n\r\n")
    assert b"chunked" not in headers.lower()  # the body is read as sent
    return int(headers.split()[1]), body.decode()


def imap_login(server: Server, worker: int, pids: list[int], password: str) -> str:
    """LOGIN on a connection of ``worker``: "OK", or the NO's response code."""
    conn = imap_to(server, worker, pids)
    try:
        conn.login("alice@localhost", password)
        conn.logout()
        return "OK"
    except imaplib.IMAP4.error as exc:
        conn.shutdown()
        code = re.search(r"\[([A-Z]+)\]", str(exc))
        return code.group(1) if code else str(exc)


def smtp_auth(server: Server, worker: int, pids: list[int], password: str) -> int:
    conn = smtp_to(server, "submission", worker, pids)
    try:
        conn.starttls(context=insecure_context())
        conn.ehlo()
        conn.user, conn.password = "alice@localhost", password
        try:
            return conn.auth("PLAIN", conn.auth_plain)[0]
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code
    finally:
        conn.close()


def test_failures_on_both_workers_lock_the_ip_out_after_the_limit_for_the_whole_server(server_factory):
    server = server_factory({"auth_failures_per_ip": 4, "auth_failures_per_account": 1000}).start()
    a, b = pids = server.workers()
    assert len(pids) == 2
    # Two failures on each worker: alone, neither would reach the limit of 4.
    assert [imap_login(server, w, pids, "wrong") for w in (a, b, a, b)] == ["AUTHENTICATIONFAILED"] * 4
    # Locked out on both, for every protocol, even with the right password.
    assert imap_login(server, a, pids, PASSWORD) == "UNAVAILABLE"
    assert imap_login(server, b, pids, PASSWORD) == "UNAVAILABLE"
    assert smtp_auth(server, a, pids, PASSWORD) == 454
    assert smtp_auth(server, b, pids, PASSWORD) == 454


def test_a_login_on_one_worker_forgives_the_failures_counted_by_the_other(server_factory):
    server = server_factory({"auth_failures_per_ip": 3, "auth_failures_per_account": 1000}).start()
    a, b = pids = server.workers()
    assert smtp_auth(server, a, pids, "wrong") == 535
    assert smtp_auth(server, b, pids, "wrong") == 535
    assert imap_login(server, a, pids, PASSWORD) == "OK"  # forgives the IP, on both workers
    # Two more failures on b: without the forgiveness from a, b would count its third
    # (or, counting alone, its third and fourth) and lock the IP out.
    assert [imap_login(server, b, pids, "wrong") for _ in range(2)] == ["AUTHENTICATIONFAILED"] * 2
    assert imap_login(server, b, pids, PASSWORD) == "OK"


def metric(text: str, name: str, labels: str = "") -> float | None:
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else r"(\{\})?") + r" (\S+)"
    m = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    return float(m.group(m.lastindex)) if m else None


def admin_cookie(server: Server, worker: int, pids: list[int]) -> str:
    """Log in to /admin/ as alice, an administrator, through ``worker``."""
    import urllib.parse

    server.cli("admin", "add", "alice@localhost")
    sock = connect_to(worker, pids, lambda: socket.create_connection(("127.0.0.1", server.ports["http"]), 30),
                      lambda s: s, lambda s: s.close())
    with sock:  # one keep-alive connection: the login page, then the login
        sock.sendall(b"GET /admin/login HTTP/1.1\r\nHost: localhost\r\n\r\n")
        page = _read_response(sock)
        cookie = re.search(r"(?im)^set-cookie: ([^;]+)", page).group(1)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode({"csrf": csrf, "username": "alice@localhost", "password": PASSWORD})
        sock.sendall((f"POST /admin/login HTTP/1.1\r\nHost: localhost\r\nCookie: {cookie}\r\nConnection: close\r\n"
                      f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(form)}\r\n\r\n"
                      + form).encode())
        reply = _read_response(sock)
    assert reply.startswith("HTTP/1.1 303"), reply
    return re.search(r"(?im)^set-cookie: ([^;]+)", reply).group(1)


def _read_response(sock: socket.socket) -> str:
    """One HTTP response with a Content-Length body, from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length: (\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return (head + b"\r\n\r\n" + body).decode()


def test_metrics_and_dashboard_count_the_messages_of_every_worker(server_factory):
    server = server_factory().start()
    a, b = pids = server.workers()
    messages = 10
    for i in range(messages):  # five through each worker
        with smtp_to(server, "smtp", (a, b)[i % 2], pids) as c:
            c.sendmail("x@example.org", ["alice@localhost"], f"Subject: {i}\r\n\r\nhi\r\n".encode())
    for worker in (a, b, a, b, b, a):
        status, text = http_get(server, worker, pids, "/metrics")
        assert status == 200
        assert metric(text, "postbote_messages_received_total", 'service="smtp"') == messages, text
        assert metric(text, "postbote_messages_delivered_total") == messages
        assert metric(text, "postbote_connections_total", 'service="smtp"') >= messages
        assert metric(text, "postbote_delivery_seconds_count") == messages
        assert metric(text, "postbote_queue_size") == 0  # a state gauge: one value, not one per worker
        assert len(re.findall(r"^postbote_queue_size", text, re.MULTILINE)) == 1
    cookie = admin_cookie(server, a, pids)
    for worker in (a, b):
        status, page = http_get(server, worker, pids, "/admin/", cookie)
        assert status == 200
        assert f'<td id="received">{messages}</td>' in page, page


def test_a_dead_workers_counts_stay_in_the_sum_after_its_restart(server_factory):
    server = server_factory().start()
    a, b = pids = server.workers()
    for worker in (a, b, a):
        with smtp_to(server, "smtp", worker, pids) as c:
            c.sendmail("x@example.org", ["alice@localhost"], b"Subject: x\r\n\r\nhi\r\n")
    os.kill(a, signal.SIGKILL)
    server.wait_ready(3)  # the parent started a new worker in its place
    pids = server.workers()
    assert len(pids) == 2 and a not in pids
    for worker in pids:
        text = http_get(server, worker, pids, "/metrics")[1]
        assert metric(text, "postbote_messages_received_total", 'service="smtp"') == 3, text


def test_every_dashboard_figure_names_a_counter():
    assert set(DASHBOARD_COUNTERS.values()) <= set(metrics.counter_totals())
