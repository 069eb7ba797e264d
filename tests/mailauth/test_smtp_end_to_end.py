"""Inbound mail authentication end to end: smtplib → postbote's MX → the store, with
postbote's resolver pointed at a DNS server on loopback that serves the test zones."""

from __future__ import annotations

import dataclasses
import datetime
import smtplib

import dkim
import pytest

from postbote.config import DnsSettings
from postbote.mailauth.arc import verify_arc
from postbote.mailauth.keys import generate_keys
from tests.harness import RunningServer, server_settings

from .conftest import MESSAGE, publish


@pytest.fixture
def mx(tmp_path, dns_server):
    settings = server_settings(tmp_path / "data",
                               dns=DnsSettings(nameservers=(dns_server.address,), timeout=1.0))
    srv = RunningServer(settings).start()
    srv.add_user("bob@example.net")
    yield srv
    srv.stop()


def send(mx: RunningServer, message: bytes, sender: str = "alice@example.org",
         rcpt: str = "bob@example.net") -> None:
    with smtplib.SMTP("127.0.0.1", mx.port("smtp"), local_hostname="mail.example.org", timeout=30) as client:
        client.sendmail(sender, [rcpt], message)


def stored(mx: RunningServer, address: str = "bob@example.net", mailbox: str = "INBOX") -> list[bytes]:
    app = mx.app

    async def read() -> list[bytes]:
        account = await app.store.get_account(address)
        box = await app.store.get_mailbox(account.id, mailbox)
        return [await app.store.read_blob(m.blob_id) for m in await app.store.list_messages(box.id)]

    return mx.run(read())


def header(message: bytes, name: bytes) -> list[bytes]:
    head = message.split(b"\r\n\r\n", 1)[0].replace(b"\r\n\t", b" ").replace(b"\r\n ", b" ")
    return [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
            if line.lower().startswith(name.lower() + b":")]


def signed(sender_keys, message: bytes = MESSAGE) -> bytes:
    key = sender_keys["ed25519-sha256"]
    return dkim.sign(message, key.selector.encode(), b"example.org", key.dkimpy_private,
                     signature_algorithm=b"ed25519-sha256") + message


def test_signed_mail_is_delivered_with_authentication_results(mx, dns_server, sender_keys):
    publish(dns_server, sender_keys["ed25519-sha256"])
    dns_server.txt("example.org", "v=spf1 ip4:127.0.0.1 -all")
    dns_server.txt("_dmarc.example.org", "v=DMARC1; p=reject")
    send(mx, signed(sender_keys))
    [message] = stored(mx)
    [results] = header(message, b"Authentication-Results")
    assert results.startswith(b"localhost;")
    assert b"spf=pass" in results and b"smtp.mailfrom=alice@example.org" in results
    assert b"dkim=pass" in results and b"header.d=example.org" in results
    assert b"dmarc=pass" in results and b"header.from=example.org" in results
    [received_spf] = header(message, b"Received-SPF")
    assert received_spf.startswith(b"pass ")
    assert message.endswith(MESSAGE)


def test_dmarc_reject_refuses_at_end_of_data(mx, dns_server):
    dns_server.txt("example.org", "v=spf1 ip4:192.0.2.1 -all")
    dns_server.txt("_dmarc.example.org", "v=DMARC1; p=reject")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(mx, MESSAGE)
    assert refused.value.smtp_code == 550
    assert refused.value.smtp_error.startswith(b"5.7.1")
    assert stored(mx) == []


def test_tampered_signed_mail_is_refused(mx, dns_server, sender_keys):
    publish(dns_server, sender_keys["ed25519-sha256"])
    dns_server.txt("_dmarc.example.org", "v=DMARC1; p=reject")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(mx, signed(sender_keys).replace(b"numbers are in", b"numbers are wired to you"))
    assert refused.value.smtp_code == 550


def test_dmarc_quarantine_delivers_into_junk(mx, dns_server):
    dns_server.txt("_dmarc.example.org", "v=DMARC1; p=quarantine")
    send(mx, MESSAGE)
    assert stored(mx) == []
    [message] = stored(mx, mailbox="Junk")
    assert b"dmarc=fail" in header(message, b"Authentication-Results")[0]


def test_dmarc_none_delivers_and_reports_the_failure(mx, dns_server):
    dns_server.txt("_dmarc.example.org", "v=DMARC1; p=none; rua=mailto:dmarc@example.org")
    send(mx, MESSAGE)
    [message] = stored(mx)
    assert b"dmarc=fail" in header(message, b"Authentication-Results")[0]

    async def evaluations():
        return await mx.app.store.dmarc_evaluations("example.org", 0, 2**40)

    [row] = mx.run(evaluations())
    assert (row.header_from, row.result, row.disposition, row.rua) == (
        "example.org", "fail", "none", ("mailto:dmarc@example.org",))


def test_dns_timeout_gives_a_temporary_failure(mx, dns_server):
    dns_server.timeouts.add("_dmarc.example.org")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(mx, MESSAGE)
    assert refused.value.smtp_code == 451
    assert refused.value.smtp_error.startswith(b"4.7.")
    assert stored(mx) == []


def test_spf_timeout_with_dmarc_reject_is_a_temporary_failure(mx, dns_server):
    dns_server.txt("_dmarc.example.org", "v=DMARC1; p=reject")
    dns_server.timeouts.add("example.org")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(mx, MESSAGE)
    assert refused.value.smtp_code == 451


def test_forged_authentication_results_for_our_name_are_removed(mx, dns_server):
    forged = (b"Authentication-Results: localhost; dkim=pass header.d=bank.example; dmarc=pass\r\n"
              b"Authentication-Results: mx.elsewhere.example; spf=pass\r\n")
    send(mx, forged + MESSAGE)
    [message] = stored(mx)
    results = header(message, b"Authentication-Results")
    assert len(results) == 2
    assert not any(b"bank.example" in r for r in results)
    assert any(r.startswith(b"mx.elsewhere.example;") for r in results)


def test_alias_forwarded_mail_is_arc_sealed_and_the_chain_verifies(mx, dns_server, resolver, sender_keys):
    data_dir = mx.settings.data_path
    key = next(k for k in generate_keys(data_dir, "example.net", datetime.date(2026, 3, 1))
               if k.algorithm == "rsa-sha256")
    publish(dns_server, key)
    publish(dns_server, sender_keys["ed25519-sha256"])
    dns_server.txt("example.org", "v=spf1 ip4:127.0.0.1 -all")

    async def alias():
        await mx.app.store.add_alias("team@example.net", "bob@example.net")
        await mx.app.store.add_alias("team@example.net", "carol@outside.example")

    mx.run(alias())
    send(mx, signed(sender_keys), rcpt="team@example.net")
    [message] = stored(mx)
    assert header(message, b"ARC-Seal") and header(message, b"ARC-Message-Signature")
    [aar] = header(message, b"ARC-Authentication-Results")
    assert aar.startswith(b"i=1; localhost") and b"dkim=pass" in aar
    outcome = mx.run(verify_arc(message, resolver))
    assert (outcome.result, outcome.sealer, outcome.instance) == ("pass", "example.net", 1)


def test_mail_from_our_own_users_is_not_checked(mx, dns_server):
    dns_server.txt("_dmarc.example.org", "v=DMARC1; p=reject")
    mx.add_user("alice@example.org", "long-password-1")
    with smtplib.SMTP("127.0.0.1", mx.port("submission"), timeout=30) as client:
        client.starttls()
        client.login("alice@example.org", "long-password-1")
        client.sendmail("alice@example.org", ["bob@example.net"], MESSAGE)
    [message] = stored(mx)
    assert header(message, b"Authentication-Results") == []


@pytest.fixture
def report_only_mx(tmp_path, dns_server):
    settings = server_settings(tmp_path / "data", dns=DnsSettings(nameservers=(dns_server.address,), timeout=1.0))
    settings = dataclasses.replace(settings, mailauth=dataclasses.replace(settings.mailauth, enforce=False))
    srv = RunningServer(settings).start()
    srv.add_user("bob@example.net")
    yield srv
    srv.stop()


def test_report_only_delivers_what_the_policy_would_reject(report_only_mx, dns_server):
    dns_server.txt("_dmarc.example.org", "v=DMARC1; p=reject")
    send(report_only_mx, MESSAGE)
    [message] = stored(report_only_mx)
    assert b"dmarc=fail" in header(message, b"Authentication-Results")[0]
