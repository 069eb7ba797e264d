"""Real POP3 clients against the server: Debian's fetchmail and getmail6 download and delete
mail over STLS and implicit TLS. scripts/install-test-deps.sh installs both."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from postbote.store import DeliveryTarget
from tests.conftest import require

USER, PASSWORD = "alice@localhost", "password123"
MESSAGES = [
    b"From: a@example.org\r\nSubject: first\r\n\r\nbody one\r\n.dotted line\r\n",
    b"From: b@example.org\r\nSubject: second\r\n\r\nbody two\r\n",
    b"From: c@example.org\r\nSubject: third\r\n\r\n" + b"long line\r\n" * 20_000,
]


@pytest.fixture
def alice(server):
    account = server.add_user(USER, PASSWORD)
    for raw in MESSAGES:
        server.run(server.app.store.deliver(raw, [DeliveryTarget(account.id)]))
    return account


def inbox_count(server, account) -> int:
    mailbox = server.run(server.app.store.get_mailbox(account.id, "INBOX"))
    return len(server.run(server.app.store.list_messages(mailbox.id)))


def private_file(path: Path, text: str) -> Path:
    """Both clients refuse a configuration with a password that others can read."""
    path.write_text(text)
    path.chmod(0o600)
    return path


def run(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "FETCHMAILHOME": str(home)}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)


def assert_delivered(files: list[Path]) -> None:
    got = sorted(f.read_bytes() for f in files)
    assert len(got) == len(MESSAGES)
    for raw in MESSAGES:
        # Clients add their own trace headers on top and may use LF line ends on disk.
        body = raw.split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n")
        assert any(body in g.replace(b"\r\n", b"\n") for g in got)


# --- fetchmail -------------------------------------------------------------------------------


def fetchmail(server, tmp_path: Path, service: str, tls_options: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    require(shutil.which("fetchmail") is not None, "fetchmail is not installed (scripts/install-test-deps.sh)")
    mda, out = mda_script(tmp_path)
    rc = private_file(tmp_path / "fetchmailrc", f"""\
set no bouncemail
poll 127.0.0.1 with proto POP3 port {server.port(service)} uidl
    user "{USER}" there with password "{PASSWORD}" is "local" here
    {tls_options}
    options fetchall no keep
    mda "{mda}"
""")
    result = run(["fetchmail", "--nosyslog", "-f", str(rc)], tmp_path)
    return result, out


def test_fetchmail_over_stls_downloads_and_deletes(server, alice, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="postbote.pop3")
    result, out = fetchmail(server, tmp_path, "pop3", "sslproto tls1.2+ no sslcertck")
    assert result.returncode == 0, result.stdout + result.stderr
    deadline = time.monotonic() + 5  # the session logs just after its QUIT reply
    while not (sessions := [r.fields for r in caplog.records if r.getMessage() == "pop3 session"]):
        assert time.monotonic() < deadline, "no pop3 session log line"
        time.sleep(0.02)
    assert all(f["tls"] for f in sessions if f["user"])
    assert_delivered(list(out.iterdir()))
    assert inbox_count(server, alice) == 0


def test_fetchmail_over_implicit_tls_downloads_and_deletes(server, alice, tmp_path):
    result, out = fetchmail(server, tmp_path, "pop3s", "ssl no sslcertck")
    assert result.returncode == 0, result.stdout + result.stderr
    assert_delivered(list(out.iterdir()))
    assert inbox_count(server, alice) == 0


# --- getmail6 --------------------------------------------------------------------------------


def mda_script(tmp_path: Path) -> tuple[Path, Path]:
    """A delivery command writing each message to its own file (no mail spool needed)."""
    out = tmp_path / "delivered"
    out.mkdir(exist_ok=True)
    mda = tmp_path / "mda.sh"
    mda.write_text(f'#!/bin/sh\ncat > "$(mktemp "{out}/msg.XXXXXX")"\n')
    mda.chmod(0o700)
    return mda, out


def getmail(server, tmp_path: Path, retriever: str, service: str, delete: bool) -> tuple[subprocess.CompletedProcess[str], Path]:
    require(shutil.which("getmail") is not None, "getmail (Debian getmail6) is not installed (scripts/install-test-deps.sh)")
    mda, out = mda_script(tmp_path)
    # An external MDA rather than getmail's Maildir, which refuses to deliver as root (CI).
    rc = private_file(tmp_path / "getmailrc", f"""\
[retriever]
type = {retriever}
server = 127.0.0.1
port = {server.port(service)}
username = {USER}
password = {PASSWORD}

[destination]
type = MDA_external
path = {mda}
allow_root_commands = true

[options]
verbose = 0
read_all = false
delete = {str(delete).lower()}
""")
    result = run(["getmail", f"--getmaildir={tmp_path}", f"--rcfile={rc}"], tmp_path)
    return result, out


def test_getmail_over_implicit_tls_downloads_and_deletes(server, alice, tmp_path):
    result, out = getmail(server, tmp_path, "SimplePOP3SSLRetriever", "pop3s", delete=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_delivered(list(out.iterdir()))
    assert inbox_count(server, alice) == 0


def test_getmail_keeping_mail_fetches_only_new_messages_by_uidl(server, alice, tmp_path):
    """getmail remembers UIDLs between runs: stable UIDLs mean nothing is fetched twice."""
    result, out = getmail(server, tmp_path, "SimplePOP3Retriever", "pop3", delete=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(list(out.iterdir())) == 3
    server.run(server.app.store.deliver(b"Subject: fourth\r\n\r\nnew\r\n", [DeliveryTarget(alice.id)]))
    result, out = getmail(server, tmp_path, "SimplePOP3Retriever", "pop3", delete=False)
    assert result.returncode == 0, result.stdout + result.stderr
    files = list(out.iterdir())
    assert len(files) == 4
    assert inbox_count(server, alice) == 4
