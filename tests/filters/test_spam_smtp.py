"""Each signal and action of the built-in spam filter, over real SMTP sessions."""

from __future__ import annotations

import smtplib

import pytest

from tests.smtp.helpers import submit

from .conftest import USER, header, message, send, stored

SPAMMY = message(subject="FREE MONEY WINNER NOW!!!", date=False, body="You won")


def test_clean_message_is_delivered_with_spam_status_no(make_mx):
    mx = make_mx()
    send(mx, message())
    [delivered] = stored(mx)
    [status] = header(delivered, b"X-Spam-Status")
    assert status.startswith(b"No, score=")
    assert header(delivered, b"X-Spam-Score")
    assert stored(mx, "Junk") == []


def test_senders_own_spam_status_is_replaced_by_ours(make_mx):
    mx = make_mx()
    send(mx, message(extra="X-Spam-Status: No, score=-100\r\nX-Spam-Score: -100\r\n"))
    [delivered] = stored(mx)
    assert b"-100" not in delivered
    assert len(header(delivered, b"X-Spam-Status")) == 1


def test_dnsbl_listing_of_the_client_sends_mail_to_junk(make_mx, dns_zone):
    dns_zone.add("1.0.0.127.bl.test", "A", "127.0.0.2")
    mx = make_mx(spam={"dnsbl_zones": ("bl.test=6",)})
    send(mx, message())
    assert stored(mx) == []
    [junk] = stored(mx, "Junk")
    [status] = header(junk, b"X-Spam-Status")
    assert status.startswith(b"Yes, score=6.0") and b"DNSBL:bl.test=6" in status


def test_dnsbl_refused_query_answer_is_not_a_listing(make_mx, dns_zone):
    dns_zone.add("1.0.0.127.bl.test", "A", "127.255.255.254")  # RFC 5782-style "query refused" code
    mx = make_mx(spam={"dnsbl_zones": ("bl.test=6",)})
    send(mx, message())
    [delivered] = stored(mx)
    assert b"DNSBL" not in delivered


def test_dnsbl_that_fails_to_answer_is_left_out(make_mx, dns_zone):
    dns_zone.servfail.add("1.0.0.127.bl.test")
    mx = make_mx(spam={"dnsbl_zones": ("bl.test=6",)})
    send(mx, message())
    [delivered] = stored(mx)
    assert header(delivered, b"X-Spam-Status")[0].startswith(b"No")


def test_dnswl_listing_takes_points_off(make_mx, dns_zone):
    dns_zone.add("1.0.0.127.bl.test", "A", "127.0.0.2")
    dns_zone.add("1.0.0.127.wl.test", "A", "127.0.10.0")
    mx = make_mx(spam={"dnsbl_zones": ("bl.test=6",), "dnswl_zones": ("wl.test",)})
    send(mx, message())
    [delivered] = stored(mx)
    status = header(delivered, b"X-Spam-Status")[0]
    assert status.startswith(b"No, score=2.0") and b"DNSWL:wl.test=-4" in status


def test_score_over_reject_score_is_refused_with_550_5_7_1(make_mx, dns_zone):
    dns_zone.add("1.0.0.127.bl.test", "A", "127.0.0.2")
    mx = make_mx(spam={"dnsbl_zones": ("bl.test=20",)})
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(mx, message())
    assert refused.value.smtp_code == 550 and b"5.7.1" in refused.value.smtp_error
    assert stored(mx) == [] and stored(mx, "Junk") == []


def test_spf_and_dmarc_failures_add_up_to_junk(make_mx, dns_zone):
    dns_zone.txt("example.org", "v=spf1 -all")
    dns_zone.txt("_dmarc.example.org", "v=DMARC1; p=none")
    mx = make_mx()
    send(mx, message())
    [junk] = stored(mx, "Junk")
    status = header(junk, b"X-Spam-Status")[0]
    assert b"SPF_FAIL=2" in status and b"DMARC_FAIL=3" in status


def test_spf_pass_takes_points_off(make_mx, dns_zone):
    dns_zone.txt("example.org", "v=spf1 ip4:127.0.0.1 -all")
    mx = make_mx()
    send(mx, message())
    [delivered] = stored(mx)
    assert b"SPF_PASS=-0.5" in header(delivered, b"X-Spam-Status")[0]


def test_header_heuristics_are_named_in_the_status(make_mx):
    mx = make_mx()
    send(mx, SPAMMY)
    [delivered] = stored(mx)
    status = header(delivered, b"X-Spam-Status")[0]
    for rule in (b"MISSING_DATE=1", b"MISSING_MID=0.5", b"SUBJ_ALL_CAPS=1", b"SUBJ_SHOUTING=0.5"):
        assert rule in status


def test_sender_with_a_spam_history_is_junked(make_mx):
    mx = make_mx(spam={"junk_score": 2.5})
    send(mx, SPAMMY, sender="pest@example.org")
    send(mx, SPAMMY, sender="pest@example.org")
    assert len(stored(mx, "Junk")) == 2
    send(mx, message(), sender="pest@example.org")  # innocent-looking, but from a known pest
    junk = stored(mx, "Junk")
    assert len(junk) == 3 and b"SENDER_REP_SPAM=3" in header(junk[-1], b"X-Spam-Status")[0]


def test_good_reputation_counts_only_for_an_authenticated_sender(make_mx, dns_zone):
    dns_zone.txt("good.example", "v=spf1 ip4:127.0.0.1 -all")
    mx = make_mx()
    for n in range(3):  # no SPF record: the address could be forged, a good name must not count
        send(mx, message(body=f"forgeable {n}"), sender="friend@example.org")
    assert b"SENDER_REP_HAM" not in header(stored(mx)[-1], b"X-Spam-Status")[0]
    for n in range(3):
        send(mx, message(body=f"proved {n}", sender="friend@good.example"), sender="friend@good.example")
    assert b"SENDER_REP_HAM=-3" in header(stored(mx)[-1], b"X-Spam-Status")[0]


def test_authenticated_users_mail_is_not_scored(make_mx, dns_zone):
    dns_zone.add("1.0.0.127.bl.test", "A", "127.0.0.2")
    mx = make_mx(spam={"dnsbl_zones": ("bl.test=20",)})
    mx.add_user("carol@example.net")
    with submit(mx, "carol@example.net") as client:
        client.sendmail("carol@example.net", [USER], message(sender="carol@example.net"))
    [delivered] = stored(mx)
    assert not header(delivered, b"X-Spam-Status")


def test_disabled_filter_adds_nothing(make_mx):
    mx = make_mx(spam={"enabled": False})
    send(mx, SPAMMY)
    assert not header(stored(mx)[0], b"X-Spam-Status")


def _reputation(mx, sender: str) -> tuple[int, int]:
    account = mx.run(mx.app.store.get_account(USER))
    return mx.run(mx.app.store.spam_reputation(account.id, sender))


def test_a_delivered_message_counts_once_in_the_senders_reputation(make_mx):
    mx = make_mx()
    send(mx, message(), sender="someone@example.org")
    assert sum(_reputation(mx, "someone@example.org")) == 1


def test_a_message_the_virus_scanner_defers_leaves_no_reputation(make_mx):
    import socket

    from postbote.config import ClamavSettings

    with socket.socket() as closed:  # a port nobody listens on: the virus scanner is "down"
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    mx = make_mx(clamav=ClamavSettings(enabled=True, address=f"tcp:127.0.0.1:{port}", timeout=2))
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(mx, SPAMMY, sender="someone@example.org")
    assert refused.value.smtp_code == 451
    # The sender will try again; counting this attempt too would count the message twice.
    assert _reputation(mx, "someone@example.org") == (0, 0)
