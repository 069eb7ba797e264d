"""Shared test plumbing: async tests without a plugin, and store backends."""

from __future__ import annotations

import asyncio
import inspect
import os

import pytest

IN_CI = os.environ.get("CI") == "true"


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests on a fresh event loop each."""
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
        asyncio.run(pyfuncitem.obj(**args))
        return True
    return None


def require(condition: bool, reason: str) -> None:
    """Skip when an outside program is missing, but fail under CI, where the
    project's own setup must have installed it."""
    if not condition:
        if IN_CI:
            pytest.fail(f"missing under CI: {reason}")
        pytest.skip(reason)


@pytest.fixture
def server(tmp_path):
    """A running postbote with every service on a free loopback port."""
    from tests.harness import RunningServer, server_settings

    srv = RunningServer(server_settings(tmp_path / "data")).start()
    yield srv
    srv.stop()
