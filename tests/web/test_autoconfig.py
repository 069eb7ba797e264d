"""Client autoconfiguration answers as Thunderbird, Outlook and Apple Mail expect, and MTA-STS."""

from __future__ import annotations

import plistlib
import xml.etree.ElementTree as ET

from tests.web.helpers import request

OUTLOOK_REQUEST = b"""<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>%s</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>"""
NS = {"a": "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006",
      "o": "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"}


def test_thunderbird_config_names_our_host_ports_and_socket_types(server):
    server.add_user("ann@example.org")
    reply = request(server.port("http"), "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=ann%40example.org")
    assert reply.status == 200 and reply.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(reply.body)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    provider = root.find("emailProvider")
    assert provider.get("id") == "example.org" and provider.findtext("domain") == "example.org"
    incoming = [(s.get("type"), int(s.findtext("port")), s.findtext("socketType"), s.findtext("hostname"),
                 s.findtext("username"), s.findtext("authentication")) for s in provider.findall("incomingServer")]
    assert incoming[0] == ("imap", server.port("imaps"), "SSL", "localhost", "%EMAILADDRESS%", "password-cleartext")
    assert ("imap", server.port("imap"), "STARTTLS") in [i[:3] for i in incoming]
    assert ("pop3", server.port("pop3s"), "SSL") in [i[:3] for i in incoming]
    outgoing = [(s.get("type"), int(s.findtext("port")), s.findtext("socketType"))
                for s in provider.findall("outgoingServer")]
    assert outgoing == [("smtp", server.port("submissions"), "SSL"), ("smtp", server.port("submission"), "STARTTLS")]


def test_thunderbird_config_on_the_autoconfig_host(server):
    server.add_user("ann@example.org")
    reply = request(server.port("http"), "/mail/config-v1.1.xml", headers={"Host": "autoconfig.example.org"})
    assert reply.status == 200
    assert ET.fromstring(reply.body).find("emailProvider").get("id") == "example.org"


def test_thunderbird_config_for_a_foreign_domain_is_not_found(server):
    reply = request(server.port("http"), "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=x%40elsewhere.test")
    assert reply.status == 404


def test_outlook_autodiscover_pox_answers_imap_and_smtp_settings(server):
    server.add_user("ann@example.org")
    reply = request(server.port("http"), "/autodiscover/autodiscover.xml", "POST",
                    OUTLOOK_REQUEST % b"ann@example.org", {"Content-Type": "text/xml"})
    assert reply.status == 200
    root = ET.fromstring(reply.body)
    account = root.find("o:Response/o:Account", NS)
    assert account.findtext("o:AccountType", namespaces=NS) == "email"
    assert account.findtext("o:Action", namespaces=NS) == "settings"
    protocols = {p.findtext("o:Type", namespaces=NS): p for p in account.findall("o:Protocol", NS)}
    assert set(protocols) == {"IMAP", "SMTP", "POP3"}
    imap, smtp = protocols["IMAP"], protocols["SMTP"]
    assert imap.findtext("o:Server", namespaces=NS) == "localhost"
    assert int(imap.findtext("o:Port", namespaces=NS)) == server.port("imaps")
    assert imap.findtext("o:SSL", namespaces=NS) == "on"
    assert imap.findtext("o:LoginName", namespaces=NS) == "ann@example.org"
    assert int(smtp.findtext("o:Port", namespaces=NS)) == server.port("submissions")
    assert smtp.findtext("o:AuthRequired", namespaces=NS) == "on"


def test_outlook_autodiscover_refuses_garbage_and_unknown_domains(server):
    port = server.port("http")
    assert request(port, "/autodiscover/autodiscover.xml", "POST", b"<not xml").status == 400
    assert request(port, "/autodiscover/autodiscover.xml", "POST", b"x" * 100_000).status == 400
    foreign = request(port, "/autodiscover/autodiscover.xml", "POST", OUTLOOK_REQUEST % b"x@elsewhere.test")
    root = ET.fromstring(foreign.body)
    assert root.findtext("a:Response/a:Error/a:ErrorCode", namespaces=NS) == "603"


def test_apple_mobileconfig_is_a_mail_profile(server):
    server.add_user("ann@example.org")
    reply = request(server.port("http"), "/apple/mail.mobileconfig?email=ann%40example.org")
    assert reply.status == 200 and reply.headers["content-type"] == "application/x-apple-aspen-config"
    profile = plistlib.loads(reply.body)
    assert profile["PayloadType"] == "Configuration"
    [mail] = profile["PayloadContent"]
    assert mail["PayloadType"] == "com.apple.mail.managed"
    assert mail["EmailAddress"] == "ann@example.org"
    assert mail["IncomingMailServerHostName"] == "localhost"
    assert mail["IncomingMailServerPortNumber"] == server.port("imaps") and mail["IncomingMailServerUseSSL"]
    assert mail["OutgoingMailServerPortNumber"] == server.port("submissions")
    assert request(server.port("http"), "/apple/mail.mobileconfig?email=not-an-address").status == 400


def test_mta_sts_policy_served_on_the_mta_sts_host_only(server):
    server.add_user("ann@example.org")
    port = server.port("https")
    reply = request(port, "/.well-known/mta-sts.txt", headers={"Host": "mta-sts.example.org"}, scheme="https")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain")
    lines = reply.body.decode().split("\r\n")
    assert lines[:3] == ["version: STSv1", "mode: enforce", "mx: localhost"]
    assert lines[3].startswith("max_age: ")
    assert request(port, "/.well-known/mta-sts.txt", headers={"Host": "example.org"}, scheme="https").status == 404
    assert request(port, "/.well-known/mta-sts.txt", headers={"Host": "mta-sts.other.test"},
                   scheme="https").status == 404
