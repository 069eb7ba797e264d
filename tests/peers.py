"""Starting a real outside daemon for a test: wait until it answers, or say why not."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable


def wait_until_ready(proc: subprocess.Popen, ready: Callable[[], bool], name: str, timeout: float,
                     interval: float = 0.1) -> None:
    """Poll ``ready`` until it is true; raise with the daemon's last words if it
    exits first or does not answer within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"{name} exited: {stderr[-2000:]}")
        if ready():
            return
        time.sleep(interval)
    raise RuntimeError(f"{name} did not start in time")
