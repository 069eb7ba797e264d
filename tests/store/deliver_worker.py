"""A separate process that delivers messages and reports each one that returned.

Used by the durability tests: one line ``<tag> <uid>`` is written and
flushed only after ``store.deliver`` returned, so whatever the parent reads
was acknowledged.
"""

import asyncio
import sys
from pathlib import Path

from postbote.store import Delivered, DeliveryTarget
from postbote.store.sqlite import SqliteStore


async def main(data_dir: str, address: str, tag: str, count: int, concurrency: int) -> None:
    store = SqliteStore(Path(data_dir))
    await store.open()
    acct = await store.get_account(address)
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            raw = f"Subject: {tag}-{i}\r\nMessage-ID: <{tag}-{i}@test>\r\n\r\nbody {i}\r\n".encode()
            [outcome] = await store.deliver(raw, [DeliveryTarget(acct.id)])
            assert isinstance(outcome, Delivered)
            sys.stdout.write(f"{tag}-{i} {outcome.uid}\n")
            sys.stdout.flush()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
