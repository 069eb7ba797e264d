"""The SMTP servers driven by swaks, a real SMTP client used by mail admins."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import require

from .helpers import mailbox_messages


@pytest.fixture(autouse=True)
def need_swaks():
    require(shutil.which("swaks") is not None, "swaks is not installed (Debian package swaks)")


def swaks(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["swaks", "--hide-informational", *args], capture_output=True, text=True, timeout=60)


def test_swaks_delivers_over_mx(server):
    server.add_user("alice@localhost")
    r = swaks("--server", f"127.0.0.1:{server.port('smtp')}", "--from", "bob@example.org",
              "--to", "alice@localhost", "--header", "Subject: via swaks", "--body", "hello from swaks")
    assert r.returncode == 0, r.stdout + r.stderr
    [stored] = mailbox_messages(server, "alice@localhost")
    assert b"Subject: via swaks" in stored and b"hello from swaks" in stored


def test_swaks_pipelining_and_bdat(server):
    server.add_user("alice@localhost")
    r = swaks("--server", f"127.0.0.1:{server.port('smtp')}", "--from", "bob@example.org",
              "--to", "alice@localhost", "--pipeline", "--body", "pipelined")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "<** " not in r.stdout
    assert len(mailbox_messages(server, "alice@localhost")) == 1


@pytest.mark.parametrize("auth", ["PLAIN", "LOGIN"])
def test_swaks_starttls_and_auth_on_submission(server, auth):
    server.add_user("alice@localhost")
    server.add_user("carol@localhost")
    r = swaks("--server", f"127.0.0.1:{server.port('submission')}", "--tls", "--auth", auth,
              "--auth-user", "alice@localhost", "--auth-password", "password123",
              "--from", "alice@localhost", "--to", "carol@localhost")
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(mailbox_messages(server, "carol@localhost")) == 1


def test_swaks_implicit_tls_and_wrong_password(server):
    server.add_user("alice@localhost")
    r = swaks("--server", f"127.0.0.1:{server.port('submissions')}", "--tlsc", "--auth", "PLAIN",
              "--auth-user", "alice@localhost", "--auth-password", "wrong-one",
              "--from", "alice@localhost", "--to", "alice@localhost")
    assert r.returncode != 0
    assert "535 5.7.8" in r.stdout


def test_swaks_relay_denied(server):
    r = swaks("--server", f"127.0.0.1:{server.port('smtp')}", "--from", "spammer@example.org",
              "--to", "victim@elsewhere.example")
    assert r.returncode != 0
    assert "554 5.7.1" in r.stdout
