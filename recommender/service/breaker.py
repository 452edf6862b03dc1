"""A circuit breaker for Redis calls on the request path.

After a failure the breaker opens: callers skip Redis (and serve degraded) for ``retry_seconds``, instead
of each paying the timeout. Then exactly one caller is let through as a probe; its success closes the
breaker, its failure opens it again. A successful health check (``/readyz``, the publisher's flusher)
closes it too, so the service recovers by itself when Redis returns, with or without traffic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CircuitBreaker:
    """Thread-safe; ``allow()`` is a lock-free read while closed (the hot path)."""

    def __init__(self, name: str, retry_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._open = False
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
        if self._open:
            with self._lock:
                self._open = False
                self.reason = None

    def failure(self, reason: str) -> None:
        with self._lock:
            self._open = True
            self.reason = reason
            self._next_probe = self._clock() + self.retry_seconds
