"""A Personalizer-shaped DSJSON history with a known click model, for the import, evaluate and optimize tests.

The lines have the shape Azure Personalizer's log export wrote (and VW's ``dsjson_cb.json`` test data has):
the context features of the Rank call's ``contextFeatures`` list as namespaces of ``c`` (objects, and a
list of objects as Personalizer's ``FromUrl`` sample shows), each action in ``c._multi`` with its id as
``_tag``, an ``i`` namespace (``constant``, ``id``) and its ``features`` list as ``j``; 1-based ``a`` in
ranking order with ``p`` in the same order; ``_label_cost`` = -reward, ``_label_probability``,
``_label_Action``, ``_labelIndex``; ``o`` outcomes; ``EventId``; 7-digit ``Timestamp``s; ``pdrop``. A share of
the lines are multi-slot (``_slots``, ``_outcomes``), inactive (``_skipLearn``) or outcome-only.

The logging policy is epsilon-greedy over a fixed "house favourite" per tier, so every decision's pmf is
known; clicks come from ``click_probability``, so the value of any policy can be computed exactly.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

ACTIONS = ("espresso", "latte", "mocha", "tea", "juice")
TIERS = ("gold", "silver", "bronze")
DEVICES = ("mobile", "desktop")
FAVOURITE = {"gold": "latte", "silver": "tea", "bronze": "espresso"}  # the logging policy's greedy choice
BEST = {"gold": "mocha", "silver": "tea", "bronze": "juice"}  # what each tier clicks most
EPSILON = 0.4
START = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def click_probability(tier: str, action: str) -> float:
    return 0.7 if BEST[tier] == action else 0.15


def logging_pmf(tier: str) -> list[float]:
    """The logging policy's distribution over ``ACTIONS`` for a user of ``tier``."""
    k = len(ACTIONS)
    return [(1 - EPSILON) * (a == FAVOURITE[tier]) + EPSILON / k for a in ACTIONS]


def _timestamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"  # 7 fractional digits, as Personalizer wrote them


def _actions() -> list[dict]:
    return [
        {"_tag": a, "i": {"constant": 1, "id": a}, "j": [{"hot": a not in ("juice",), "size": "m" if j % 2 else "l"}]}
        for j, a in enumerate(ACTIONS)
    ]


def _context(tier: str, device: str) -> dict:
    return {"user": {"tier": tier, "visits": 3.0}, "device": {"type": device}, "FromUrl": [{"weather": "sunny"}]}


def cb_line(rng: random.Random, n: int, tier: str, device: str, pdrop: float) -> tuple[str, float]:
    """One single-slot decision line and its reward."""
    pmf = logging_pmf(tier)
    chosen = rng.choices(range(len(ACTIONS)), weights=pmf)[0]
    reward = 1.0 if rng.random() < click_probability(tier, ACTIONS[chosen]) else 0.0
    ranking = [chosen] + [j for j in range(len(ACTIONS)) if j != chosen]
    event_id = f"ev-{n:05d}"
    event = {
        "_label_cost": -reward,
        "_label_probability": pmf[chosen],
        "_label_Action": chosen + 1,
        "_labelIndex": chosen,
        "o": [{"v": reward, "EventId": event_id, "ActionTaken": True}],
        "Timestamp": _timestamp(START + timedelta(seconds=n)),
        "Version": "1",
        "EventId": event_id,
        "a": [j + 1 for j in ranking],
        "c": {**_context(tier, device), "_multi": _actions()},
        "p": [pmf[j] for j in ranking],
        "VWState": {"m": "N/A"},
        "_original_label_cost": -reward,
        "pdrop": pdrop,
    }
    return json.dumps(event), reward


def ccb_line(rng: random.Random, n: int, tier: str, device: str, pdrop: float) -> str:
    """One two-slot decision: slot 0 drawn from the logging pmf, slot 1 uniform over what is left."""
    pmf = logging_pmf(tier)
    first = rng.choices(range(len(ACTIONS)), weights=pmf)[0]
    rest = [j for j in range(len(ACTIONS)) if j != first]
    second = rng.choice(rest)
    outcomes = []
    for slot, (chosen, available, probs) in enumerate(
        (
            (first, [first] + rest, [pmf[first]] + [pmf[j] for j in rest]),
            (second, [second] + [j for j in rest if j != second], [1 / len(rest)] * len(rest)),
        )
    ):
        reward = 1.0 if rng.random() < click_probability(tier, ACTIONS[chosen]) else 0.0
        outcomes.append({"_label_cost": -reward, "_id": f"slot-{slot}", "_a": available, "_p": probs, "_o": []})
    event = {
        "Timestamp": _timestamp(START + timedelta(seconds=n)),
        "Version": "1",
        "EventId": f"ev-{n:05d}",
        "c": {
            **_context(tier, device),
            "_multi": _actions(),
            "_slots": [{"_id": "slot-0", "s": {"position": "top"}}, {"_id": "slot-1", "s": {"position": "side"}}],
        },
        "_outcomes": outcomes,
        "VWState": {"m": "N/A"},
        "pdrop": pdrop,
    }
    return json.dumps(event)


def history(n: int, seed: int = 0, *, multi_slot_share: float = 0.1, pdrop: float = 0.5) -> list[str]:
    """``n`` decision lines (a ``multi_slot_share`` of them multi-slot) plus one inactive (``_skipLearn``)
    and one outcome-only line per 50 decisions."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        tier, device = rng.choice(TIERS), rng.choice(DEVICES)
        if rng.random() < multi_slot_share:
            lines.append(ccb_line(rng, i, tier, device, pdrop))
        else:
            lines.append(cb_line(rng, i, tier, device, pdrop)[0])
        if i % 50 == 49:
            skipped = json.loads(cb_line(rng, n + i, tier, device, pdrop)[0])
            lines.append(json.dumps({**skipped, "_skipLearn": True}))
            lines.append(json.dumps({"EventId": f"ev-{i:05d}", "RewardValue": 1.0, "EnqueuedTimeUtc": "2025-03-01"}))
    return lines


def uniform_value() -> float:
    """The exact value of the uniform policy (tiers equally likely)."""
    return sum(click_probability(t, a) for t in TIERS for a in ACTIONS) / (len(TIERS) * len(ACTIONS))


def best_value() -> float:
    """The exact value of the policy that picks each tier's best action."""
    return sum(click_probability(t, BEST[t]) for t in TIERS) / len(TIERS)
