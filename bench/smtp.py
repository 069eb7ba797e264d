"""Benchmark (not a test): inbound SMTP, postbote against Postfix, in one run.

Postfix's own load generator ``smtp-source`` sends to postbote and to a
private Postfix instance (virtual mailbox delivery into Maildirs) on
loopback, interleaved, at several concurrencies and message sizes. For each
it reports messages per second *delivered* (postbote: its 250 means the
message is fsynced into the mailbox; Postfix: counted when the Maildir file
exists, since Postfix's 250 only means "queued"), and CPU seconds per 1000
messages of the server's processes.

    .venv/bin/python bench/smtp.py [--messages 2000] [--concurrency 1,10,50] [--sizes 2,100]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import free_port, wait_for_port  # noqa: E402
from postfix_peer import PostfixInstance, cpu_seconds, ensure_installed, process_tree  # noqa: E402

from tests.dnsserver import DnsServer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "bench.test"
THREADS = int(os.environ.get("BENCH_THREADS", "8"))
USER = "user"


def start_postbote(tmp: Path, dns: DnsServer, workers: int = 1) -> tuple[subprocess.Popen, int]:
    """postbote with its resolver on a loopback DNS server (every name NXDOMAIN),
    so inbound checks (SPF, DKIM, DMARC) run but never leave the machine."""
    tmp.mkdir(parents=True)
    port = free_port()
    ports = {name: free_port() for name in ("submission", "submissions", "imap", "imaps", "pop3", "pop3s",
                                                 "http", "managesieve")}
    config = tmp / "postbote.toml"
    config.write_text(
        f'data_dir = "{tmp / "data"}"\ndomains = ["{DOMAIN}"]\nworker_threads = {THREADS}\n'
        f'[dns]\nnameservers = ["{dns.address}"]\n'
        '[log]\nlevel = "warning"\n[limits]\n'
        "max_connections_per_ip = 1000\n[listen]\n"
        f'smtp = ["127.0.0.1:{port}"]\n' + "".join(f'{k} = ["127.0.0.1:{v}"]\n' for k, v in ports.items()))
    bin_dir = Path(sys.executable).parent
    subprocess.run([bin_dir / "postbote", "--config", config, "user", "add", f"{USER}@{DOMAIN}",
                    "--password-stdin"], input=b"bench-password\n", check=True, capture_output=True)
    proc = subprocess.Popen([bin_dir / "postbote", "--config", config, "serve", "--workers", str(workers)],
                            stderr=subprocess.DEVNULL)
    wait_for_port(port, proc, "postbote")
    return proc, port


def postbote_delivered(tmp: Path) -> int:
    import sqlite3

    db = sqlite3.connect(tmp / "data" / "postbote.db")
    try:
        return db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    finally:
        db.close()


def smtp_source(port: int, messages: int, sessions: int, size: int) -> None:
    subprocess.run(["smtp-source", "-d", "-s", str(sessions), "-m", str(messages), "-l", str(size),
                    "-f", "bench@example.org", "-t", f"{USER}@{DOMAIN}", f"127.0.0.1:{port}"],
                   check=True, capture_output=True, timeout=1800)


def measure(port: int, pids: list[int], delivered, messages: int, sessions: int, size: int) -> tuple[float, float]:
    before_count = delivered()
    before_cpu = cpu_seconds(pids)
    start = time.monotonic()
    smtp_source(port, messages, sessions, size)
    while delivered() < before_count + messages and time.monotonic() - start < 600:
        time.sleep(0.01)
    elapsed = time.monotonic() - start
    cpu = cpu_seconds(pids) - before_cpu
    return messages / elapsed, cpu / messages * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", default="1,10,50")
    parser.add_argument("--sizes", default="2,100", help="message sizes in KB")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="postbote worker processes (default: one per core, as Postfix uses them all)")
    args = parser.parse_args()
    ensure_installed()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        os.chmod(tmp, 0o755)
        dns = DnsServer(negative_ttl=3600).start()  # like real zones: negative answers cache
        pb, pb_port = start_postbote(tmp / "postbote", dns, args.workers)
        print(f"postbote workers: {args.workers}; messages per run: {args.messages}")
        pf = PostfixInstance(tmp / "postfix", free_port(), DOMAIN, [USER]).start()
        try:
            print(f"{'size':>5} {'conc':>4} | {'postbote msg/s':>14} {'cpu s/1k':>8} | "
                  f"{'postfix msg/s':>13} {'cpu s/1k':>8} | {'ratio':>5}")
            for size_kb in (int(s) for s in args.sizes.split(",")):
                for conc in (int(c) for c in args.concurrency.split(",")):
                    n = args.messages if size_kb < 50 else max(200, args.messages // 4)
                    pb_rate, pb_cpu = measure(pb_port, process_tree(pb.pid), lambda: postbote_delivered(tmp / "postbote"),
                                              n, conc, size_kb * 1024)
                    pf_rate, pf_cpu = measure(pf.port, pf.pids(), pf.delivered, n, conc, size_kb * 1024)
                    print(f"{size_kb:>4}K {conc:>4} | {pb_rate:>14.1f} {pb_cpu:>8.2f} | "
                          f"{pf_rate:>13.1f} {pf_cpu:>8.2f} | {pb_rate / pf_rate:>5.2f}", flush=True)
        finally:
            pb.send_signal(signal.SIGTERM)
            pb.wait(30)
            pf.stop()
            dns.stop()


if __name__ == "__main__":
    main()
