"""The queue CLI, DKIM/DNS commands, the smarthost route and local domains that never leave the machine."""

from __future__ import annotations

import dataclasses
import pytest

from postbote.cli import main
from postbote.config import OutboundSettings
from tests.harness import RunningServer, server_settings
from tests.queue.conftest import LOCAL_DOMAIN, PEER_HOSTS, queue_entries, route_to, start_postbote, wait_for
from tests.smtp.helpers import mailbox_messages, submit

ALICE = f"alice@{LOCAL_DOMAIN}"


@dataclasses.dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys):
    """``postbote --data-dir DATA ARGS…`` in this process (the store is shared with the running server)."""
    def run(server, *args: str) -> Ran:
        capsys.readouterr()
        code = main(["--data-dir", str(server.settings.data_path), *args])
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return run


def send(server, to: str) -> None:
    client = submit(server, ALICE)
    client.sendmail(ALICE, [to], f"From: <{ALICE}>\r\nTo: <{to}>\r\nSubject: queued\r\n\r\nbody\r\n".encode())
    client.quit()


@pytest.fixture
def stuck(tmp_path, dns, mx_port):
    """A server whose mail for remote.test waits: its MX is down and the next retry is an hour away."""
    route_to(dns, "remote.test", PEER_HOSTS[0])
    srv = start_postbote(tmp_path, dns, mx_port, retry_schedule=("1h",))
    srv.add_user(ALICE)
    send(srv, "bob@remote.test")
    [entry] = wait_for(lambda: [e for e in queue_entries(srv) if e.attempts], what="a failed attempt")
    yield srv, entry
    srv.stop()


def test_queue_list_and_show_give_recipients_and_the_last_reply(stuck, cli):
    srv, entry = stuck
    r = cli(srv, "queue", "list")
    assert r.returncode == 0 and entry.queue_id in r.stdout and "bob@remote.test" in r.stdout
    assert "cannot connect" in r.stdout
    r = cli(srv, "queue", "show", entry.queue_id)
    assert r.returncode == 0 and "bob@remote.test\tpending" in r.stdout and "attempts:   1" in r.stdout


def test_queue_hold_release_retry_and_delete(stuck, cli):
    srv, entry = stuck
    assert cli(srv, "queue", "hold", entry.queue_id).returncode == 0
    assert queue_entries(srv)[0].held
    assert "held" in cli(srv, "queue", "list").stdout
    assert cli(srv, "queue", "release").returncode == 0
    assert not queue_entries(srv)[0].held
    srv.run(srv.app.store.set_outbound_held(entry.queue_id, True))  # keep the runner off it
    assert cli(srv, "queue", "retry", entry.queue_id).returncode == 0
    assert queue_entries(srv)[0].next_attempt == 0
    r = cli(srv, "queue", "delete", entry.queue_id)
    assert r.returncode == 0 and not queue_entries(srv)
    assert srv.run(srv.app.store.collect_garbage()) == 1  # the queue held the only reference to the bytes
    r = cli(srv, "queue", "delete", entry.queue_id)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no queued message" in r.stderr


def test_dkim_generate_and_dns_records(stuck, cli):
    srv, _ = stuck
    r = cli(srv, "dkim", "generate", LOCAL_DOMAIN)
    assert r.returncode == 0 and "k=ed25519" in r.stdout and "k=rsa" in r.stdout
    assert len(list((srv.settings.data_path / "dkim" / LOCAL_DOMAIN).glob("*.pem"))) == 2
    r = cli(srv, "dns", "records", LOCAL_DOMAIN)
    assert r.returncode == 0
    assert r.stdout.count("._domainkey.") == 2 and f"{LOCAL_DOMAIN}.\t3600\tIN\tMX\t10 " in r.stdout
    r = cli(srv, "dkim", "generate", "not-ours.test")
    assert r.returncode == 1 and "not one of our domains" in r.stderr


def test_queued_mail_for_a_domain_that_became_local_is_delivered_locally(stuck):
    srv, entry = stuck
    srv.add_user("bob@remote.test")  # now one of our domains
    srv.run(srv.app.store.retry_outbound(None, 0))
    wait_for(lambda: mailbox_messages(srv, "bob@remote.test"), what="local delivery")
    wait_for(lambda: not queue_entries(srv), what="empty queue")


def test_smarthost_with_starttls_and_auth_relays_everything(tmp_path, dns):
    relay = RunningServer(server_settings(tmp_path / "relay")).start()
    try:
        relay.add_user(ALICE, "relay-password")
        cert = relay.settings.data_path / "tls" / "cert.pem"
        outbound = OutboundSettings(smarthost="127.0.0.1", smarthost_port=relay.port("submission"),
                                    smarthost_user=ALICE, smarthost_password="relay-password",
                                    smarthost_tls="starttls", tls_ca_file=str(cert), poll_interval=0.05,
                                    retry_schedule=("1s",))
        settings = dataclasses.replace(server_settings(tmp_path / "data", hostname="mail.postbote.test",
                                                       domains=(LOCAL_DOMAIN,)), outbound=outbound)
        srv = RunningServer(settings).start()
        try:
            srv.add_user(ALICE)
            send(srv, "bob@anywhere.test")
            [relayed] = wait_for(lambda: relay.run(relay.app.store.list_outbound()), what="relayed message")
            assert relayed.recipients == ("bob@anywhere.test",) and relayed.sender == ALICE
            wait_for(lambda: not queue_entries(srv), what="empty queue")
        finally:
            srv.stop()
    finally:
        relay.stop()
