"""Nothing acknowledged is lost: SIGKILL the server in the middle of a load."""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import subprocess
import sys
import threading
from pathlib import Path

from postbote.store.sqlite import SqliteStore
from tests.core.test_cli_and_serve import SERVICES, free_port, start_serve, write_config


def sender(port: int, ids: range, acked: list[str], stop: threading.Event) -> None:
    try:
        client = smtplib.SMTP("127.0.0.1", port, timeout=30)
        for i in ids:
            if stop.is_set():
                return
            msg = f"Message-ID: <crash-{i}@test>\r\nSubject: load {i}\r\n\r\nbody {i}\r\n".encode()
            client.sendmail("load@example.org", ["alice@localhost"], msg)
            acked.append(f"crash-{i}")  # only after the 250
    except (OSError, smtplib.SMTPException):
        return  # the server died under us: what was acknowledged is in `acked`


async def stored_ids(data: Path) -> list[str]:
    store = SqliteStore(data)
    await store.open()
    account = await store.get_account("alice@localhost")
    box = await store.get_mailbox(account.id, "INBOX")
    ids = []
    for m in await store.list_messages(box.id):
        raw = await store.read_blob(m.blob_id)
        ids.append(raw.split(b"Message-ID: <", 1)[1].split(b"@", 1)[0].decode())
    await store.close()
    return ids


def test_sigkill_during_500_message_load_loses_no_acknowledged_message(tmp_path):
    ports = {name: free_port() for name in SERVICES}
    config = write_config(tmp_path, ports)
    proc = start_serve(config)
    try:
        r = subprocess.run([sys.executable, "-m", "postbote", "--config", str(config), "user", "add",
                            "alice@localhost", "--password-stdin"], input="long-password\n",
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        acked: list[str] = []
        stop = threading.Event()
        threads = [threading.Thread(target=sender, args=(ports["smtp"], range(k, 500, 10), acked, stop))
                   for k in range(10)]
        for t in threads:
            t.start()
        while len(acked) < 150 and any(t.is_alive() for t in threads):
            threading.Event().wait(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join(30)
    finally:
        proc.kill()
        proc.wait()
    assert len(acked) >= 150
    ids = asyncio.run(stored_ids(tmp_path / "data"))
    assert len(ids) == len(set(ids)), "a message was stored twice"
    missing = set(acked) - set(ids)
    assert not missing, f"acknowledged but lost: {sorted(missing)[:5]}"
    # At most the transactions in flight at the kill (one per sender) are
    # stored without their 250 having reached the client.
    assert len(ids) - len(acked) <= 10

    # The server starts again on the same data and keeps serving.
    proc = start_serve(config)
    try:
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=30) as c:
            c.sendmail("x@example.org", ["alice@localhost"], b"Subject: after\r\n\r\nrestart\r\n")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
