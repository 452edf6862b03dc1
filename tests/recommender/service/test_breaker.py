"""The circuit breaker of the request path: one slow call does not open it, a dependency that keeps failing
does, one probe per retry period, and a success closes it."""

from __future__ import annotations

from recommender.service.breaker import FAILURES_TO_OPEN, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_single_failure_does_not_open_the_breaker_and_a_success_forgets_it():
    breaker = CircuitBreaker("feature store", retry_seconds=1.0, clock=Clock())
    for _ in range(5):  # isolated timeouts between successes never add up
        for _ in range(FAILURES_TO_OPEN - 1):
            breaker.failure("timeout")
            assert breaker.allow() and not breaker.is_open and breaker.reason is None
        breaker.success()


def test_failures_in_a_row_open_it_then_one_probe_per_period_and_a_failed_probe_reopens():
    clock = Clock()
    breaker = CircuitBreaker("event bus", retry_seconds=1.0, clock=clock)
    for _ in range(FAILURES_TO_OPEN):
        breaker.failure("connection refused")
    assert breaker.is_open and breaker.reason == "connection refused"
    assert not breaker.allow()
    clock.now += 1.0
    assert breaker.allow() and not breaker.allow()  # exactly one probe
    breaker.failure("connection refused")  # the probe failed: open again at once, not after three more
    assert breaker.is_open and not breaker.allow()
    clock.now += 1.0
    assert breaker.allow()
    breaker.success()
    assert not breaker.is_open and breaker.reason is None and breaker.allow() and breaker.allow()
