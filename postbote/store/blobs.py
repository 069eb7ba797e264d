"""Message bytes on disk: immutable files named by their SHA-256.

The protocol that keeps a blob and its metadata row consistent through a
crash, a kill -9 or a concurrent garbage collection:

1. Outside any transaction, the bytes go to a temporary file in ``tmp/``,
   which is fsynced (``stage``). Nothing refers to it yet.
2. Inside the write transaction, ``materialize`` makes sure the final file
   exists, hard-linking the temporary one into place if it does not, and the
   touched folders are fsynced before the commit. Garbage collection deletes
   files only inside a write transaction too, so the two never race.
3. After the commit the temporary file is unlinked (``discard``).

A crash between 1 and 2 leaves only a temporary file, swept at the next open;
a crash between 2 and the commit leaves a final file that no row names: it is
invisible through the store and removed by ``sweep_orphans``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from .types import StoreError

CHUNK = 1 << 20


class DiskFull(StoreError):
    """The disk is full (or a write failed): a temporary failure, nothing was written."""


@dataclass(frozen=True)
class StagedBlob:
    sha256: str
    size: int
    temp_path: Path
    owned: bool  # the temporary file is ours to delete (not a caller's spool file)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobFiles:
    """The folder of blob files, ``ROOT/YYYYMMDD/SHA256``, with its ``tmp/``.

    A blob is named by its path relative to the root (``name``); the store
    keeps that name in the blob's row. New blobs go into the folder of the
    day, so the blobs of one group commit share one folder (one fsync).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"

    def open(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.root / name

    @staticmethod
    def new_name(sha256: str) -> str:
        return time.strftime("%Y%m%d", time.gmtime()) + "/" + sha256

    @staticmethod
    def legacy_name(sha256: str) -> str:
        return sha256[:2] + "/" + sha256

    def stage(self, data: bytes) -> StagedBlob:
        """Write ``data`` to a fsynced temporary file; raises DiskFull on ENOSPC."""
        temp = self.tmp / secrets.token_hex(12)
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise _write_error(exc) from None
        return StagedBlob(hashlib.sha256(data).hexdigest(), len(data), temp, owned=True)

    def stage_file(self, path: Path) -> StagedBlob:
        """Use a caller's spool file (on the same file system) as the temporary file.

        It is fsynced and hashed here; it is linked, never copied, and the
        caller stays its owner.
        """
        digest = hashlib.sha256()
        size = 0
        try:
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                os.fsync(f.fileno())
        except OSError as exc:
            raise _write_error(exc) from None
        return StagedBlob(digest.hexdigest(), size, path, owned=False)

    def materialize(self, staged: StagedBlob, name: str) -> Path | None:
        """Make the final file ``name`` exist; returns the folder to fsync, if one changed.

        Call only inside the write transaction (see the module docstring).
        """
        final = self.path(name)
        if final.exists():
            return None
        final.parent.mkdir(exist_ok=True)
        try:
            os.link(staged.temp_path, final)
        except FileExistsError:
            return None
        except OSError as exc:
            raise _write_error(exc) from None
        return final.parent

    def discard(self, staged: StagedBlob) -> None:
        if staged.owned:
            staged.temp_path.unlink(missing_ok=True)

    def read(self, name: str) -> bytes:
        return self.path(name).read_bytes()

    def remove(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)

    def sweep_temp(self, older_than: float, now: float) -> int:
        """Remove temporary files left by a crash (only old ones: another
        process may be staging right now)."""
        removed = 0
        for entry in os.scandir(self.tmp):
            try:
                if entry.stat().st_mtime < now - older_than:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                pass
        return removed

    def all_names(self) -> list[str]:
        """Every final blob name on disk (for orphan sweeps and checks)."""
        names = []
        for sub in os.scandir(self.root):
            if sub.is_dir() and sub.name != "tmp":
                names.extend(f"{sub.name}/{e.name}" for e in os.scandir(sub.path))
        return names


def _write_error(exc: OSError) -> StoreError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return DiskFull(f"cannot store message: {os.strerror(exc.errno)}")
    return StoreError(f"cannot store message: {exc.strerror or exc}")
