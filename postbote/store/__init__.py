"""The store: one contract (``base.Store``), an embedded SQLite backend."""

from pathlib import Path

from .base import Store
from .types import *  # noqa: F403 - the value types are part of the contract


def open_store(data_dir: Path | str, workers: int = 8) -> Store:
    """The store for a data folder (the embedded backend; PostgreSQL comes later)."""
    from .sqlite import SqliteStore

    return SqliteStore(Path(data_dir), workers=workers)
