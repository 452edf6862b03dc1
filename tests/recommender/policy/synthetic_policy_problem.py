"""A synthetic recommendation problem with a known best item per context, for policy tests.

Users belong to one of ``K`` segments; item ``i`` has category ``cat<i>``. A user of segment ``s`` prefers
item ``s`` (reward 1 with probability ``P_BEST``) over every other item (probability ``P_OTHER``); in
multi-slot pages, slot 1's best item is ``(s + 1) % K``. Learning it needs the user x item interaction.
Users also carry a random embedding and the request an hour of day: noise the policy must ignore.

Logged data comes from a uniform-random logging policy with exact propensities, so every item is seen in
every segment; held-out contexts are new users (new embeddings, new hours).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from features.config import FeatureGroup, FeatureSpec, FeatureType
from recommender.records import Decision, JoinedEvent

K = 8
P_BEST = 0.8
P_OTHER = 0.2

USER_GROUP = FeatureGroup(
    entity="user",
    key="user_id",
    features={
        "segment": FeatureSpec(type=FeatureType.CATEGORICAL, default="unknown"),
        "embedding": FeatureSpec(type=FeatureType.VECTOR, dim=4),
    },
)
ITEM_GROUP = FeatureGroup(
    entity="item",
    key="item_id",
    features={
        "category": FeatureSpec(type=FeatureType.CATEGORICAL),
        "price": FeatureSpec(type=FeatureType.NUMERIC),
        "tags": FeatureSpec(type=FeatureType.TAGS),
    },
)

CANDIDATE_IDS = tuple(f"item-{i}" for i in range(K))
CANDIDATES = tuple(
    {"category": f"cat{i}", "price": 5.0 + 3.0 * i, "tags": ["new"] if i % 2 else ["classic", "bestseller"]}
    for i in range(K)
)
START = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Context:
    user_id: str
    user_features: dict
    context: dict
    segment: int

    @property
    def best(self) -> int:
        return self.segment

    @property
    def best_second_slot(self) -> int:
        return (self.segment + 1) % K


def contexts(n: int, seed: int) -> list[Context]:
    """``n`` random contexts (distinct user ids per seed)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        segment = rng.randrange(K)
        out.append(
            Context(
                user_id=f"user-{seed}-{i}",
                user_features={"segment": f"seg{segment}", "embedding": [rng.gauss(0, 1) for _ in range(4)]},
                context={"hour": rng.randrange(24), "device": rng.choice(["mobile", "desktop"])},
                segment=segment,
            )
        )
    return out


def reward(rng: random.Random, best: int, chosen: int) -> float:
    return 1.0 if rng.random() < (P_BEST if chosen == best else P_OTHER) else 0.0


def uniform_events(n: int, seed: int, slots: int = 1) -> list[JoinedEvent]:
    """``n`` joined events logged by a uniform-random policy (exact propensities), ``slots`` per page."""
    rng = random.Random(seed)
    events = []
    for i, ctx in enumerate(contexts(n, seed)):
        remaining = list(range(K))
        pmfs, chosen, rewards = [], [], []
        for slot in range(slots):
            pick = rng.choice(remaining)
            pmfs.append(tuple(1.0 / len(remaining) if j in remaining else 0.0 for j in range(K)))
            chosen.append(pick)
            best = ctx.best if slot == 0 else ctx.best_second_slot
            rewards.append(reward(rng, best, pick))
            remaining.remove(pick)
        ranking = tuple(chosen) + tuple(j for j in range(K) if j not in chosen)
        timestamp = START + timedelta(seconds=i)
        decision = Decision(
            event_id=f"ev-{seed}-{i}",
            timestamp=timestamp,
            user_id=ctx.user_id,
            user_features=ctx.user_features,
            context=ctx.context,
            candidate_ids=CANDIDATE_IDS,
            candidate_features=CANDIDATES,
            pmfs=tuple(pmfs),
            chosen=tuple(chosen),
            ranking=ranking,
            model_version="uniform",
            exploration={"algorithm": "uniform"},
        )
        events.append(
            JoinedEvent(
                decision=decision,
                rewards=tuple(rewards),
                reward_is_default=(False,) * slots,
                joined_at=timestamp + timedelta(seconds=30),
            )
        )
    return events
