"""Brute-force throttling and connection limits, shared by every protocol."""

from __future__ import annotations

import smtplib

from postbote.accounts.throttle import MAX_DELAY, AuthThrottle
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
