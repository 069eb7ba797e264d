"""Benchmark (not a test): IMAP, postbote against Dovecot, in one run.

An asyncio load generator (a separate process from the servers) opens many IMAP sessions
spread over several accounts, each running a realistic mix against its INBOX: FETCH of all
flags, of envelopes and of whole bodies, SEARCH, STORE, APPEND followed by EXPUNGE, NOOP and
short IDLEs. It reports operations per second for postbote and for a private Dovecot
(Debian dovecot-imapd, Maildir, own config on a loopback port), and their ratio. Then it
holds 10,000 postbote sessions in IDLE and reports the server's resident memory.

    .venv/bin/python bench/imap.py [--clients 40] [--accounts 8] [--messages 300]
                                   [--seconds 20] [--idle 10000]

Run as root (Dovecot's mail folders are chowned to nobody) with dovecot-imapd installed
(scripts/install-test-deps.sh). Nothing is left running: both servers are stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from argon2 import PasswordHasher

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import free_port, wait_for_port  # noqa: E402
import dovecot_peer  # noqa: E402
from postfix_peer import process_tree  # noqa: E402

# postbote's worker processes (--workers); the peer uses every core as well.
WORKERS = 1

from postbote.store import DeliveryTarget  # noqa: E402
from postbote.store.sqlite import SqliteStore  # noqa: E402

DOMAIN = "bench.test"
PASSWORD = "bench-password"
# A cheap argon2id hash for both servers: logins are setup here, not what is measured.
PASSWORD_HASH = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
LINE = re.compile(rb"\{(\d+)\}\r\n$")
MIX = {  # operation -> weight
    "fetch_flags": 15, "fetch_envelopes": 20, "fetch_body": 20, "search": 10, "store": 15,
    "append_expunge": 8, "noop": 6, "idle": 6,
}


def users(accounts: int) -> list[str]:
    return [f"user{i}@{DOMAIN}" for i in range(accounts)]


def make_message(account: int, n: int) -> bytes:
    words = " ".join(random.Random(n).choice(("alpha", "beta", "gamma", "delta", "report", "lunch"))
                     for _ in range(400))
    return (f"From: Sender {n % 17} <sender{n % 17}@example.com>\r\nTo: user{account}@{DOMAIN}\r\n"
            f"Subject: message {n} about {words.split()[0]}\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\n"
            f"Message-ID: <{account}.{n}@example.com>\r\n\r\n{words}\r\n").encode()


def memory_mb(pid: int) -> float:
    """Memory of the server, the process and its workers: the sum of their proportional
    set sizes (PSS). Summing RSS would count every page the forked workers share (the
    interpreter, the libraries) once per worker."""
    total = 0.0
    for member in process_tree(pid):
        for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1]) / 1024
    return total


# --- the servers ----------------------------------------------------------------------------------


async def fill_postbote(data: Path, accounts: int, messages: int) -> None:
    store = SqliteStore(data)
    await store.open()
    await store.add_domain(DOMAIN)
    for i, address in enumerate(users(accounts)):
        account = await store.add_account(address, PASSWORD_HASH)
        for start in range(0, messages, 200):
            await asyncio.gather(*(store.deliver(make_message(i, n), [DeliveryTarget(account.id)])
                                   for n in range(start, min(messages, start + 200))))
    await store.close()


def start_postbote(root: Path, accounts: int, messages: int) -> tuple[subprocess.Popen, int]:
    data = root / "postbote"
    asyncio.run(fill_postbote(data, accounts, messages))
    port = free_port()
    config = root / "postbote.toml"
    off = "\n".join(f"{name} = []" for name in
                    ("smtp", "submission", "submissions", "lmtp", "imaps", "pop3", "pop3s", "http",
                     "managesieve"))
    config.write_text(f'domains = ["{DOMAIN}"]\n\n[listen]\nimap = ["127.0.0.1:{port}"]\n{off}\n\n'
                      '[limits]\nmax_connections = 30000\n\n[log]\nlevel = "warning"\n')
    proc = subprocess.Popen([sys.executable, "-m", "postbote", "serve", "--config", str(config),
                             "--data-dir", str(data), "--workers", str(WORKERS)], stdout=subprocess.DEVNULL,
                            stderr=open(root / "postbote.log", "w"))
    wait_for_port(port, proc, "postbote")
    return proc, port


def start_dovecot(root: Path, accounts: int, messages: int) -> tuple[subprocess.Popen, int]:
    mailboxes = {address: [make_message(i, n) for n in range(messages)] for i, address in enumerate(users(accounts))}
    return dovecot_peer.start_dovecot(root, "imap", mailboxes, PASSWORD_HASH)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the client -------------------------------------------------------------------------------------


class Client:
    """A minimal IMAP client: tagged commands, literals in responses, continuations."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.counter = 0

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        client = cls(reader, writer)
        await reader.readline()  # greeting
        return client

    async def response(self, tag: bytes) -> list[bytes]:
        lines = []
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError("server closed the connection")
            found = LINE.search(line)
            if found:
                line += await self.reader.readexactly(int(found.group(1)))
                line += await self.reader.readline()
            lines.append(line)
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(f"command failed: {line!r}")
                return lines

    async def command(self, text: bytes, literal: bytes | None = None) -> list[bytes]:
        self.counter += 1
        tag = b"b%d" % self.counter
        if literal is None:
            self.writer.write(tag + b" " + text + b"\r\n")
        else:
            self.writer.write(tag + b" " + text + b" {%d}\r\n" % len(literal))
            await self.reader.readline()  # "+ Ready"
            self.writer.write(literal + b"\r\n")
        return await self.response(tag)

    async def idle(self) -> None:
        self.counter += 1
        tag = b"b%d" % self.counter
        self.writer.write(tag + b" IDLE\r\n")
        while not (await self.reader.readline()).startswith(b"+"):
            pass
        self.writer.write(b"DONE\r\n")
        await self.response(tag)

    def close(self) -> None:
        self.writer.close()


async def run_session(port: int, user: str, messages: int, deadline: float, counts: Counter, seed: int) -> None:
    rng = random.Random(seed)
    client = await Client.connect(port)
    await client.command(b'LOGIN "%s" "%s"' % (user.encode(), PASSWORD.encode()))
    await client.command(b"SELECT INBOX")
    ops, weights = zip(*MIX.items())
    while time.monotonic() < deadline:
        op = rng.choices(ops, weights)[0]
        uid = rng.randint(1, messages)
        if op == "fetch_flags":
            await client.command(b"UID FETCH 1:* (FLAGS)")
        elif op == "fetch_envelopes":
            await client.command(b"UID FETCH %d:%d (UID FLAGS ENVELOPE RFC822.SIZE)" % (uid, uid + 20))
        elif op == "fetch_body":
            await client.command(b"UID FETCH %d (BODY.PEEK[])" % uid)
        elif op == "search":
            await client.command(rng.choice((b"UID SEARCH UNSEEN", b"UID SEARCH SUBJECT lunch",
                                             b"UID SEARCH FROM sender3")))
        elif op == "store":
            await client.command(b"UID STORE %d %sFLAGS.SILENT (\\Seen)" % (uid, rng.choice((b"+", b"-"))))
        elif op == "append_expunge":
            lines = await client.command(b"APPEND INBOX (\\Seen)", make_message(0, messages + uid))
            appended = re.search(rb"APPENDUID \d+ (\d+)", lines[-1])
            if appended:
                new = appended.group(1)
                await client.command(b"UID STORE " + new + b" +FLAGS.SILENT (\\Deleted)")
                await client.command(b"UID EXPUNGE " + new)
        elif op == "noop":
            await client.command(b"NOOP")
        else:
            await client.idle()
        counts[op] += 1
    await client.command(b"LOGOUT")
    client.close()


async def measure(port: int, accounts: int, clients: int, messages: int, seconds: float) -> tuple[float, Counter]:
    counts: Counter = Counter()
    deadline = time.monotonic() + seconds
    started = time.monotonic()
    await asyncio.gather(*(run_session(port, users(accounts)[i % accounts], messages, deadline, counts, i)
                           for i in range(clients)))
    elapsed = time.monotonic() - started
    return sum(counts.values()) / elapsed, counts


async def hold_idle(port: int, accounts: int, count: int, pid: int) -> tuple[float, float]:
    """Open `count` sessions, each logged in, INBOX selected and in IDLE; memory before and after."""
    before = memory_mb(pid)
    clients: list[Client] = []
    for start in range(0, count, 250):
        async def one(i: int) -> Client:
            client = await Client.connect(port)
            await client.command(b'LOGIN "%s" "%s"' % (users(accounts)[i % accounts].encode(), PASSWORD.encode()))
            await client.command(b"SELECT INBOX")
            client.writer.write(b"i IDLE\r\n")
            await client.reader.readline()
            return client
        clients += await asyncio.gather(*(one(i) for i in range(start, min(count, start + 250))))
    await asyncio.sleep(2)
    after = memory_mb(pid)
    for client in clients:
        client.close()
    return before, after


def run_load(port: int, args: argparse.Namespace) -> tuple[float, Counter]:
    return asyncio.run(measure(port, args.accounts, args.clients, args.messages, args.seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--accounts", type=int, default=8)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--idle", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="postbote worker processes (default: one per core, as the peer uses them all)")
    args = parser.parse_args()
    global WORKERS
    WORKERS = args.workers
    print(f"postbote workers: {WORKERS}")
    results: dict[str, tuple[float, Counter]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-imap-") as tmp:
        root = Path(tmp)
        os.chmod(root, 0o755)
        for name, start in (("postbote", start_postbote), ("dovecot", start_dovecot)):
            proc, port = start(root, args.accounts, args.messages)
            try:
                rate, counts = run_load(port, args)
                results[name] = (rate, counts)
                print(f"{name:>9}: {rate:8.0f} ops/s   ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})",
                      flush=True)
                if name == "postbote" and args.idle:
                    before, after = asyncio.run(hold_idle(port, args.accounts, args.idle, proc.pid))
                    print(f"{'postbote':>9}: memory (PSS) {before:.0f} MB idle, {after:.0f} MB with {args.idle} sessions "
                          f"in IDLE ({(after - before) * 1024 / args.idle:.1f} KB each)", flush=True)
            finally:
                stop(proc)
        ratio = results["postbote"][0] / results["dovecot"][0]
        print(f"{'ratio':>9}: {ratio:8.2f}  (postbote / dovecot, {args.clients} clients, "
              f"{args.accounts} accounts, {args.messages} messages each)")


if __name__ == "__main__":
    main()
