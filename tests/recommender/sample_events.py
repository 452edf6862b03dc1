"""Logged decisions with the feature groups of configs/default.yaml, for the policy CLI and trainer tests."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from recommender.records import Decision, JoinedEvent

START = datetime(2024, 3, 1, 8, tzinfo=UTC)


def default_schema_events(n: int, seed: int) -> list[JoinedEvent]:
    """Uniform-random logged decisions over 5 items, with rows of configs/default.yaml's groups."""
    rng = random.Random(seed)
    ids = tuple(f"item-{i:04d}" for i in range(5))
    items = tuple(
        {"brand": f"brand{i}", "category": "lips", "price_band": "mid", "skin_types": ["dry"], "price": 10.0 + i,
         "embedding": [rng.gauss(0, 1) for _ in range(8)]}
        for i in range(5)
    )  # fmt: skip
    events = []
    for i in range(n):
        chosen = rng.randrange(5)
        timestamp = START + timedelta(minutes=i)
        decision = Decision(
            event_id=f"cli-{seed}-{i}",
            timestamp=timestamp,
            user_id=f"user-{i}",
            user_features={"segment": f"s{i % 3}", "embedding": [rng.gauss(0, 1) for _ in range(8)]},
            context={"device": "mobile"},
            candidate_ids=ids,
            candidate_features=items,
            pmfs=((0.2,) * 5,),
            chosen=(chosen,),
            ranking=(chosen,) + tuple(j for j in range(5) if j != chosen),
            model_version="uniform",
        )
        reward = 1.0 if chosen == i % 3 else 0.0
        events.append(JoinedEvent(decision, (reward,), (False,), timestamp + timedelta(seconds=5)))
    return events
