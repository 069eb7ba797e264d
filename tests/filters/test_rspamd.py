"""rspamd over /checkv2: a real rspamd (Debian package) on loopback, and a scripted peer for failures."""

from __future__ import annotations

import shutil
import smtplib
import socket
import tempfile
import threading
from pathlib import Path

import pytest

from postbote.config import RspamdSettings
from postbote.filters.rspamd import RspamdError, parse_verdict
from tests.conftest import require

from .conftest import header, message, send, stored
from .rspamd import Rspamd, available, free_port


@pytest.fixture(scope="module")
def rspamd():
    require(available(), "rspamd is not installed (Debian rspamd; scripts/install-test-deps.sh)")
    folder = Path(tempfile.mkdtemp(prefix="rspamd-"))
    daemon = Rspamd(folder).start()
    yield daemon
    daemon.stop()
    shutil.rmtree(folder, ignore_errors=True)


def with_rspamd(url: str, **fields: object) -> dict:
    return {"rspamd": RspamdSettings(enabled=True, url=url, timeout=10.0, **fields), "spam": {"enabled": False}}


def test_clean_message_is_accepted_with_rspamd_status(make_mx, rspamd):
    mx = make_mx(**with_rspamd(rspamd.url))
    send(mx, message())
    [delivered] = stored(mx)
    assert header(delivered, b"X-Rspamd-Status")[0].startswith(b"action=no_action")


def test_add_header_action_delivers_into_junk(make_mx, rspamd):
    mx = make_mx(**with_rspamd(rspamd.url))
    send(mx, message(subject="POSTBOTE-TEST-JUNK"))
    assert stored(mx) == []
    [junk] = stored(mx, "Junk")
    status = header(junk, b"X-Rspamd-Status")[0]
    assert status.startswith(b"action=add_header score=7.00") and b"POSTBOTE_TEST_JUNK" in status


def test_reject_action_is_refused_with_550_5_7_1(make_mx, rspamd):
    mx = make_mx(**with_rspamd(rspamd.url))
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(mx, message(subject="POSTBOTE-TEST-REJECT"))
    assert refused.value.smtp_code == 550 and b"5.7.1" in refused.value.smtp_error


def test_soft_reject_action_is_a_temporary_failure(make_mx, rspamd):
    mx = make_mx(**with_rspamd(rspamd.url))
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(mx, message(subject="POSTBOTE-TEST-SOFT"))
    assert refused.value.smtp_code == 451


def test_unreachable_rspamd_accepts_by_default_and_can_tempfail(make_mx):
    url = f"http://127.0.0.1:{free_port()}"
    mx = make_mx(**with_rspamd(url))
    send(mx, message())
    assert not header(stored(mx)[0], b"X-Rspamd-Status")
    strict = make_mx(**with_rspamd(url, on_error="tempfail"))
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(strict, message())
    assert refused.value.smtp_code == 451


def test_request_carries_the_envelope_and_the_password(make_mx):
    """A scripted peer records the request postbote sends and answers like rspamd."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    seen: list[bytes] = []

    def peer() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(next(l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")).split(b":")[1])
            while len(body) < length:
                body += conn.recv(65536)
            seen.append(head + b"\r\n\r\n" + body)
            answer = b'{"action": "add header", "score": 8.5, "required_score": 15, "symbols": {"X": {}}}'
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))

    threading.Thread(target=peer, daemon=True).start()
    mx = make_mx(**with_rspamd(f"http://127.0.0.1:{listener.getsockname()[1]}", password="s3cret"))
    send(mx, message(body="scripted"), sender="alice@example.org")
    listener.close()
    [request] = seen
    assert request.startswith(b"POST /checkv2 HTTP/1.0\r\n")
    for line in (b"IP: 127.0.0.1", b"Helo: mail.example.org", b"From: alice@example.org",
                 b"Rcpt: bob@example.net", b"Password: s3cret"):
        assert line in request
    assert request.endswith(b"scripted\r\n")
    assert len(stored(mx, "Junk")) == 1


def test_answer_that_is_not_a_verdict_is_an_error():
    assert parse_verdict(b'{"action": "no action", "score": 1}').action == "no action"
    with pytest.raises(RspamdError):
        parse_verdict(b"<html>")
    with pytest.raises(RspamdError):
        parse_verdict(b'{"score": 1}')
