"""The postbote command as a user meets it: serve, admin commands, errors."""

from __future__ import annotations

import dataclasses
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from postbote.config import ServiceSettings

# Every listener the dev instance opens by default (LMTP and HTTPS are off), each given a free
# port by the tests so that no test server takes a fixed one.
SERVICES = tuple(f.name for f in dataclasses.fields(ServiceSettings) if f.name not in ("lmtp", "https"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postbote(*args: str, stdin: str = "", data: Path | None = None) -> subprocess.CompletedProcess:
    extra = ["--data-dir", str(data)] if data else []
    return subprocess.run([sys.executable, "-m", "postbote", *extra, *args], input=stdin,
                          capture_output=True, text=True, timeout=60)


def write_config(tmp_path: Path, ports: dict[str, int]) -> Path:
    from tests.dnsserver import shared

    lines = [f'data_dir = "{tmp_path / "data"}"', "[dns]", f'nameservers = ["{shared().address}"]', "[listen]"]
    lines += [f'{name} = ["127.0.0.1:{port}"]' for name, port in ports.items()]
    path = tmp_path / "postbote.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def start_serve(config: Path) -> subprocess.Popen:
    """Start ``postbote serve``; its log goes to ``serve.log`` beside the config
    (a file, not a pipe, so a chatty server can never stall on a full pipe)."""
    log_path = config.parent / "serve.log"
    start = log_path.stat().st_size if log_path.exists() else 0
    log = open(log_path, "a")
    proc = subprocess.Popen([sys.executable, "-m", "postbote", "--config", str(config), "serve"],
                            stderr=log, stdout=log, text=True)
    log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if "msg=ready" in log_path.read_text()[start:]:
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("server did not become ready: " + log_path.read_text()[-2000:])


def serve_log(config: Path) -> str:
    return (config.parent / "serve.log").read_text()


def test_domain_user_alias_commands_round_trip(tmp_path):
    data = tmp_path / "data"
    assert postbote("domain", "add", "Example.COM", data=data).returncode == 0
    assert postbote("domain", "list", data=data).stdout.split() == ["example.com", "localhost"]
    r = postbote("user", "add", "Alice@example.com", "--password-stdin", stdin="long-password\n", data=data)
    assert r.returncode == 0, r.stderr
    assert postbote("user", "list", data=data).stdout.startswith("alice@example.com")
    assert postbote("alias", "add", "@example.com", "alice@example.com", data=data).returncode == 0
    assert "@example.com\talice@example.com" in postbote("alias", "list", data=data).stdout
    out = postbote("mailbox", "list", "alice@example.com", data=data).stdout
    assert "INBOX\tmessages=0" in out and "\\Sent" in out
    assert postbote("user", "passwd", "alice@example.com", "--password-stdin", stdin="another-password\n",
                    data=data).returncode == 0
    assert postbote("user", "quota", "alice@example.com", "2G", data=data).returncode == 0
    assert "quota=2147483648" in postbote("user", "list", data=data).stdout


@pytest.mark.parametrize("args, stdin, message", [
    (("user", "add", "not-an-address", "--password-stdin"), "long-password\n", "invalid address"),
    (("user", "add", "bob@nowhere.example", "--password-stdin"), "long-password\n", "no domain nowhere.example"),
    (("user", "add", "bob@localhost", "--password-stdin"), "short\n", "password too short"),
    (("user", "del", "ghost@localhost"), "", "no account ghost@localhost"),
    (("domain", "add", "bad domain"), "", "invalid domain"),
    (("alias", "add", "x@localhost", "not an address"), "", "invalid address"),
    (("user", "quota", "a@localhost", "lots"), "", "invalid size"),
])
def test_cli_errors_are_one_clear_line(tmp_path, args, stdin, message):
    data = tmp_path / "data"
    postbote("domain", "add", "localhost", data=data)
    r = postbote(*args, stdin=stdin, data=data)
    assert r.returncode == 1
    assert message in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_every_command_has_help():
    for args in [(), ("serve",), ("domain", "add"), ("user", "add"), ("alias", "del"), ("mailbox", "list")]:
        r = postbote(*args, "--help")
        assert r.returncode == 0 and "usage: postbote" in r.stdout


def test_unwritable_data_folder_is_one_clear_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = postbote("domain", "add", "example.com", data=blocker / "data")
    assert r.returncode == 1 and "not writable" in r.stderr and "Traceback" not in r.stderr


def test_serve_accepts_admin_commands_while_running_and_stops_on_sigterm(tmp_path):
    ports = {name: free_port() for name in SERVICES}
    config = write_config(tmp_path, ports)
    proc = start_serve(config)
    try:
        assert (tmp_path / "data" / "tls" / "cert.pem").exists()  # self-signed, made on first start
        r = subprocess.run([sys.executable, "-m", "postbote", "--config", str(config), "user", "add",
                            "alice@localhost", "--password-stdin"], input="long-password\n",
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0
    log = serve_log(config)
    assert "msg=stopped" in log and "Traceback" not in log


def test_serve_refuses_to_start_when_a_port_is_taken(tmp_path):
    ports = {name: free_port() for name in SERVICES}
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", ports["smtp"]))
        blocker.listen()
        config = write_config(tmp_path, ports)
        r = subprocess.run([sys.executable, "-m", "postbote", "--config", str(config), "serve"],
                           capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{ports['smtp']} for smtp: address already in use" in r.stderr
    assert "Traceback" not in r.stderr



def test_a_sieve_script_activated_by_the_admin_command_applies_to_the_next_message(tmp_path):
    import smtplib

    ports = {name: free_port() for name in SERVICES}
    config = write_config(tmp_path, ports)

    def cli(*args: str, stdin: str = "") -> None:
        r = subprocess.run([sys.executable, "-m", "postbote", "--config", str(config), *args], input=stdin,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr

    def send(subject: str) -> None:
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=30) as client:
            client.sendmail("bob@example.org", ["alice@localhost"],
                            f"From: bob@example.org\r\nSubject: {subject}\r\n\r\nhi\r\n".encode())

    cli("user", "add", "alice@localhost", "--password-stdin", stdin="long-password\n")
    proc = start_serve(config)
    try:
        send("first")  # the server now knows alice has no script
        script = tmp_path / "filter.sieve"
        script.write_text('require ["fileinto", "mailbox"];\nfileinto :create "Filed";\n')
        cli("sieve", "put", "alice@localhost", "main", str(script))
        cli("sieve", "activate", "alice@localhost", "main")
        send("second")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    out = subprocess.run([sys.executable, "-m", "postbote", "--config", str(config), "mailbox", "list",
                          "alice@localhost"], capture_output=True, text=True, timeout=60).stdout
    assert "INBOX\tmessages=1" in out and "Filed\tmessages=1" in out, out


def test_a_domain_added_by_the_admin_command_takes_mail_at_once(tmp_path):
    import smtplib

    ports = {name: free_port() for name in SERVICES}
    config = write_config(tmp_path, ports)
    proc = start_serve(config)
    try:
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=30) as client:
            client.ehlo("client.example.org")
            client.mail("bob@example.org")
            assert client.rcpt("carol@new.example")[0] == 554  # not ours yet (and now remembered so)
        for args, stdin in ((("domain", "add", "new.example"), ""),
                            (("user", "add", "carol@new.example", "--password-stdin"), "long-password\n")):
            r = subprocess.run([sys.executable, "-m", "postbote", "--config", str(config), *args], input=stdin,
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=30) as client:
            client.ehlo("client.example.org")
            client.mail("bob@example.org")
            assert client.rcpt("carol@new.example")[0] == 250
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
