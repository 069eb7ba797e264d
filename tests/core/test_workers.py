"""serve --workers N: processes sharing the sockets and, through the bus, the change feed."""

from __future__ import annotations

import asyncio
import signal
import smtplib
import subprocess
import sys
import time

from postbote.store.changes import ChangeFeed
from postbote.store.feedbus import FeedBus, decode, encode
from postbote.store.types import Change
from tests.core.test_cli_and_serve import SERVICES, free_port, serve_log, write_config


def test_change_round_trips_through_the_wire_form():
    change = Change(3, 7, 42, frozenset({"new", "flags"}))
    assert decode(encode(change)) == change
    assert decode(b"garbage") is None


async def test_a_change_in_one_process_wakes_a_subscriber_in_another(tmp_path):
    loop = asyncio.get_running_loop()
    feed_a, feed_b = ChangeFeed(), ChangeFeed()
    bus_a = FeedBus(tmp_path / "feed", feed_a, name="a")
    bus_b = FeedBus(tmp_path / "feed", feed_b, name="b")
    bus_a.open(loop)
    bus_b.open(loop)
    try:
        with feed_b.subscribe(7) as sub:
            feed_a.publish(Change(7, 1, 5, frozenset({"new"})))  # as the store does after a commit
            changes = await sub.wait(timeout=5)
        assert changes == [Change(7, 1, 5, frozenset({"new"}))]
    finally:
        bus_a.close(loop)
        bus_b.close(loop)


def test_serve_with_two_workers_delivers_and_stops_cleanly(tmp_path):
    ports = {name: free_port() for name in SERVICES}
    config = write_config(tmp_path, ports)
    subprocess.run([sys.executable, "-m", "postbote", "--config", str(config), "user", "add", "alice@localhost",
                    "--password-stdin"], input="long-password\n", check=True, capture_output=True, text=True)
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "postbote", "--config", str(config), "serve", "--workers", "2"],
                                stderr=log, stdout=log)
    try:
        deadline = time.monotonic() + 30
        while serve_log(config).count("msg=ready") < 2 and time.monotonic() < deadline:
            assert proc.poll() is None, serve_log(config)
            time.sleep(0.1)
        assert serve_log(config).count("msg=ready") == 2
        for i in range(20):  # the kernel spreads these over both workers
            with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=30) as c:
                c.sendmail("x@example.org", ["alice@localhost"], f"Subject: {i}\r\n\r\nhi\r\n".encode())
        out = subprocess.run([sys.executable, "-m", "postbote", "--config", str(config), "mailbox", "list",
                              "alice@localhost"], capture_output=True, text=True, check=True).stdout
        assert "INBOX\tmessages=20\t" in out
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    log = serve_log(config)
    assert proc.returncode == 0, log
    assert "worker died" not in log and "Traceback" not in log, log
    assert log.count("msg=\"worker started\"") == 2, log
