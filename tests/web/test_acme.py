"""ACME issuance and renewal against Pebble (Debian's ACME test CA), with real validation.

Pebble runs on loopback with its own config and a TLS certificate made here;
it resolves the certificate's name through the loopback test DNS server and
validates http-01 on postbote's HTTP port and tls-alpn-01 on its HTTPS port.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from postbote.config import AcmeSettings, ListenAddress
from tests.conftest import require
from tests.dnsserver import DnsServer

NAME = "mail.postbote.test"
pytestmark = pytest.mark.timeout(180)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


def make_tls_for_pebble(folder: Path) -> Path:
    """A CA and a 127.0.0.1 certificate for Pebble's own HTTPS; returns the CA file."""
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble test listener CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "cert.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "ca.pem"


@dataclasses.dataclass
class Pebble:
    directory: str
    ca_file: Path
    management: int

    def roots(self) -> str:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        with urllib.request.urlopen(f"https://127.0.0.1:{self.management}/roots/0", context=ctx) as r:
            return r.read().decode()


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    srv = DnsServer().start()
    srv.add(NAME, "A", "127.0.0.1")
    yield srv
    srv.stop()


def start_pebble(tmp_path: Path, dns_server: DnsServer, http_port: int, tls_port: int) -> Iterator[Pebble]:
    require(shutil.which("pebble") is not None, "Debian pebble (scripts/install-test-deps.sh)")
    folder = tmp_path / "pebble"
    folder.mkdir()
    ca_file = make_tls_for_pebble(folder)
    listen, management = free_port(), free_port()
    config = {"pebble": {"listenAddress": f"127.0.0.1:{listen}", "managementListenAddress": f"127.0.0.1:{management}",
                         "certificate": str(folder / "cert.pem"), "privateKey": str(folder / "key.pem"),
                         "httpPort": http_port, "tlsPort": tls_port, "ocspResponderURL": "",
                         "externalAccountBindingRequired": False}}
    (folder / "config.json").write_text(json.dumps(config))
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
    log = open(folder / "pebble.log", "wb")
    proc = subprocess.Popen(["pebble", "-config", str(folder / "config.json"), "-dnsserver", dns_server.address],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    try:
        wait_port(listen)
        yield Pebble(f"https://127.0.0.1:{listen}/dir", ca_file, management)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def served_certificate(port: int, roots: str) -> x509.Certificate:
    """The certificate our HTTPS port presents for NAME, verified against Pebble's root."""
    ctx = ssl.create_default_context(cadata=roots)
    with socket.create_connection(("127.0.0.1", port), 10) as raw:
        with ctx.wrap_socket(raw, server_hostname=NAME) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def wait_for_certificate(srv, timeout: float = 60):
    manager = srv.app.listener("http").state.acme
    deadline = time.monotonic() + timeout
    while manager.current is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert manager.current is not None, "no certificate was issued"
    return manager


@pytest.mark.parametrize("challenge", ["http-01", "tls-alpn-01"])
def test_issuance_and_renewal_against_pebble(tmp_path, dns_server, challenge):
    from tests.harness import RunningServer, server_settings

    http_port, tls_port = free_port(), free_port()
    for pebble in start_pebble(tmp_path, dns_server, http_port, tls_port):
        settings = server_settings(tmp_path / "data", acme=AcmeSettings(
            enabled=True, directory=pebble.directory, ca_file=str(pebble.ca_file), names=(NAME,),
            challenge=challenge, email="admin@postbote.test", check_interval=3600))
        settings = dataclasses.replace(settings, listen=dataclasses.replace(
            settings.listen, http=(ListenAddress("127.0.0.1", http_port),),
            https=(ListenAddress("127.0.0.1", tls_port),)))
        srv = RunningServer(settings).start()
        try:
            manager = wait_for_certificate(srv)
            roots = pebble.roots()
            first = served_certificate(tls_port, roots)
            assert first.serial_number == manager.current.serial
            names = first.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert names.get_values_for_type(x509.DNSName) == [NAME]

            assert srv.run(manager.check()) is None  # not due yet: nothing ordered
            renewed = srv.run(manager.check(force=True), timeout=120)
            assert renewed is not None and renewed.serial != first.serial_number
            second = served_certificate(tls_port, roots)  # reloaded without a restart
            assert second.serial_number == renewed.serial
            assert not manager.http_challenges and not manager.alpn_contexts

            # Inside the renewal window, the regular check orders a new certificate by itself.
            lifetime = manager.current.not_after - datetime.datetime.now(datetime.timezone.utc)
            manager.settings = dataclasses.replace(manager.settings, renew_days=lifetime.days + 1)
            due = srv.run(manager.check(), timeout=120)
            assert due is not None and due.serial != renewed.serial
        finally:
            srv.stop()



def test_workers_share_challenge_answers_and_let_one_order_at_a_time(tmp_path):
    """With serve --workers N the CA's request may reach any worker, and only one may order."""
    import asyncio
    from types import SimpleNamespace

    from postbote.acme import AcmeManager, read_http_challenge
    from postbote.config import load_settings

    settings = dataclasses.replace(load_settings(None, data_dir=str(tmp_path)), acme=AcmeSettings(enabled=True))
    app = SimpleNamespace(settings=settings, ssl_context=None)

    async def managers() -> tuple[AcmeManager, AcmeManager]:
        return AcmeManager(app, {}), AcmeManager(app, {})

    first, second = asyncio.run(managers())
    first._challenge_file("http-tok_en-1", b"tok_en-1.thumb")
    assert read_http_challenge(tmp_path, "tok_en-1") == "tok_en-1.thumb"
    assert read_http_challenge(tmp_path, "../acme/account") is None
    assert read_http_challenge(tmp_path, "missing") is None
    with first._order_lock() as mine:
        assert mine
        with second._order_lock() as theirs:
            assert not theirs
    with second._order_lock() as theirs:
        assert theirs
