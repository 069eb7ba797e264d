"""SIGKILL with 200 messages queued: after a restart each is delivered, none twice but the one in flight."""

from __future__ import annotations

import collections
import os
import signal
import smtplib
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.core.test_cli_and_serve import SERVICES, free_port
from tests.queue.conftest import LOCAL_DOMAIN, PEER_HOSTS, route_to, wait_for
from tests.queue.peers import Peer
from tests.smtp.helpers import insecure_context

ALICE = f"alice@{LOCAL_DOMAIN}"
COUNT = 200


def write_config(tmp_path: Path, ports: dict[str, int], dns_address: str, mx_port: int) -> Path:
    lines = [f'data_dir = "{tmp_path / "data"}"', 'hostname = "mail.postbote.test"', f'domains = ["{LOCAL_DOMAIN}"]',
             "[dns]", f'nameservers = ["{dns_address}"]', "timeout = 2.0",
             "[outbound]", f"port = {mx_port}", "poll_interval = 0.05", 'retry_schedule = ["1s"]',
             # One connection per destination: at most one transaction is in flight at the kill.
             "connections_per_destination = 1", "messages_per_connection = 20", "lease_seconds = 2",
             "connect_timeout = 5", "command_timeout = 10", "data_timeout = 10",
             "[listen]"]
    lines += [f'{name} = ["127.0.0.1:{port}"]' for name, port in ports.items()]
    path = tmp_path / "postbote.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def serve(config: Path, log: Path) -> subprocess.Popen:
    """``postbote serve`` with its log in a file (a pipe nobody reads would stall it)."""
    out = open(log, "w")
    proc = subprocess.Popen([sys.executable, "-m", "postbote", "--config", str(config), "serve"],
                            stderr=out, stdout=out)
    out.close()
    wait_for(lambda: "msg=ready" in log.read_text() or proc.poll() is not None, timeout=30, what="ready")
    assert proc.poll() is None, log.read_text()[-2000:]
    return proc


def queued(db: Path) -> int:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute("SELECT count(*) FROM outbound").fetchone()[0]


def message_ids(peer: Peer) -> list[str]:
    with peer.lock:
        return [m.data.split(b"Message-ID: <", 1)[1].split(b"@", 1)[0].decode() for m in peer.messages]


def test_sigkill_with_200_queued_messages_delivers_each_exactly_once_but_the_one_in_flight(tmp_path, dns, mx_port):
    route_to(dns, "remote.test", PEER_HOSTS[0])
    ports = {name: free_port() for name in SERVICES}
    config = write_config(tmp_path, ports, dns.address, mx_port)
    proc = serve(config, tmp_path / "serve-1.log")
    peer = Peer(PEER_HOSTS[0], mx_port, delay=0.01)
    try:
        r = subprocess.run([sys.executable, "-m", "postbote", "--config", str(config), "user", "add", ALICE,
                            "--password-stdin"], input="long-password\n", capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        client = smtplib.SMTP("127.0.0.1", ports["submission"], timeout=30)
        client.starttls(context=insecure_context())
        client.login(ALICE, "long-password")
        for i in range(COUNT):  # the MX is down: every message stays queued
            client.sendmail(ALICE, [f"bob{i % 7}@remote.test"],
                            f"Message-ID: <crash-{i}@postbote.test>\r\nFrom: <{ALICE}>\r\n"
                            f"Subject: queued {i}\r\n\r\nbody {i}\r\n".encode())
        client.quit()
        peer.start()
        wait_for(lambda: len(peer.messages) >= 60, timeout=60, what="part of the queue to be sent")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        sent_before = len(peer.messages)
        assert sent_before < COUNT, "the kill came too late to test anything"

        proc = serve(config, tmp_path / "serve-2.log")
        wait_for(lambda: len(set(message_ids(peer))) == COUNT, timeout=90, what="every message after restart")
        wait_for(lambda: queued(tmp_path / "data" / "postbote.db") == 0, timeout=30, what="an empty queue")
        time.sleep(2.5)  # longer than the lease: anything left over would be sent again now
        counts = collections.Counter(message_ids(peer))
        assert set(counts) == {f"crash-{i}" for i in range(COUNT)}
        twice = [mid for mid, n in counts.items() if n > 1]
        assert len(twice) <= 1 and all(counts[m] == 2 for m in twice), counts.most_common(3)
        r = subprocess.run([sys.executable, "-m", "postbote", "--config", str(config), "queue", "list"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.strip() == "queue is empty", r.stdout
    finally:
        proc.kill()
        proc.wait(10)
        peer.stop()
