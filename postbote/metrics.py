"""Prometheus metrics, incremented beside the log events.

The counters live at module level so a server adds one line next to its
``event(...)`` call (STYLE.md: metrics beside the log, not in a second place).
Gauges that describe state rather than events (queue size, oldest entry, store
size) are measured when ``/metrics`` is scraped, by ``set_state``.

One process keeps its values in memory. ``serve --workers N`` uses
prometheus_client's multiprocess mode: the parent empties ``DATA/run/metrics/``
and points ``PROMETHEUS_MULTIPROC_DIR`` at it (``prepare_workers``), each worker
re-creates the metrics so their values live in its own files there
(``join_workers``), and a scrape or the admin dashboard, whichever worker
answers, reads every worker's files through ``MultiProcessCollector``: the
sum over the whole server. A dead worker's counts stay in the sum.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The state gauges are measured from the shared store by the worker that answers a
# scrape: the value set last is the truth, and a dead worker's value is dropped.
STATE = "livemostrecent"

# The folder of the workers' value files; None in a single process.
_shared_dir: Path | None = None

REGISTRY: CollectorRegistry
CONNECTIONS: Counter
CONNECTIONS_REFUSED: Counter
MESSAGES_RECEIVED: Counter
MESSAGES_DELIVERED: Counter
MESSAGES_QUEUED: Counter
MESSAGES_SENT: Counter
MESSAGES_REFUSED: Counter
DELIVERY_SECONDS: Histogram
AUTH_FAILURES: Counter
FILTER_VERDICTS: Counter
QUEUE_SIZE: Gauge
QUEUE_OLDEST: Gauge
STORE_BYTES: Gauge
HTTP_REQUESTS: Counter


def _define() -> None:
    """(Re)create every metric, with the value class prometheus_client uses now:
    in-process counters, or (in a worker of ``serve --workers N``) files that
    ``MultiProcessCollector`` sums over the workers."""
    global REGISTRY, CONNECTIONS, CONNECTIONS_REFUSED, MESSAGES_RECEIVED, MESSAGES_DELIVERED, \
        MESSAGES_QUEUED, MESSAGES_SENT, MESSAGES_REFUSED, DELIVERY_SECONDS, AUTH_FAILURES, FILTER_VERDICTS, \
        QUEUE_SIZE, QUEUE_OLDEST, STORE_BYTES, HTTP_REQUESTS
    REGISTRY = CollectorRegistry(auto_describe=True)

    CONNECTIONS = Counter("postbote_connections", "Connections accepted, per service", ["service"], registry=REGISTRY)
    CONNECTIONS_REFUSED = Counter("postbote_connections_refused", "Connections refused by the connection limits",
                                  ["service"], registry=REGISTRY)
    MESSAGES_RECEIVED = Counter("postbote_messages_received", "Messages accepted over SMTP/LMTP/submission",
                                ["service"], registry=REGISTRY)
    MESSAGES_DELIVERED = Counter("postbote_messages_delivered", "Copies stored in local mailboxes", registry=REGISTRY)
    MESSAGES_QUEUED = Counter("postbote_messages_queued", "Remote recipients put on the outbound queue",
                              registry=REGISTRY)
    MESSAGES_SENT = Counter("postbote_messages_sent", "Outbound recipients by final or attempt result",
                            ["result"], registry=REGISTRY)
    MESSAGES_REFUSED = Counter("postbote_messages_refused", "Recipients or messages refused, by reason",
                               ["reason"], registry=REGISTRY)
    DELIVERY_SECONDS = Histogram("postbote_delivery_seconds", "Time to store a message durably (local delivery)",
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY)
    AUTH_FAILURES = Counter("postbote_auth_failures", "Failed logins (all protocols and the admin interface)",
                            registry=REGISTRY)
    FILTER_VERDICTS = Counter("postbote_filter_verdicts", "Verdicts of the filter pipeline", ["action"],
                              registry=REGISTRY)
    QUEUE_SIZE = Gauge("postbote_queue_size", "Outbound queue entries with pending recipients",
                       multiprocess_mode=STATE, registry=REGISTRY)
    QUEUE_OLDEST = Gauge("postbote_queue_oldest_seconds", "Age of the oldest outbound queue entry (0: empty)",
                         multiprocess_mode=STATE, registry=REGISTRY)
    STORE_BYTES = Gauge("postbote_store_bytes", "Bytes on disk: database and message blobs", ["part"],
                        multiprocess_mode=STATE, registry=REGISTRY)
    HTTP_REQUESTS = Counter("postbote_http_requests", "HTTP requests by route group and status class",
                            ["group", "status"], registry=REGISTRY)


_define()


def metrics_dir(data_dir: Path) -> Path:
    return data_dir / "run" / "metrics"


def prepare_workers(data_dir: Path) -> Path:
    """In the parent of ``serve --workers N``, before the first fork: an empty
    folder for the workers' value files (the last run's counts are gone, as a
    single process's are on restart), named in the environment they inherit."""
    folder = metrics_dir(data_dir)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


def join_workers(folder: Path) -> None:
    """In a worker, right after the fork and before anything counts: keep the
    values in this process's files of ``folder`` so every worker can sum them."""
    global _shared_dir
    os.environ[MULTIPROC_ENV] = str(folder)
    # prometheus_client picks the value class when it is imported, long before
    # the command line asked for workers; each metric takes it when created.
    values.ValueClass = values.MultiProcessValue()
    _shared_dir = folder
    _define()


def worker_exited(folder: Path, pid: int) -> None:
    """In the parent, for a worker that ended: its live gauges leave the sum."""
    mark_process_dead(pid, str(folder))


def _collecting_registry() -> CollectorRegistry:
    """What a scrape reads: this process's registry, or every worker's files."""
    if _shared_dir is None:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(_shared_dir))
    return registry


def folder_size(path: Path) -> int:
    """Bytes of the files under ``path`` (blocking: run it in the executor)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass  # removed while we walked
    return total


def measure_store(data_dir: Path) -> dict[str, int]:
    db = sum(p.stat().st_size for p in data_dir.glob("postbote.db*") if p.is_file())
    return {"database": db, "blobs": folder_size(data_dir / "blobs")}


def set_state(queue_created: list[int], store_bytes: dict[str, int], now: float | None = None) -> None:
    """Set the state gauges from a scrape's measurements."""
    now = time.time() if now is None else now
    QUEUE_SIZE.set(len(queue_created))
    QUEUE_OLDEST.set(max(0.0, now - min(queue_created)) if queue_created else 0)
    for part, size in store_bytes.items():
        STORE_BYTES.labels(part).set(size)


def render() -> tuple[bytes, str]:
    """The exposition text and its content type (the whole server's, with workers)."""
    return generate_latest(_collecting_registry()), CONTENT_TYPE_LATEST


def counter_totals() -> dict[str, float]:
    """Each counter's value summed over its labels, by name without ``_total``
    (over every worker, with workers): what the admin dashboard shows."""
    totals: dict[str, float] = {}
    for family in _collecting_registry().collect():
        if family.type == "counter":
            totals[family.name] = sum(s.value for s in family.samples if s.name.endswith("_total"))
    return totals


def record_delivery(seconds: float, delivered: int, queued: int) -> None:
    """One store.deliver call: its latency and how many copies went where."""
    DELIVERY_SECONDS.observe(seconds)
    MESSAGES_DELIVERED.inc(delivered)
    MESSAGES_QUEUED.inc(queued)
