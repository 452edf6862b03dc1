"""Hands decisions to the event bus without ever making the storefront wait on a broken Redis.

``publish`` writes the decision to the bus (one round trip, bounded by ``bus.timeout_ms``). When the bus
is unavailable, or the breaker says it was a moment ago, the decision goes to a bounded in-memory buffer
instead, and a background thread writes the buffer out when the bus is back (each decision keeps its own
timestamp, so its reward window is not extended; rewards for it are refused while Redis is down).
Beyond ``service.decision_buffer_size`` the oldest buffered decisions are dropped, counted and logged.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

from recommender.events.bus import BusError, DuplicateEventError, EventBus
from recommender.records import Decision
from recommender.service.breaker import CircuitBreaker

log = logging.getLogger(__name__)

FLUSH_INTERVAL_SECONDS = 0.25


class DecisionPublisher:
    """Thread-safe. ``on_dropped(n)`` is told about decisions lost to a full buffer."""

    def __init__(
        self,
        bus: EventBus,
        breaker: CircuitBreaker,
        buffer_size: int,
        on_dropped: Callable[[int], None] | None = None,
    ) -> None:
        self.bus = bus
        self.breaker = breaker
        self.buffer_size = buffer_size
        self.on_dropped = on_dropped
        self._buffer: collections.deque[Decision] = collections.deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self, decision: Decision) -> bool:
        """True when the bus has the decision, False when it was buffered for later.

        Raises DuplicateEventError when the bus already has a pending decision with this event id.
        """
        if self.breaker.allow():
            try:
                self.bus.put_decision(decision)
                self.breaker.success()
                return True
            except DuplicateEventError:
                self.breaker.success()
                raise
            except BusError as exc:
                self.breaker.failure(str(exc))
        self._keep(decision)
        return False

    def _keep(self, decision: Decision) -> None:
        dropped = 0
        with self._lock:
            self._buffer.append(decision)
            while len(self._buffer) > self.buffer_size:
                self._buffer.popleft()
                dropped += 1
        if dropped:
            log.error("decision buffer full (%d): dropped %d oldest decisions", self.buffer_size, dropped)
            if self.on_dropped is not None:
                self.on_dropped(dropped)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def flush(self) -> int:
        """Write buffered decisions to the bus until it is empty or the bus fails; returns how many."""
        written = 0
        while True:
            with self._lock:
                if not self._buffer:
                    return written
                decision = self._buffer.popleft()
            try:
                self.bus.put_decision(decision)
                written += 1
            except DuplicateEventError:
                log.warning("buffered decision %s duplicates a pending one; dropped", decision.event_id)
            except BusError as exc:
                with self._lock:
                    self._buffer.appendleft(decision)
                self.breaker.failure(str(exc))
                return written

    def _loop(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL_SECONDS):
            if not self.breaker.is_open and not self._buffer:
                continue
            try:
                self.bus.ping()
            except BusError as exc:
                self.breaker.failure(str(exc))
                continue
            self.breaker.success()
            written = self.flush()
            if written:
                log.info("wrote %d buffered decisions to the bus", written)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="decision-publisher", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the flusher after one last attempt to write the buffer out."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._buffer and not self.breaker.is_open:
            self.flush()
        if self._buffer:
            log.error("stopping with %d decisions not written to the bus (Redis unavailable)", len(self._buffer))
