"""The slot ids of recent multi-slot decisions, so that a reward naming a slot by id finds its position.

Personalizer's multi-slot reward names a slot by the id the rank request gave it (``"Main"``); our decisions
and rewards number slots by position. A multi-slot rank records ``event id -> slot ids`` here, for as long as
a reward may still count (``join.reward_wait_time`` + ``join.recovery_seconds``), at most ``capacity``
decisions (the oldest are forgotten first).

Per worker process: a reward reaching another worker than its rank (several gunicorn workers) is answered
404 naming the event (docs/service.md, Personalizer API). The embedded default serves with one worker.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence

DEFAULT_CAPACITY = 100_000


class SlotIds:
    """Thread-safe, bounded ``event id -> slot ids`` with expiry."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[float, tuple[str, ...]]] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, event_id: str, slot_ids: Sequence[str], keep_seconds: float) -> None:
        now = time.monotonic()
        with self._lock:
            self._entries[event_id] = (now + keep_seconds, tuple(slot_ids))
            self._entries.move_to_end(event_id)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
            # Expired entries at the front (insertion order is expiry order for one keep_seconds).
            while self._entries and next(iter(self._entries.values()))[0] < now:
                self._entries.popitem(last=False)

    def get(self, event_id: str) -> tuple[str, ...] | None:
        """The slot ids of ``event_id`` in slot order, or None (unknown here, or expired)."""
        with self._lock:
            entry = self._entries.get(event_id)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]
