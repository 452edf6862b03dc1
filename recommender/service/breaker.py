"""A circuit breaker for Redis calls on the request path.

After ``FAILURES_TO_OPEN`` failures in a row the breaker opens: callers skip Redis (and serve degraded) for
``retry_seconds``, instead of each paying the timeout. Then exactly one caller is let through as a probe;
its success closes the breaker, its failure opens it again. One failure alone does not open it: on a busy
host a single read can miss its 50 ms budget while Redis is fine, and opening then would degrade every
request of the next second (seen: one timeout, about 200 degraded decisions per worker at 400 req/s). A
Redis that is away fails every call, so the breaker still opens within three requests, each bounded by the
budget. A successful health check (``/readyz``, the publisher's flusher)
closes it too, so the service recovers by itself when Redis returns, with or without traffic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

FAILURES_TO_OPEN = 3


class CircuitBreaker:
    """Thread-safe; ``allow()`` is a lock-free read while closed (the hot path)."""

    def __init__(self, name: str, retry_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._open = False
        self._failures = 0  # in a row, while closed
        self._next_probe = 0.0
        self.reason: str | None = None

    @property
    def is_open(self) -> bool:
        return self._open

    def allow(self) -> bool:
        """May the caller use the dependency now? While open, True for one caller per retry period."""
        if not self._open:
            return True
        with self._lock:
            now = self._clock()
            if now < self._next_probe:
                return False
            self._next_probe = now + self.retry_seconds
            return True

    def success(self) -> None:
        if self._open or self._failures:
            with self._lock:
                self._open = False
                self._failures = 0
                self.reason = None

    def failure(self, reason: str) -> None:
        """A call failed; opens the breaker at the ``FAILURES_TO_OPEN``-th in a row, or when it is open (a
        failed probe)."""
        with self._lock:
            self._failures += 1
            if self._open or self._failures >= FAILURES_TO_OPEN:
                self._open = True
                self.reason = reason
                self._next_probe = self._clock() + self.retry_seconds
