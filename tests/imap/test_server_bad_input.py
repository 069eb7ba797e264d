"""Bad input over a real socket: every mistake gets BAD or NO with a response code, memory
stays bounded, and the connection stays usable where the RFC allows."""

from __future__ import annotations

import dataclasses
import resource
import time

from postbote.config import LimitSettings
from tests.harness import RunningServer, server_settings
from tests.imap.conftest import USER, RawImap, deliver, message


def _usable(client) -> None:
    assert client.command(b"NOOP", tag=b"ok")[-1].startswith(b"ok OK")


def test_unbalanced_parentheses_and_quotes(raw):
    client = raw()
    client.command(b"SELECT INBOX")
    assert client.command(b"FETCH 1 (FLAGS UID")[-1].startswith(b"t BAD")
    assert client.command(b'LIST "" "INBOX')[-1].startswith(b"t BAD")
    assert client.command(b"SEARCH (OR SEEN")[-1].startswith(b"t BAD")
    _usable(client)


def test_a_one_gigabyte_literal_is_refused_when_announced(raw):
    client = raw()
    client.send(b"t APPEND INBOX {1073741824}\r\n")
    reply = client.line()
    assert reply.startswith(b"t BAD [TOOBIG]") or reply.startswith(b"t NO [TOOBIG]"), reply
    _usable(client)


def test_a_non_synchronizing_literal_too_big_is_refused_and_skipped(raw):
    client = raw()
    size = 60 << 20  # above the 50 MiB default message size
    client.send(b"t APPEND INBOX {%d+}\r\n" % size)
    assert client.line().startswith(b"t BAD [TOOBIG]")
    chunk = b"x" * (1 << 20)
    for _ in range(size // len(chunk)):
        client.send(chunk)
    client.send(b"\r\n")
    _usable(client)


def test_a_large_literal_before_login_is_refused(raw):
    client = raw(login=False)
    client.send(b"t LOGIN {200000}\r\n")
    assert client.line().startswith(b"t BAD [TOOBIG]")
    _usable(client)


def test_a_100_kilobyte_line_gets_bad_without_being_buffered(server, raw):
    client = raw()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    client.send(b"t FETCH 1 (" + b"FLAGS " * 20000 + b")\r\n")
    reply = client.until(b"t")[-1]
    assert reply.startswith(b"t BAD") and b"longer than" in reply
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB
    _usable(client)


def test_invalid_sequence_sets(server, raw):
    deliver(server, USER, message("one"))
    client = raw()
    client.command(b"SELECT INBOX")
    for bad in (b"FETCH 0 FLAGS", b"FETCH 1:: FLAGS", b"FETCH a FLAGS", b"FETCH 99999999999 FLAGS",
                b"STORE -1 +FLAGS (\\Seen)"):
        assert client.command(bad)[-1].startswith(b"t BAD"), bad
    assert client.command(b"FETCH 5 FLAGS")[-1].startswith(b"t BAD [CLIENTBUG]")
    assert client.command(b"UID FETCH 5 FLAGS") == [b"t OK completed\r\n"]  # UIDs may be gone
    _usable(client)


def test_invalid_modified_utf7_names(raw):
    client = raw()
    for bad in (b"CREATE &Jjo", b"CREATE &AGE-", b"SELECT &-&-x&"):
        assert client.command(bad)[-1].startswith(b"t BAD"), bad
    _usable(client)


def test_commands_in_the_wrong_state(raw):
    client = raw(login=False)
    assert client.command(b"FETCH 1 FLAGS")[-1].startswith(b"t BAD [CLIENTBUG]")
    assert client.command(b"IDLE")[-1].startswith(b"t BAD [CLIENTBUG]")
    assert client.command(b"ENABLE CONDSTORE")[-1].startswith(b"t BAD [CLIENTBUG]")
    client.login()
    assert client.command(b"EXPUNGE")[-1].startswith(b"t BAD [CLIENTBUG]")
    assert client.command(b'LOGIN "a" "b"')[-1].startswith(b"t BAD [CLIENTBUG]")
    assert client.command(b"STARTTLS")[-1].startswith(b"t BAD [CLIENTBUG]")
    assert client.command(b"AUTHENTICATE PLAIN AGEAYg==")[-1].startswith(b"t BAD [CLIENTBUG]")
    assert client.command(b"SELECT Nowhere")[-1].startswith(b"t NO [NONEXISTENT]")
    _usable(client)


def test_unknown_command_and_garbage(raw):
    client = raw()
    assert client.command(b"FROBNICATE")[-1].startswith(b"t BAD")
    client.send(b"\x00\xff\xfe garbage\r\n")
    assert client.line() == b"* BAD [CLIENTBUG] missing or invalid tag\r\n"
    _usable(client)


def test_too_many_errors_close_the_connection(raw):
    client = raw()
    for n in range(10):
        client.send(b"x%d BOGUS\r\n" % n)
    lines = []
    try:
        while True:
            lines.append(client.line())
    except (EOFError, ConnectionError):
        pass
    assert lines[-1].startswith(b"* BYE")


def test_bad_input_does_not_hang_the_server(raw):
    client = raw()
    started = time.monotonic()
    client.send(b"t SEARCH " + b"NOT " * 200 + b"ALL\r\n")
    assert client.until(b"t")[-1].startswith(b"t BAD")
    assert time.monotonic() - started < 15
    _usable(client)


def test_a_silent_client_is_logged_out(tmp_path):
    limits = dataclasses.replace(LimitSettings(), command_timeout=1)
    srv = RunningServer(server_settings(tmp_path / "data", limits=limits)).start()
    try:
        client = RawImap(srv.port("imap"))
        started = time.monotonic()
        assert client.line() == b"* BYE autologout: idle too long\r\n"
        assert 0.9 < time.monotonic() - started < 15
        client.close()
    finally:
        srv.stop()


def test_star_ranges_clamp_even_in_an_empty_mailbox(raw):
    client = raw()
    client.command(b"SELECT INBOX")
    assert client.command(b"FETCH 1:* FLAGS") == [b"t OK completed\r\n"]
    assert client.command(b"FETCH 1 FLAGS")[-1].startswith(b"t BAD [CLIENTBUG]")
