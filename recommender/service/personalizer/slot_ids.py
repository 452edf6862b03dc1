"""The slot ids of multi-slot decisions, so that a reward naming a slot by id finds its position.

Personalizer's multi-slot reward names a slot by the id the rank request gave it (``"Main"``); our decisions
and rewards number slots by position. The decision records its slot ids (``Decision.slot_names``), so every
worker finds them through the event bus (``EventBus.pending_slot_names``: one read of the pending decision
on Redis) while the decision is pending, whichever worker ranked it. ``SlotIds`` is this worker's cache in
front of the bus: a multi-slot rank records ``event id -> slot ids`` here for as long as a reward may still
count (``join.reward_wait_time`` + ``join.recovery_seconds``), at most ``capacity`` decisions (the oldest are
forgotten first); a reward on the worker that ranked costs no bus read, nor does one for a decision this
worker still holds because the bus was away.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence

from recommender.events.bus import BusError
from recommender.service.rewards import bus_unavailable
from recommender.service.runtime import Runtime

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

    def find(self, rt: Runtime, event_id: str) -> tuple[str, ...] | None:
        """The slot ids of ``event_id``: from this cache, else from its pending decision on the bus (not cached:
        an event id may be used again once joined, and only the bus knows when); None when no pending decision
        has them. Raises ApiError 503 when the bus is away."""
        cached = self.get(event_id)
        if cached is not None:
            return cached
        if not rt.bus_breaker.allow():
            raise bus_unavailable(rt, None)
        try:
            names = rt.bus.pending_slot_names(event_id)
        except BusError as exc:
            raise bus_unavailable(rt, exc) from None
        rt.bus_breaker.success()
        return names or None  # None: unknown, joined, or a decision that named no slots
