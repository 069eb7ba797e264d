"""Benchmark (not a test): POP3 messages retrieved per second, postbote against Dovecot.

Both servers get the same accounts, each holding the same messages (unique per account, so
postbote's content-addressed blobs share nothing), the same password hash (Argon2id with
postbote's parameters: Dovecot's passwd-file reads it as {ARGON2ID}), and run on loopback in
the same run. N client processes, one account each (POP3 locks the maildrop), repeat whole
sessions: USER/PASS, LIST, RETR of every message, QUIT (nothing deleted, so every session sees
the same maildrop). One warm-up session per account is not counted.

    bench/pop3_setup.sh      # installs dovecot-pop3d (root), stops its system service
    .venv/bin/python bench/pop3.py [--clients 4] [--messages 200] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import poplib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dovecot_peer  # noqa: E402
from common import free_port, wait_for_port  # noqa: E402

# postbote's worker processes (--workers); the peer uses every core as well.
WORKERS = 1

from postbote.accounts.passwords import hash_password
from postbote.store import DeliveryTarget
from postbote.store.sqlite import SqliteStore

DOMAIN = "bench.test"
PASSWORD = "bench password 1234"
SIZES = (4 * 1024, 64 * 1024)


def make_message(account: int, n: int, size: int) -> bytes:
    head = (f"From: sender{n}@example.org\r\nTo: user{account}@{DOMAIN}\r\nSubject: bench {account}/{n}\r\n"
            f"Message-ID: <{account}.{n}.{size}@bench>\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n"
    return head + (line * (size // len(line) + 1))[: max(0, size - len(head))]


def users(clients: int) -> list[str]:
    return [f"user{i}@{DOMAIN}" for i in range(clients)]


# --- postbote ---------------------------------------------------------------------------------


async def fill_postbote(data: Path, clients: int, messages: int, size: int, password_hash: str) -> None:
    store = SqliteStore(data)
    await store.open()
    await store.add_domain(DOMAIN)
    for i, address in enumerate(users(clients)):
        account = await store.add_account(address, password_hash)
        await asyncio.gather(*(store.deliver(make_message(i, n, size), [DeliveryTarget(account.id)])
                               for n in range(messages)))
    await store.close()


def start_postbote(root: Path, clients: int, messages: int, size: int, password_hash: str) -> tuple[subprocess.Popen, int]:
    data = root / "postbote"
    asyncio.run(fill_postbote(data, clients, messages, size, password_hash))
    port = free_port()
    config = root / "postbote.toml"
    off = "\n".join(f"{name} = []" for name in
                    ("smtp", "submission", "submissions", "lmtp", "imap", "imaps", "pop3s", "http",
                     "managesieve"))
    config.write_text(f'domains = ["{DOMAIN}"]\n\n[listen]\npop3 = ["127.0.0.1:{port}"]\n{off}\n\n'
                      '[log]\nlevel = "warning"\n')
    proc = subprocess.Popen([sys.executable, "-m", "postbote", "serve", "--config", str(config),
                             "--data-dir", str(data), "--workers", str(WORKERS)], stdout=subprocess.DEVNULL, stderr=open(root / "postbote.log", "w"))
    wait_for_port(port, proc, "postbote")
    return proc, port


# --- Dovecot ----------------------------------------------------------------------------------


def start_dovecot(root: Path, clients: int, messages: int, size: int, password_hash: str) -> tuple[subprocess.Popen, int]:
    mailboxes = {address: [make_message(i, n, size) for n in range(messages)] for i, address in enumerate(users(clients))}
    return dovecot_peer.start_dovecot(root, "pop3", mailboxes, password_hash)


# --- clients ----------------------------------------------------------------------------------


def session(port: int, user: str, deadline: float | None = None) -> tuple[int, int]:
    """One whole POP3 session; returns (messages, octets) retrieved."""
    pop = poplib.POP3("127.0.0.1", port, timeout=60)
    pop.user(user)
    pop.pass_(PASSWORD)
    count = octets = 0
    for entry in pop.list()[1]:
        if deadline is not None and time.monotonic() >= deadline:
            break
        octets += pop.retr(int(entry.split()[0]))[2]
        count += 1
    pop.quit()
    return count, octets


def client(port: int, user: str, seconds: float) -> tuple[int, int, float]:
    start = time.monotonic()
    deadline = start + seconds
    count = octets = 0
    while time.monotonic() < deadline:
        c, o = session(port, user, deadline)
        count, octets = count + c, octets + o
    return count, octets, time.monotonic() - start


def measure(port: int, clients: int, seconds: float) -> tuple[float, float]:
    for user in users(clients):
        session(port, user)  # warm caches and indexes on both sides
    with multiprocessing.Pool(clients) as pool:
        results = pool.starmap(client, [(port, u, seconds) for u in users(clients)])
    elapsed = max(r[2] for r in results)
    return sum(r[0] for r in results) / elapsed, sum(r[1] for r in results) / elapsed / 1e6


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--messages", type=int, default=300, help="messages per account")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="postbote worker processes (default: one per core, as the peer uses them all)")
    args = parser.parse_args()
    global WORKERS
    WORKERS = args.workers
    print(f"postbote workers: {WORKERS}")
    password_hash = hash_password(PASSWORD)
    print(f"{args.clients} clients, {args.messages} messages per account, {args.seconds:g} s per run")
    print(f"{'size':>7} {'server':>9} {'msgs/s':>9} {'MB/s':>7}")
    for size in SIZES:
        root = Path(tempfile.mkdtemp(prefix="bench-pop3-", dir=os.environ.get("BENCH_DIR")))
        root.chmod(0o755)  # Dovecot's mail processes run as nobody
        rates = {}
        try:
            for name, start in (("postbote", start_postbote), ("dovecot", start_dovecot)):
                proc, port = start(root, args.clients, args.messages, size, password_hash)
                try:
                    rates[name] = measure(port, args.clients, args.seconds)
                finally:
                    stop(proc)
                print(f"{size // 1024:>5}KB {name:>9} {rates[name][0]:>9.0f} {rates[name][1]:>7.1f}")
            print(f"{size // 1024:>5}KB {'ratio':>9} {rates['postbote'][0] / rates['dovecot'][0]:>9.2f}"
                  "  (postbote / dovecot)")
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
