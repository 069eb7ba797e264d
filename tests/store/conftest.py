"""The store contract suite runs once per backend."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postbote.store import Store
from postbote.store.sqlite import SqliteStore

BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_store(backend: str, tmp_path: Path):
    @contextlib.asynccontextmanager
    async def make(folder: Path | None = None) -> AsyncIterator[Store]:
        store = SqliteStore(folder or tmp_path / "data")
        await store.open()
        try:
            yield store
        finally:
            await store.close()

    return make
