"""``postbote serve --workers N``: several processes, one set of listening sockets.

Python runs one event loop on one core; a machine with more cores runs more
workers. The parent does everything that must happen once (migrate the
store, make the certificate, clean the spool, bind every listening socket so
a taken port is reported once and clearly), then forks the workers, which
inherit the sockets and let the kernel spread connections among them. The
workers share the store; a FeedBus carries change notices and login
outcomes (for the brute-force throttle) between them, and their metrics are
files in one folder that any worker sums when scraped (postbote/metrics.py).
The parent only supervises: it restarts a worker that dies and forwards
SIGTERM/SIGINT, waiting for every worker to drain.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import time

from postbote import metrics
from postbote.config import ServiceSettings, Settings
from postbote.listener import bind, socket_key
from postbote.log import event

log = logging.getLogger("postbote.workers")

# A worker that dies sooner than this after its start is not restarted at
# once (a crash loop would spin); the supervisor waits this long first.
RESTART_BACKOFF = 2.0


def prepare(settings: Settings) -> dict[str, socket.socket]:
    """The once-only work, in the parent, before any worker exists."""
    from postbote.smtp.server import prepare_spool
    from postbote.store.sqlite import SqliteDb
    from postbote.tls import certificate_paths

    db = SqliteDb(settings.data_path)
    db.open()  # migrations run here, once
    db.close()
    certificate_paths(settings)
    prepare_spool(settings.data_path / "spool")
    sockets = {}
    for f in dataclasses.fields(ServiceSettings):
        for addr in getattr(settings.listen, f.name):
            sockets[socket_key(f.name, addr)] = bind(f.name, addr)
    return sockets


def serve(settings: Settings, workers: int) -> int:
    """Run ``workers`` worker processes until SIGTERM/SIGINT; returns the exit status."""
    from postbote.app import run_forever

    sockets = prepare(settings)
    metrics_folder = metrics.prepare_workers(settings.data_path)
    stopping = False
    children: dict[int, tuple[int, float]] = {}  # pid -> (worker number, start time)

    def spawn(number: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 0
            try:
                metrics.join_workers(metrics_folder)
                run_forever(settings, prebound=sockets, shared_store=True)
            except BaseException:
                log.exception("worker %d failed", number)
                code = 1
            os._exit(code)
        children[pid] = (number, time.monotonic())
        event(log, "worker started", worker=number, pid=pid)

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for number in range(workers):
        spawn(number)
    status = 0
    while children:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        number, started = children.pop(pid, (-1, 0.0))
        metrics.worker_exited(metrics_folder, pid)
        code = os.waitstatus_to_exitcode(wait_status)
        if stopping:
            status = status or (code if code > 0 else 0)
            continue
        event(log, "worker died, restarting", logging.WARNING, worker=number, pid=pid, code=code)
        if time.monotonic() - started < RESTART_BACKOFF:
            time.sleep(RESTART_BACKOFF)
        if not stopping:
            spawn(number)
    for sock in sockets.values():
        sock.close()
    event(log, "stopped")
    return status

