"""Greylisting at the end of DATA (451 4.7.1), over real SMTP sessions."""

from __future__ import annotations

import smtplib
import time

import pytest

from postbote.config import GreylistSettings
from postbote.filters.greylist import GreylistFilter, network
from postbote.filters.pipeline import MessageContext
from tests.smtp.helpers import submit

from .conftest import USER, message, stored


def greylist(**fields: object) -> dict:
    return {"greylist": GreylistSettings(enabled=True, **{"delay": 1, **fields})}


def send_from(mx, source: str, sender: str = "alice@example.org") -> None:
    with smtplib.SMTP("127.0.0.1", mx.port("smtp"), local_hostname="mail.example.org", timeout=30,
                      source_address=(source, 0)) as client:
        client.sendmail(sender, [USER], message())


def deferred(mx, source: str = "127.0.0.1", sender: str = "alice@example.org") -> bool:
    try:
        send_from(mx, source, sender)
    except smtplib.SMTPDataError as exc:
        assert exc.smtp_code == 451 and b"4.7.1" in exc.smtp_error
        return True
    return False


def test_first_attempt_is_deferred_and_a_retry_after_the_delay_is_accepted(make_mx):
    mx = make_mx(**greylist())
    assert deferred(mx)
    assert deferred(mx)  # too soon
    time.sleep(1.1)
    assert not deferred(mx, source="127.0.0.2")  # another address of the same /24 counts as the same sender
    assert not deferred(mx)  # known now: no delay
    assert deferred(mx, sender="other@example.org")  # another sender is a new triplet
    assert len(stored(mx)) == 2


def test_greylisting_is_off_by_default(make_mx):
    mx = make_mx()
    assert not deferred(mx)


def test_authenticated_users_are_not_greylisted(make_mx):
    mx = make_mx(**greylist(delay=3600))
    mx.add_user("carol@example.net")
    with submit(mx, "carol@example.net") as client:
        client.sendmail("carol@example.net", [USER], message(sender="carol@example.net"))
    assert len(stored(mx)) == 1


def test_known_sender_passes_at_once(make_mx):
    mx = make_mx(**greylist(delay=3600))

    async def known() -> None:
        account = await mx.app.store.get_account(USER)
        await mx.app.store.spam_record_verdict([account.id], "friend@example.org", False, int(time.time()))

    mx.run(known())
    assert not deferred(mx, sender="friend@example.org")
    assert deferred(mx, sender="stranger@example.org")


def test_networks_group_ipv4_by_24_and_ipv6_by_64():
    assert network("192.0.2.77") == "192.0.2.0/24"
    assert network("2001:db8:1:2:3::4") == "2001:db8:1:2::/64"
    assert network("::ffff:192.0.2.1") == "192.0.2.0/24"
    assert network("not an address") == "not an address"


async def test_dkim_verified_domain_on_the_pass_list_is_not_greylisted(tmp_path):
    class NoStore:  # the pass list is decided before the store is asked
        def __getattr__(self, name):
            raise AssertionError(f"store used: {name}")

    ctx = MessageContext("Q1", "smtp", "192.0.2.1", "mail.example.org", "a@example.org", (USER,), tmp_path / "spool",
                         added=b"Authentication-Results: mx.test;\r\n\tdkim=pass header.d=mail.bank.example "
                               b"header.s=s1\r\n")
    result = await GreylistFilter(GreylistSettings(enabled=True, pass_domains=("bank.example",)), NoStore()).check(ctx)
    assert result.action.value == "accept"
    with pytest.raises(AssertionError):
        await GreylistFilter(GreylistSettings(enabled=True, pass_domains=("other.example",)), NoStore()).check(ctx)
