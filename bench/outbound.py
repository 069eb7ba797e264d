"""Benchmark (not a test): outbound messages per second, postbote against a Postfix relay.

Both get the same load: N messages for one remote domain, queued while the
remote side (Postfix's ``smtp-sink``, which accepts and discards) is down,
then released at once (``postbote queue retry`` / ``postqueue -f``). The
time to empty each queue gives messages per second; each system runs with
its default concurrency. Everything stays on loopback: the test DNS server
routes the remote domain to 127.0.0.2, where smtp-sink listens.

    .venv/bin/python bench/outbound.py [--messages 1000] [--size 2000]

Needs root (a private Postfix instance) and Debian's postfix package.
"""

from __future__ import annotations

import argparse
import os
import shutil
import smtplib
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.dnsserver import DnsServer  # noqa: E402
from tests.queue.peers import free_port  # noqa: E402
from tests.queue.postfix import Postfix, available  # noqa: E402
from tests.smtp.helpers import insecure_context  # noqa: E402

SINK_HOST = "127.0.0.2"
RELAY_HOST = "127.0.0.3"
USER = "bench@postbote.test"
PASSWORD = "bench-password-1"
CLIENTS = 4


def message(n: int, size: int) -> bytes:
    head = (f"From: <{USER}>\r\nTo: <user{n % 50}@remote.test>\r\nSubject: bench {n}\r\n"
            f"Message-ID: <bench-{n}@postbote.test>\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def inject(port: int, count: int, size: int, auth: bool) -> None:
    """Send ``count`` messages over CLIENTS parallel connections."""
    def client(part: range) -> None:
        c = smtplib.SMTP("127.0.0.1" if auth else RELAY_HOST, port, timeout=120)
        if auth:
            c.starttls(context=insecure_context())
            c.login(USER, PASSWORD)
        for n in part:
            c.sendmail(USER, [f"user{n % 50}@remote.test"], message(n, size))
        c.quit()

    errors: list[BaseException] = []

    def guarded(part: range) -> None:
        try:
            client(part)
        except (OSError, smtplib.SMTPException) as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(range(k, count, CLIENTS),)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"injecting failed: {errors[0]!r}")


def wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


class Sink:
    """Postfix's smtp-sink on SINK_HOST:port (started and stopped on demand)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["smtp-sink", "-u", "postfix", "-h", "sink.remote.test",
                                      f"{SINK_HOST}:{self.port}", "512"])
        time.sleep(0.3)

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


# -- postbote -------------------------------------------------------------------------

def postbote_config(folder: Path, dns: DnsServer, sink_port: int) -> tuple[Path, dict[str, int]]:
    ports = {"smtp": free_port(("127.0.0.1",)), "submission": free_port(("127.0.0.1",))}
    lines = [f'data_dir = "{folder / "data"}"', 'hostname = "mail.postbote.test"', 'domains = ["postbote.test"]',
             "[dns]", f'nameservers = ["{dns.address}"]', "[outbound]", f"port = {sink_port}",
             'retry_schedule = ["1h"]', "poll_interval = 0.2", "[log]", 'level = "warning"', "[listen]"]
    lines += [f'{name} = ["127.0.0.1:{port}"]' for name, port in ports.items()]
    lines += [f"{name} = []" for name in ("submissions", "imap", "imaps", "pop3", "pop3s", "http",
                                                     "managesieve")]
    path = folder / "postbote.toml"
    path.write_text("\n".join(lines) + "\n")
    return path, ports


def cli(config: Path, *args: str, stdin: str = "") -> None:
    subprocess.run([sys.executable, "-m", "postbote", "--config", str(config), *args], input=stdin, text=True,
                   check=True, capture_output=True)


def queued(db: Path, attempted: bool = False) -> int:
    with sqlite3.connect(db, timeout=30) as conn:
        where = " WHERE attempts > 0" if attempted else ""
        return conn.execute(f"SELECT count(*) FROM outbound{where}").fetchone()[0]


def bench_postbote(folder: Path, dns: DnsServer, sink: Sink, count: int, size: int) -> float:
    folder.mkdir(parents=True, exist_ok=True)
    config, ports = postbote_config(folder, dns, sink.port)
    log = open(folder / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "postbote", "--config", str(config), "serve"], stderr=log)
    try:
        wait(lambda: (folder / "data" / "postbote.db").exists() and _listening(ports["submission"]), 30, "postbote")
        cli(config, "user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n")
        inject(ports["submission"], count, size, auth=True)
        db = folder / "data" / "postbote.db"
        wait(lambda: queued(db, attempted=True) == count, 300, "postbote's first attempts")
        sink.start()
        started = time.monotonic()
        cli(config, "queue", "retry")
        wait(lambda: queued(db) == 0, 600, "postbote's queue to drain")
        return time.monotonic() - started
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()
        sink.stop()


def _listening(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


# -- Postfix ----------------------------------------------------------------------------

def queue_files(pf: Postfix) -> int:
    total = 0
    for sub in ("maildrop", "incoming", "active", "deferred", "hold"):
        for _, _, files in os.walk(pf.root / "queue" / sub):
            total += len(files)
    return total


def deferred_files(pf: Postfix) -> int:
    return sum(len(files) for _, _, files in os.walk(pf.root / "queue" / "deferred"))


def bench_postfix(folder: Path, sink: Sink, count: int, size: int) -> float:
    port = free_port((RELAY_HOST,))
    pf = Postfix(folder, RELAY_HOST, port, hostname="relay.bench.test",
                 relayhost=f"[{SINK_HOST}]:{sink.port}").start()
    try:
        inject(port, count, size, auth=False)
        wait(lambda: deferred_files(pf) == count, 300, "Postfix's first attempts")
        sink.start()
        started = time.monotonic()
        subprocess.run(["postqueue", "-c", str(pf.config), "-f"], check=True)
        wait(lambda: queue_files(pf) == 0, 600, "Postfix's queue to drain")
        return time.monotonic() - started
    finally:
        pf.stop()
        sink.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--size", type=int, default=2000, help="octets per message")
    args = parser.parse_args()
    if not available() or not shutil.which("smtp-sink"):
        raise SystemExit("needs root and Debian's postfix (scripts/install-test-deps.sh installs it)")
    dns = DnsServer().start()
    dns.add("remote.test", "MX", "10 sink.remote.test.")
    dns.add("sink.remote.test", "A", SINK_HOST)
    sink = Sink(free_port((SINK_HOST,)))
    root = Path(tempfile.mkdtemp(prefix="postbote-bench-queue-", dir=os.environ.get("BENCH_DIR")))
    root.chmod(0o755)  # Postfix's daemons (user postfix) open paths below it
    try:
        ours = bench_postbote(root / "postbote", dns, sink, args.messages, args.size)
        theirs = bench_postfix(root / "postfix", sink, args.messages, args.size)
    finally:
        dns.stop()
        shutil.rmtree(root, ignore_errors=True)
    a, b = args.messages / ours, args.messages / theirs
    print(f"outbound to smtp-sink, {args.messages} messages of {args.size} octets, one destination:")
    print(f"  postbote: {a:8.1f} messages/s ({ours:.2f} s)")
    print(f"  Postfix:  {b:8.1f} messages/s ({theirs:.2f} s)")
    print(f"  ratio postbote/Postfix: {a / b:.2f}")


if __name__ == "__main__":
    main()
