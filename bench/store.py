"""Benchmark (not a test): durable deliveries per second into one mailbox.

Each delivery returns only after the blob file, its folder and the SQLite
commit are fsynced, exactly as for an SMTP "250". Message sizes 1 KB and
100 KB; 1 and 16 concurrent writers (the latter share group commits).

    .venv/bin/python bench/store.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from postbote.store import DeliveryTarget
from postbote.store.sqlite import SqliteStore


def make_message(size: int, n: int) -> bytes:
    head = (f"From: bench@example.org\r\nTo: user@example.com\r\nSubject: bench {n}\r\n"
            f"Message-ID: <{n}.{os.getpid()}@bench>\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n"
    body = (line * (size // len(line) + 1))[: max(0, size - len(head))]
    return head + body


async def run(size: int, writers: int, seconds: float) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        store = SqliteStore(Path(tmp), workers=max(4, writers))
        await store.open()
        await store.add_domain("example.com")
        acct = await store.add_account("user@example.com", "x")
        counter = 0
        deadline = time.monotonic() + seconds

        async def writer() -> None:
            nonlocal counter
            while time.monotonic() < deadline:
                counter += 1
                await store.deliver(make_message(size, counter), [DeliveryTarget(acct.id)])

        start = time.monotonic()
        await asyncio.gather(*(writer() for _ in range(writers)))
        elapsed = time.monotonic() - start
        await store.close()
        return counter / elapsed, counter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(f"{'size':>6} {'writers':>7} {'deliveries/s':>13} {'total':>7}")
    for size in (1024, 100 * 1024):
        for writers in (1, 16):
            rate, total = asyncio.run(run(size, writers, args.seconds))
            print(f"{size // 1024:>5}K {writers:>7} {rate:>13.1f} {total:>7}")


if __name__ == "__main__":
    main()
