"""Live DNS checks against a real DNS server on loopback, and `postbote dns check`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from postbote.cli import main
from postbote.config import DnsSettings
from postbote.dns import Resolver
from postbote.dnscheck import check_domain
from postbote.mailauth.keys import generate_keys, load_keys
from postbote.queue.records import dns_records
from tests.dnsserver import DnsServer

HOST, DOMAIN = "mail.example.net", "example.net"


@pytest.fixture
def dns_server():
    srv = DnsServer().start()
    yield srv
    srv.stop()


def publish_expected(srv: DnsServer, data_dir: Path) -> None:
    """Publish exactly what `postbote dns records` asks for, plus the host's A and PTR."""
    for line in dns_records(DOMAIN, HOST, load_keys(data_dir, DOMAIN)):
        if line.startswith(";"):
            continue
        name, _, _, rdtype, value = line.split("\t")
        srv.add(name, rdtype, value)
    srv.add(HOST, "A", "127.0.0.1")
    srv.add("1.0.0.127.in-addr.arpa", "PTR", HOST + ".")


def run_checks(srv: DnsServer, data_dir: Path) -> dict[str, tuple[str, str]]:
    resolver = Resolver(DnsSettings(nameservers=(srv.address,), timeout=1.0))
    checks = asyncio.run(check_domain(resolver, DOMAIN, HOST, data_dir))
    return {c.record.split()[0] if c.record.startswith("DKIM") else c.record: (c.verdict, c.detail)
            for c in checks}


def test_published_records_all_pass(dns_server, tmp_path):
    generate_keys(tmp_path, DOMAIN)
    publish_expected(dns_server, tmp_path)
    results = run_checks(dns_server, tmp_path)
    assert set(results) == {"MX", "SPF", "DKIM", "DMARC", "MTA-STS", "TLS-RPT", "PTR"}
    assert {k: v[0] for k, v in results.items()} == dict.fromkeys(results, "ok")


def test_missing_and_wrong_records_get_clear_verdicts(dns_server, tmp_path):
    generate_keys(tmp_path, DOMAIN)
    dns_server.add(DOMAIN, "MX", "10 other.example.com.")
    dns_server.txt(DOMAIN, "v=spf1 mx -all", "v=spf1 a -all")
    for key in load_keys(tmp_path, DOMAIN):
        dns_server.txt(f"{key.selector}._domainkey.{DOMAIN}", "v=DKIM1; k=rsa; p=AAAAdifferent")
    dns_server.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=none")
    dns_server.add(HOST, "A", "127.0.0.1")
    dns_server.add("1.0.0.127.in-addr.arpa", "PTR", "someone.else.")
    results = run_checks(dns_server, tmp_path)
    assert results["MX"] == ("error", f"MX does not point at {HOST}")
    assert results["SPF"][0] == "error" and "more than one" in results["SPF"][1]
    assert results["DKIM"] == ("error", "published key differs from ours")
    assert results["DMARC"][0] == "warning"
    assert results["MTA-STS"][0] == "warning" and results["TLS-RPT"][0] == "warning"
    assert results["PTR"][0] == "error" and "127.0.0.1" in results["PTR"][1]


def test_timeouts_are_unknown_not_missing(dns_server, tmp_path):
    dns_server.timeouts.add(DOMAIN)
    results = run_checks(dns_server, tmp_path)
    assert results["MX"][0] == "unknown" and results["SPF"][0] == "unknown"
    assert results["DKIM"][0] == "error" and "dkim generate" in results["DKIM"][1]


def test_cli_dns_check_prints_a_verdict_per_record_and_fails_on_errors(dns_server, tmp_path, capsys):
    data = tmp_path / "data"
    config = tmp_path / "postbote.toml"
    config.write_text(f'hostname = "{HOST}"\ndomains = ["{DOMAIN}"]\ndata_dir = "{data}"\n'
                      f'[dns]\nnameservers = ["{dns_server.address}"]\ntimeout = 1.0\n')
    generate_keys(data, DOMAIN)
    assert main(["--config", str(config), "dns", "check", DOMAIN]) == 1
    out, err = capsys.readouterr()
    assert "ERROR    MX" in out and "records of example.net need fixing" in err
    publish_expected(dns_server, data)
    assert main(["--config", str(config), "dns", "check", DOMAIN]) == 0
    out, _ = capsys.readouterr()
    assert all(line.startswith(("OK ", " ")) for line in out.splitlines()), out
