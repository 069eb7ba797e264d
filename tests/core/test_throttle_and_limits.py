"""Brute-force throttling and connection limits, shared by every protocol."""

from __future__ import annotations

import smtplib

from postbote.accounts.throttle import MAX_DELAY, AuthEvent, AuthThrottle, decode_event, encode_event
from postbote.listener import ConnectionLimits
from tests.smtp.helpers import insecure_context


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_delay_grows_with_each_failure_and_is_capped():
    t = AuthThrottle(per_ip=100, per_account=100, lockout_seconds=900, clock=Clock())
    delays = []
    for _ in range(8):
        delays.append(t.failure_delay("10.0.0.1", "a@x"))
        t.failed("10.0.0.1", "a@x")
    assert delays[0] == 0 and delays == sorted(delays) and delays[-1] == MAX_DELAY


def test_lockout_per_ip_then_forgiven_after_the_lockout_time():
    clock = Clock()
    t = AuthThrottle(per_ip=3, per_account=100, lockout_seconds=60, clock=clock)
    for user in ("a@x", "b@x", "c@x"):
        t.failed("10.0.0.1", user)
    assert t.locked_for("10.0.0.1", "d@x") == 60
    assert t.locked_for("10.0.0.2", "d@x") == 0  # another IP is not affected
    clock.now += 61
    assert t.locked_for("10.0.0.1", "d@x") == 0


def test_lockout_per_account_across_ips():
    t = AuthThrottle(per_ip=100, per_account=2, lockout_seconds=60, clock=Clock())
    t.failed("10.0.0.1", "a@x")
    t.failed("10.0.0.2", "a@x")
    assert t.locked_for("10.0.0.3", "a@x") > 0
    assert t.locked_for("10.0.0.3", "b@x") == 0


def test_success_clears_the_record():
    t = AuthThrottle(per_ip=3, per_account=3, lockout_seconds=60, clock=Clock())
    t.failed("10.0.0.1", "a@x")
    t.succeeded("10.0.0.1", "a@x")
    assert t.failure_delay("10.0.0.1", "a@x") == 0


def test_events_from_other_workers_count_like_local_ones():
    t = AuthThrottle(per_ip=3, per_account=100, lockout_seconds=60, clock=Clock())
    t.failed("10.0.0.1", "a@x")  # here
    t.record(AuthEvent("10.0.0.1", "a@x", ok=False))  # heard from another worker
    assert t.locked_for("10.0.0.1", None) == 0
    t.record(AuthEvent("10.0.0.1", None, ok=False))
    assert t.locked_for("10.0.0.1", None) == 60


def test_a_success_heard_from_another_worker_forgives():
    t = AuthThrottle(per_ip=3, per_account=3, lockout_seconds=60, clock=Clock())
    t.failed("10.0.0.1", "a@x")
    t.failed("10.0.0.1", "a@x")
    t.record(AuthEvent("10.0.0.1", "a@x", ok=True))
    t.failed("10.0.0.1", "a@x")
    t.failed("10.0.0.1", "a@x")
    assert t.locked_for("10.0.0.1", "a@x") == 0


def test_auth_events_round_trip_and_bad_ones_are_dropped():
    for ev in (AuthEvent("10.0.0.1", "a@x", ok=True), AuthEvent("::1", None, ok=False),
               AuthEvent("192.0.2.1", '"a b"@x', ok=False), AuthEvent("192.0.2.1", "jörg@bücher.example", ok=False)):
        assert decode_event(encode_event(ev)) == ev
    for bad in (b"", b"\xff", b"[]", b'["fail"]', b'["maybe","10.0.0.1",null]', b'["fail",1,null]',
                b'["ok","10.0.0.1",null]', b'["fail","10.0.0.1",7]', b"42", b"{}"):
        assert decode_event(bad) is None, bad


def test_connection_limits_total_and_per_ip_with_loopback_exempt():
    limits = ConnectionLimits(total=3, per_ip=1)
    assert limits.admit("10.0.0.1")
    assert not limits.admit("10.0.0.1")  # per IP
    assert limits.admit("127.0.0.1") and limits.admit("127.0.0.1")  # loopback exempt
    assert not limits.admit("10.0.0.2")  # total
    limits.release("127.0.0.1")
    assert limits.admit("10.0.0.2")


def _auth_code(c: smtplib.SMTP) -> int:
    try:
        return c.auth("PLAIN", c.auth_plain)[0]
    except smtplib.SMTPAuthenticationError as exc:
        return exc.smtp_code


def test_smtp_auth_locks_out_after_repeated_failures(tmp_path):
    import dataclasses

    from tests.harness import RunningServer, server_settings

    settings = server_settings(tmp_path / "data")
    settings = dataclasses.replace(settings, limits=dataclasses.replace(
        settings.limits, auth_failures_per_account=2, auth_failures_per_ip=100))
    srv = RunningServer(settings).start()
    try:
        srv.add_user("alice@localhost")
        codes = []
        for password in ("wrong-1", "wrong-2", "password123"):
            c = smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=30)
            c.starttls(context=insecure_context())
            c.ehlo()
            c.user, c.password = "alice@localhost", password
            # One mechanism per attempt (smtplib's login() would try PLAIN, then LOGIN).
            codes.append(_auth_code(c))
            c.close()
        # Two failures lock the account: even the right password is refused for a while.
        assert codes == [535, 535, 454]
    finally:
        srv.stop()
