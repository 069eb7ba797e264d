"""Prometheus metrics: one registry per process, incremented beside the log events.

The counters live at module level so a server adds one line next to its
``event(...)`` call (STYLE.md: metrics beside the log, not in a second place).
Gauges that describe state rather than events (queue size, oldest entry, store
size) are measured when ``/metrics`` is scraped, by ``refresh_state``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

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
QUEUE_SIZE = Gauge("postbote_queue_size", "Outbound queue entries with pending recipients", registry=REGISTRY)
QUEUE_OLDEST = Gauge("postbote_queue_oldest_seconds", "Age of the oldest outbound queue entry (0: empty)",
                     registry=REGISTRY)
STORE_BYTES = Gauge("postbote_store_bytes", "Bytes on disk: database and message blobs", ["part"],
                    registry=REGISTRY)
HTTP_REQUESTS = Counter("postbote_http_requests", "HTTP requests by route group and status class",
                        ["group", "status"], registry=REGISTRY)


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
    """The exposition text and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def record_delivery(seconds: float, delivered: int, queued: int) -> None:
    """One store.deliver call: its latency and how many copies went where."""
    DELIVERY_SECONDS.observe(seconds)
    MESSAGES_DELIVERED.inc(delivered)
    MESSAGES_QUEUED.inc(queued)
