"""A bounded ring of recent log events, for the dashboard and the transactions page.

A logging handler on the ``postbote`` logger keeps the last events with their
structured fields; nothing is written anywhere, and memory stays bounded.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

# Event names worth showing: transactions, deliveries, attempts and refusals.
TRANSACTION_EVENTS = ("message", "delivered", "delivery attempt", "dsn", "delivery failed",
                      "recipient failed after acceptance")


@dataclass(frozen=True)
class RecentEvent:
    time: float
    name: str
    level: str
    fields: dict[str, Any] = field(hash=False)

    @property
    def refusal(self) -> bool:
        return "refused" in self.name

    def to_json(self) -> dict:
        return {"time": int(self.time), "event": self.name, "level": self.level,
                **{k: v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
                   for k, v in self.fields.items()}}


class RecentEvents(logging.Handler):
    def __init__(self, size: int = 1000) -> None:
        super().__init__(logging.INFO)
        self.events: deque[RecentEvent] = deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "fields", None)
        if fields is None:
            return
        self.events.append(RecentEvent(record.created, record.getMessage(), record.levelname.lower(), dict(fields)))

    def transactions(self, limit: int = 200) -> list[RecentEvent]:
        found = [e for e in reversed(self.events) if e.name in TRANSACTION_EVENTS or e.refusal]
        return found[:limit]

    def refusals(self, limit: int = 20) -> list[RecentEvent]:
        return [e for e in reversed(self.events) if e.refusal][:limit]

    def attach(self, level: str = "info") -> None:
        logger = logging.getLogger("postbote")
        # Without 'postbote serve' (tests, embedding) nobody set the level: events would be dropped
        # before reaching us. Only when the configured level lets info through anyway.
        if level in ("debug", "info") and logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        logger.addHandler(self)

    def detach(self) -> None:
        logging.getLogger("postbote").removeHandler(self)
