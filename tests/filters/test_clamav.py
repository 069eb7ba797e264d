"""Virus scanning against a real clamd (Debian clamav-daemon) started here with its own signatures."""

from __future__ import annotations

import base64
import shutil
import smtplib
import socket
import tempfile
import threading
from pathlib import Path

import pytest

from postbote.config import ClamavSettings
from tests.conftest import require

from .clamd import EICAR, SIGNATURE, Clamd, available
from .conftest import header, message, send, stored


@pytest.fixture(scope="module")
def clamd():
    require(available(), "clamd is not installed (Debian clamav-daemon; scripts/install-test-deps.sh)")
    folder = Path(tempfile.mkdtemp(prefix="clamd-"))  # short: a unix socket path has a length limit
    daemon = Clamd(folder).start()
    yield daemon
    daemon.stop()
    shutil.rmtree(folder, ignore_errors=True)


def infected() -> bytes:
    attachment = base64.encodebytes(EICAR).decode().replace("\n", "\r\n")
    return message(subject="Invoice", extra='MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n',
                   body=f"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n"
                        f"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
                        f"Content-Disposition: attachment; filename=invoice.com\r\n\r\n{attachment}--b--")


def clamav(address: str, **fields: object) -> dict:
    return {"clamav": ClamavSettings(enabled=True, address=address, timeout=10.0, **fields)}


def test_clean_message_is_scanned_and_delivered(make_mx, clamd):
    mx = make_mx(**clamav(f"unix:{clamd.socket}"))
    send(mx, message())
    [delivered] = stored(mx)
    assert header(delivered, b"X-Virus-Status") == [b"Clean"]


def test_infected_message_is_refused_with_554_5_7_0(make_mx, clamd):
    mx = make_mx(**clamav(f"unix:{clamd.socket}"))
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(mx, infected())
    assert refused.value.smtp_code == 554
    assert b"5.7.0" in refused.value.smtp_error and SIGNATURE.encode() in refused.value.smtp_error
    assert stored(mx) == [] and stored(mx, "Junk") == []


def test_unreachable_scanner_is_a_temporary_failure_by_default(make_mx, tmp_path):
    mx = make_mx(**clamav(f"unix:{tmp_path / 'nothing.sock'}"))
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(mx, message())
    assert refused.value.smtp_code == 451 and b"4.7.0" in refused.value.smtp_error


def test_unreachable_scanner_can_be_configured_to_accept(make_mx):
    with socket.socket() as s:  # a TCP port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mx = make_mx(**clamav(f"tcp:127.0.0.1:{port}", on_error="accept"))
    send(mx, message())
    [delivered] = stored(mx)
    assert header(delivered, b"X-Virus-Status")[0].startswith(b"Unscanned")


def test_scanner_error_reply_is_a_temporary_failure(make_mx):
    """A clamd that answers an error (e.g. its size limit) must not let the message through."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def peer() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"INSTREAM size limit exceeded. ERROR\0")

    threading.Thread(target=peer, daemon=True).start()
    mx = make_mx(**clamav(f"tcp:127.0.0.1:{listener.getsockname()[1]}"))
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(mx, message())
    listener.close()
    assert refused.value.smtp_code == 451
