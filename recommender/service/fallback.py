"""The decision made when there is no model to ask: uniformly at random, logged as such.

A uniform decision is valid bandit data (its propensities are exact), so it is logged and joined like any
other; ``model_version`` says ``uniform`` so that training and evaluation can tell.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime

from recommender.records import Decision, FeatureRow

UNIFORM_VERSION = "uniform"
UNIFORM_EXPLORATION = {"algorithm": "uniform"}

_random = random.Random()


def uniform_decision(
    *,
    event_id: str,
    timestamp: datetime,
    user_id: str | None,
    user_features: FeatureRow,
    context: FeatureRow,
    candidate_ids: Sequence[str],
    candidate_features: Sequence[FeatureRow],
    slots: int | None,
    degraded: bool,
    deferred: bool,
) -> Decision:
    """Slot ``s`` draws uniformly among the candidates not placed in earlier slots (its pmf says so);
    the ranking is the slot order followed by the rest in random order."""
    k = len(candidate_ids)
    n_slots = slots or 1
    order = _random.sample(range(k), k)
    chosen = tuple(order[:n_slots])
    pmfs = []
    for s in range(n_slots):
        remaining = set(order[s:])
        share = 1.0 / len(remaining)
        pmfs.append(tuple(share if i in remaining else 0.0 for i in range(k)))
    return Decision(
        event_id=event_id,
        timestamp=timestamp,
        user_id=user_id,
        user_features=user_features,
        context=context,
        candidate_ids=tuple(candidate_ids),
        candidate_features=tuple(candidate_features),
        pmfs=tuple(pmfs),
        chosen=chosen,
        ranking=tuple(order),
        model_version=UNIFORM_VERSION,
        exploration=dict(UNIFORM_EXPLORATION),
        degraded=degraded,
        deferred=deferred,
    )
