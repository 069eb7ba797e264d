"""/metrics, /healthz, /readyz: counters move when mail moves."""

from __future__ import annotations

import re
import smtplib

from tests.web.helpers import request


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else r"(\{\})?") + r" (\S+)"
    m = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    return float(m.group(m.lastindex)) if m else 0.0


def scrape(server) -> str:
    reply = request(server.port("http"), "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    return reply.body.decode()


def test_counters_move_when_mail_is_received_and_refused(server):
    server.add_user("bob@example.org")
    before = scrape(server)
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as smtp:
        smtp.sendmail("alice@sender.test", ["bob@example.org"], b"Subject: hi\r\n\r\nhello\r\n")
        try:
            smtp.sendmail("alice@sender.test", ["nobody@example.org"], b"Subject: x\r\n\r\nx\r\n")
        except smtplib.SMTPRecipientsRefused:
            pass
    after = scrape(server)
    assert metric(after, "postbote_messages_received_total", 'service="smtp"') == \
        metric(before, "postbote_messages_received_total", 'service="smtp"') + 1
    assert metric(after, "postbote_messages_delivered_total") == metric(before, "postbote_messages_delivered_total") + 1
    assert metric(after, "postbote_messages_refused_total", 'reason="unknown_recipient"') == \
        metric(before, "postbote_messages_refused_total", 'reason="unknown_recipient"') + 1
    assert metric(after, "postbote_connections_total", 'service="smtp"') >= \
        metric(before, "postbote_connections_total", 'service="smtp"') + 1
    assert metric(after, "postbote_delivery_seconds_count") == metric(before, "postbote_delivery_seconds_count") + 1
    assert metric(after, "postbote_filter_verdicts_total", 'action="accept"') >= 1
    assert metric(after, "postbote_store_bytes", 'part="blobs"') > 0


def test_auth_failures_are_counted(server):
    server.add_user("carol@example.org")
    before = metric(scrape(server), "postbote_auth_failures_total")
    import imaplib

    with imaplib.IMAP4("127.0.0.1", server.port("imap")) as imap:
        try:
            imap.login("carol@example.org", "wrong-password")
        except imaplib.IMAP4.error:
            pass
    assert metric(scrape(server), "postbote_auth_failures_total") == before + 1


def test_queue_gauges_show_size_and_age_of_remote_mail(server):
    from tests.smtp.helpers import submit

    server.add_user("dave@example.org")
    with submit(server, "dave@example.org") as smtp:
        smtp.sendmail("dave@example.org", ["someone@remote.test"], b"Subject: out\r\n\r\nbody\r\n")
    text = scrape(server)
    assert metric(text, "postbote_queue_size") >= 1
    assert metric(text, "postbote_queue_oldest_seconds") >= 0
    assert metric(text, "postbote_messages_queued_total") >= 1


def test_healthz_and_readyz_answer(server):
    assert request(server.port("http"), "/healthz").body == b"ok\n"
    ready = request(server.port("http"), "/readyz")
    assert ready.status == 200 and ready.json()["ready"] is True


def test_metrics_token_is_required_when_configured(tmp_path):

    from postbote.config import HttpSettings
    from tests.harness import RunningServer, server_settings

    settings = server_settings(tmp_path / "data", http=HttpSettings(metrics_token="s3cret"))
    srv = RunningServer(settings).start()
    try:
        port = srv.port("http")
        assert request(port, "/metrics").status == 401
        assert request(port, "/metrics", headers={"Authorization": "Bearer wrong"}).status == 401
        assert request(port, "/metrics", headers={"Authorization": "Bearer s3cret"}).status == 200
    finally:
        srv.stop()
