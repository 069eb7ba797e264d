"""serve --workers N: processes sharing the sockets and, through the bus, the change feed.

(Throttle and metrics across workers: test_workers_share.py.)"""

from __future__ import annotations

import asyncio
import signal
import smtplib
import socket
import subprocess
import sys
import time

import pytest

from postbote.store.changes import ChangeFeed
from postbote.store.feedbus import FeedBus, decode, encode, frame, unframe
from postbote.store.types import Change
from tests.core.test_cli_and_serve import SERVICES, free_port, serve_log, write_config


def test_change_round_trips_through_the_wire_form():
    change = Change(3, 7, 42, frozenset({"new", "flags"}))
    assert decode(encode(change)) == change
    assert decode(b"garbage") is None


def test_a_notice_is_its_kind_a_space_and_the_payload():
    assert frame("auth", b'["fail","10.0.0.1",null]') == b'auth ["fail","10.0.0.1",null]'
    assert unframe(b"change 3 7 42 new") == ("change", b"3 7 42 new")
    assert unframe(b"change ") == ("change", b"")
    for bad in (b"", b"nospace", b"UPPER x", b"\xff\xfe x", b" x", b"much-too-long-a-kind-name x"):
        assert unframe(bad) is None, bad


def test_a_notice_kind_must_be_a_short_word():
    for bad in ("", "Auth", "two words", "x" * 17):
        with pytest.raises(ValueError):
            frame(bad, b"")


def _pair(tmp_path):
    a, b = FeedBus(tmp_path / "feed", name="a"), FeedBus(tmp_path / "feed", name="b")
    return a, b


async def _wait_for(items: list, count: int) -> None:
    for _ in range(500):
        if len(items) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"only {len(items)} of {count} notices arrived")


async def test_each_kind_of_notice_reaches_its_own_handler_in_the_other_process(tmp_path):
    loop = asyncio.get_running_loop()
    bus_a, bus_b = _pair(tmp_path)
    heard: dict[str, list[bytes]] = {"auth": [], "other": []}
    bus_b.on("auth", heard["auth"].append)
    bus_b.on("other", heard["other"].append)
    bus_a.open(loop)
    bus_b.open(loop)
    try:
        bus_a.send("auth", b"one")
        bus_a.send("other", b"two")
        await _wait_for(heard["other"], 1)
        assert heard == {"auth": [b"one"], "other": [b"two"]}
    finally:
        bus_a.close(loop)
        bus_b.close(loop)


async def test_garbage_unknown_kinds_and_a_failing_handler_do_not_stop_the_bus(tmp_path):
    loop = asyncio.get_running_loop()
    bus_a, bus_b = _pair(tmp_path)
    heard: list[bytes] = []

    def fails(payload: bytes) -> None:
        raise RuntimeError("a handler bug")

    bus_b.on("boom", fails)
    bus_b.on("auth", heard.append)
    bus_a.open(loop)
    bus_b.open(loop)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as raw:
            for junk in (b"", b"\xff\xff\xff", b"no-space-here", b"nobody listens"):
                raw.sendto(junk, str(bus_b.path))
        bus_a.send("boom", b"x")
        bus_a.send("auth", b"after")
        await _wait_for(heard, 1)
        assert heard == [b"after"]
    finally:
        bus_a.close(loop)
        bus_b.close(loop)


def test_sending_to_a_vanished_or_stuck_peer_loses_the_notice_quietly(tmp_path):
    bus = FeedBus(tmp_path / "feed", name="a")
    loop = asyncio.new_event_loop()
    try:
        bus.open(loop)
        stale = tmp_path / "feed" / "gone.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dead:
            dead.bind(str(stale))  # a worker that died without removing its socket
        stuck = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        stuck.bind(str(tmp_path / "feed" / "stuck.sock"))  # a worker that never reads
        try:
            for _ in range(1000):  # far past its queue
                bus.send("auth", b"x" * 100)
            assert not stale.exists()  # forgotten, and its socket file removed
        finally:
            stuck.close()
        bus.send("auth", b"y" * 5000)  # too large for a notice: not sent, no error
        bus.close(loop)
    finally:
        loop.close()


async def test_a_change_in_one_process_wakes_a_subscriber_in_another(tmp_path):
    loop = asyncio.get_running_loop()
    feed_a, feed_b = ChangeFeed(), ChangeFeed()
    bus_a, bus_b = _pair(tmp_path)
    bus_a.carry_changes(feed_a)
    bus_b.carry_changes(feed_b)
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
