"""The decision made when there is no model to ask: uniformly at random, logged as such.

A uniform decision is valid bandit data (its propensities are exact), so it is logged and joined like any
other; ``model_version`` says ``uniform`` so that training and evaluation can tell.
"""

from __future__ import annotations

import random

from recommender.records import Decision
from recommender.service.inputs import DecisionInput

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
