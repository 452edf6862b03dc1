"""The decision made when there is no model to ask (uniformly at random, logged as such), and why a decision
is degraded (``DegradedReason``, ``DegradedLog``).

A uniform decision is valid bandit data (its propensities are exact), so it is logged and joined like any
other; ``model_version`` says ``uniform`` so that training and evaluation can tell.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from collections.abc import Callable

from recommender.records import Decision
from recommender.service.inputs import DecisionInput

log = logging.getLogger(__name__)


class DegradedReason(enum.StrEnum):
    """Why a decision is degraded (``degraded_reason`` in the /v1/score answer and the decision log line).

    One reason per decision, the first that applies in this order: what the features were, then who decided.
    """

    FEATURE_STORE_UNAVAILABLE = "feature_store_unavailable"  # Redis down or over budget (or skipped after that)
    FEATURE_READ_FAILED = "feature_read_failed"  # the store answered with an error: defaults served
    FEATURES_NOT_LOADED = "features_not_loaded"  # no live version of a feature group (nothing loaded)
    SHED = "shed"  # the request waited longer than service.queue_budget_ms: decided without the model
    NO_MODEL = "no_model"  # no model loaded: uniform at random
    POLICY_ERROR = "policy_error"  # the model failed to decide: uniform at random


UNIFORM_VERSION = "uniform"
UNIFORM_EXPLORATION = {"algorithm": "uniform"}

_random = random.Random()


def uniform_decision(request: DecisionInput, *, degraded: bool) -> Decision:
    """Slot ``s`` draws uniformly among the candidates not placed in earlier slots (its pmf says so);
    the ranking is the slot order followed by the rest in random order."""
    k = len(request.candidate_ids)
    n_slots = request.slots or 1
    order = _random.sample(range(k), k)
    chosen = tuple(order[:n_slots])
    pmfs = []
    for s in range(n_slots):
        remaining = set(order[s:])
        share = 1.0 / len(remaining)
        pmfs.append(tuple(share if i in remaining else 0.0 for i in range(k)))
    return request.decision(
        pmfs=tuple(pmfs),
        chosen=chosen,
        ranking=tuple(order),
        model_version=UNIFORM_VERSION,
        exploration=dict(UNIFORM_EXPLORATION),
        degraded=degraded,
    )


class DegradedLog:
    """The decision log line of degraded decisions: every one at DEBUG (event id and reason); at WARNING the
    first of a reason after a quiet ``interval`` seconds, then at most one line per reason per ``interval``
    with the count since the last line (an outage at 1,000 requests a second is not 1,000 lines a second).
    Thread-safe."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._last: dict[DegradedReason, float] = {}  # reason -> when its last WARNING line was written
        self._since: dict[DegradedReason, int] = {}  # reason -> degraded decisions since that line

    def record(self, event_id: str, reason: DegradedReason) -> None:
        log.debug("decision %s degraded: %s", event_id, reason.value)
        now = self.clock()
        with self._lock:
            count = self._since.get(reason, 0) + 1
            last = self._last.get(reason)
            if last is not None and now - last < self.interval:
                self._since[reason] = count
                return
            self._last[reason] = now
            self._since[reason] = 0
        if last is None or count == 1:
            log.warning("decision %s degraded: %s", event_id, reason.value)
        else:
            log.warning("%d decisions degraded (%s) since %.0f s ago, the last: %s", count, reason.value, now - last,
                        event_id)  # fmt: skip
