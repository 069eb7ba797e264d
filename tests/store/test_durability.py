"""Durability: concurrent processes, SIGKILL in the middle, full disks, bad folders."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from postbote.store import DeliveryTarget, StoreError
from postbote.store.blobs import DiskFull
from postbote.store.sqlite import SqliteStore

from .test_store_contract import account, message

WORKER = Path(__file__).with_name("deliver_worker.py")


def spawn(data: Path, tag: str, count: int, concurrency: int = 1) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), str(data), "alice@example.com", tag, str(count),
                             str(concurrency)], stdout=subprocess.PIPE, text=True)


async def setup_account(data: Path) -> None:
    store = SqliteStore(data)
    await store.open()
    await account(store)
    await store.close()


async def stored_subjects(data: Path) -> dict[int, str]:
    store = SqliteStore(data)
    await store.open()
    box = await store.get_mailbox((await store.get_account("alice@example.com")).id, "INBOX")
    out = {}
    for m in await store.list_messages(box.id):
        raw = await store.read_blob(m.blob_id)
        out[m.uid] = raw.split(b"\r\n", 1)[0].decode().removeprefix("Subject: ")
    await store.close()
    return out


async def test_two_processes_delivering_to_one_mailbox_lose_and_duplicate_nothing(tmp_path):
    data = tmp_path / "data"
    await setup_account(data)
    procs = [spawn(data, tag, 150, concurrency=4) for tag in ("p1", "p2")]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    acked = dict(line.split() for out in outputs for line in out.splitlines())
    assert len(acked) == 300
    stored = await stored_subjects(data)
    assert sorted(stored) == list(range(1, 301))  # no gap, no duplicate UID
    assert {v: int(k) for k, v in stored.items()} == {k: int(v) for k, v in acked.items()}


async def test_sigkill_during_1000_deliveries_keeps_every_acknowledged_one(tmp_path):
    data = tmp_path / "data"
    await setup_account(data)
    proc = spawn(data, "k", 1000, concurrency=8)
    acked: dict[str, str] = {}
    assert proc.stdout is not None
    while len(acked) < 300:
        line = proc.stdout.readline()
        assert line, "worker ended early"
        tag, uid = line.split()
        acked[tag] = uid
    os.kill(proc.pid, signal.SIGKILL)
    rest = proc.stdout.read()  # lines written before the kill
    proc.wait()
    acked.update(line.split() for line in rest.splitlines())

    stored = await stored_subjects(data)  # opens cleanly after the crash
    by_tag = {v: k for k, v in stored.items()}
    for tag, uid in acked.items():
        assert by_tag.get(tag) == int(uid), f"acknowledged {tag} lost"
    # Only deliveries in flight at the kill (at most one batch of 8 writers)
    # may be present without an acknowledgement.
    assert len(stored) - len(acked) <= 8
    assert len(set(stored.values())) == len(stored)

    store = SqliteStore(data)
    await store.open()
    try:
        # Every blob row has its file (stored_subjects read them all); a file
        # that a crash left without a row is invisible and swept away.
        await store.sweep_orphans()
        names = set(store.db.blobs.all_names())
        rows = {r[0] for r in store.db._read().execute("SELECT path FROM blobs")}
        assert names == rows
    finally:
        await store.close()


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True)
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


async def test_full_disk_during_blob_write_is_a_clear_error_and_leaves_nothing(tmp_path):
    data = tmp_path / "small"
    if not _mount_tmpfs(data, "2m"):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        store = SqliteStore(data)
        await store.open()
        acct = await account(store)
        box = await store.get_mailbox(acct.id, "INBOX")
        with pytest.raises(DiskFull, match="No space left"):
            await store.deliver(message(pad=4 * 1024 * 1024), [DeliveryTarget(acct.id)])
        assert await store.list_messages(box.id) == []
        assert list(store.db.blobs.tmp.iterdir()) == []
        assert store.db.blobs.all_names() == []
        # The store still works once there is room.
        await store.deliver(message(), [DeliveryTarget(acct.id)])
        assert len(await store.list_messages(box.id)) == 1
        await store.close()
    finally:
        subprocess.run(["umount", str(data)])


async def test_unusable_data_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    store = SqliteStore(blocker / "data")
    with pytest.raises(StoreError, match="not writable"):
        await store.open()


async def test_store_opens_again_and_keeps_schema_version(tmp_path):
    data = tmp_path / "data"
    await setup_account(data)
    store = SqliteStore(data)
    await store.open()
    assert store.db.schema_version() >= 1
    assert await store.get_account("alice@example.com") is not None
    await store.close()
