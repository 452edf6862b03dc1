"""Hands decisions to the event bus without ever making the storefront wait on a broken Redis.

``publish`` writes the decision to the bus (one round trip, bounded by ``bus.timeout_ms``). When the bus
is unavailable, or the breaker says it was a moment ago, the decision goes to a bounded in-memory buffer
instead (held by this worker), and a background thread writes the buffer out when the bus is back (each
decision keeps its own timestamp, so its reward window is not extended; rewards for it get 503 while Redis
is down). Beyond ``service.decision_buffer_size`` the oldest held decisions are dropped, counted and logged.

A reward must never be refused as unknown because its decision is still held here: ``write_held`` writes
a held decision out at once (the reward path calls it before answering 404, docs/service.md).
``on_buffered(n)`` is told the number of held decisions whenever it changes (the
``recommender_buffered_decisions`` gauge).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
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
        on_buffered: Callable[[int], None] | None = None,
    ) -> None:
        self.bus = bus
        self.breaker = breaker
        self.buffer_size = buffer_size
        self.on_dropped = on_dropped
        self.on_buffered = on_buffered
        self._buffer: OrderedDict[str, Decision] = OrderedDict()  # event id -> decision, oldest first
        self._lock = threading.Lock()  # guards _buffer
        # Held by whoever takes a decision out of the buffer until it is on the bus (or back in the buffer),
        # so that a decision is never in neither place while a reward looks for it.
        self._write_lock = threading.Lock()
        self._written = 0  # decisions written out of the buffer, ever (see ``written``)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self, decision: Decision) -> bool:
        """True when the bus has the decision, False when it was buffered for later.

        Raises DuplicateEventError when the bus already has a pending decision with this event id, or this
        worker holds one.
        """
        if self._buffer and decision.event_id in self._buffer:  # one dict lookup, and only during/after an outage
            raise DuplicateEventError(f"event {decision.event_id!r} is already pending (held until Redis is back)")
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
        dropped = []
        with self._lock:
            if decision.event_id in self._buffer:
                raise DuplicateEventError(f"event {decision.event_id!r} is already pending (held until Redis is back)")
            self._buffer[decision.event_id] = decision
            while len(self._buffer) > self.buffer_size:
                dropped.append(self._buffer.popitem(last=False)[0])
            held = len(self._buffer)
        if dropped:
            log.error("decision buffer full (%d): dropped %d oldest decisions (lost), e.g. %s", self.buffer_size,
                      len(dropped), ", ".join(dropped[:5]))  # fmt: skip
            if self.on_dropped is not None:
                self.on_dropped(len(dropped))
        self._tell_buffered(held)

    def _tell_buffered(self, held: int) -> None:
        if self.on_buffered is not None:
            self.on_buffered(held)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def written(self) -> int:
        """How many held decisions were written to the bus so far: a reward that found its event unknown
        retries when this changed meanwhile (the decision may have been written in between)."""
        return self._written

    def _write(self, decision: Decision) -> bool:
        """Put a decision taken out of the buffer on the bus (caller holds ``_write_lock``): True when written,
        False when the bus has it already (a duplicate: not written again). On BusError it is back at the front
        of the buffer and the error propagates."""
        try:
            self.bus.put_decision(decision)
            self._written += 1
            return True
        except DuplicateEventError:
            # Not a loss: the bus has a decision with this id, usually this very one (the write that timed out
            # reached Redis all the same, e.g. a Redis stopped and continued); else the client reused the id.
            log.warning("held decision %s is on the bus already (an earlier write that timed out reached Redis, "
                        "or the id was reused); not written again", decision.event_id)  # fmt: skip
            return False
        except BusError as exc:
            with self._lock:
                self._buffer[decision.event_id] = decision
                self._buffer.move_to_end(decision.event_id, last=False)
            self.breaker.failure(str(exc))
            raise
        finally:
            self._tell_buffered(len(self._buffer))

    def write_held(self, event_id: str) -> bool:
        """If this worker holds the decision ``event_id``, write it to the bus now; True when it did.

        Waits for a write of the flusher in progress, so a decision is never missed between the buffer and
        the bus. Raises BusError (the decision stays held) when the bus refuses.
        """
        with self._write_lock:
            with self._lock:
                decision = self._buffer.pop(event_id, None)
            return decision is not None and self._write(decision)

    def flush(self) -> int:
        """Write buffered decisions to the bus until it is empty or the bus fails; returns how many."""
        written = 0
        while True:
            with self._write_lock:
                with self._lock:
                    if not self._buffer:
                        return written
                    _, decision = self._buffer.popitem(last=False)
                try:
                    written += self._write(decision)
                except BusError:
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
