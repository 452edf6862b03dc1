"""Plain helpers that write logs in the formats the readers take: the Open Bandit Dataset layout, VW DSJSON
lines, and our event log of decisions made by a real (published) VW policy."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from recommender.events.log import write_events
from recommender.policy.model_store import ModelStore
from recommender.policy.policy import Policy
from recommender.records import JoinedEvent
from recommender.settings.app import AppConfig

OBD_ITEMS = "item_id,item_feature_0,item_feature_1\n0,-0.5,a\n1,0.2,b\n2,1.5,a\n"
OBD_ROWS = [
    # timestamp, item_id, position, click, propensity_score, user_feature_0, user-item_affinity_0
    "2019-11-24 00:00:01,0,1,0,0.3333,f1,0.1",
    "2019-11-24 00:00:02,2,2,1,0.3333,f2,0.0",
    "2019-11-24 00:00:03,1,3,0,0.3333,f1,0.2",
    "2019-11-24 00:00:04,5,1,0,0.3333,f1,0.2",  # unknown item
    "2019-11-24 00:00:05,1,1,1,,f2,0.2",  # missing propensity
    "2019-11-24 00:00:06,1,2,1,1.5,f2,0.2",  # propensity > 1
    "2019-11-24 00:00:07,0,2,,0.3333,f2,0.2",  # missing click
]


def write_obd(directory: Path, rows: list[str] = OBD_ROWS) -> Path:
    """An OBD campaign directory: ``all.csv`` with ``rows`` (see OBD_ROWS) and the ``item_context.csv`` of
    OBD_ITEMS beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    header = ",timestamp,item_id,position,click,propensity_score,user_feature_0,user-item_affinity_0\n"
    body = "".join(f"{i},{row}\n" for i, row in enumerate(rows))
    (directory / "all.csv").write_text(header + body)
    (directory / "item_context.csv").write_text(
        ",".join(["", *OBD_ITEMS.splitlines()[0].split(",")])
        + "\n"
        + "".join(f"{i},{line}\n" for i, line in enumerate(OBD_ITEMS.splitlines()[1:]))
    )
    return directory


def cb_line(index: int, probs: list[float], cost: float = -1.0, **overrides: object) -> str:
    """One DSJSON CB decision line: the action at ``index`` chosen with ``probs[index]``; ``overrides``
    replace top-level fields."""
    ids = [index + 1] + [j + 1 for j in range(len(probs)) if j != index]
    event = {
        "_label_cost": cost,
        "_label_probability": probs[index],
        "_label_Action": index + 1,
        "_labelIndex": index,
        "Timestamp": "2024-03-01T12:00:00.0000000Z",
        "Version": "1",
        "EventId": f"ev-{index}-{cost}",
        "a": ids,
        "p": [probs[i - 1] for i in ids],
        "c": {
            "User": {"tier": "pro", "age": 31},
            "_synthetic": False,
            "_multi": [{"_tag": f"item{j}", "i": {"id": f"item{j}", "price": j + 1.0}} for j in range(len(probs))],
        },
    }
    event.update(overrides)
    return json.dumps(event)


CATEGORIES = ("lips", "eyes", "face", "skin")
ITEM_IDS = tuple(f"item-{i:02d}" for i in range(8))
ITEMS = tuple(
    {
        "brand": f"brand{i % 3}",
        "category": CATEGORIES[i % 4],
        "price_band": "mid",
        "shade_family": None,
        "skin_types": ["dry"],
        "price": 10.0 + i,
        "embedding": [0.1 * ((i * j) % 5) for j in range(8)],
    }
    for i in range(8)
)


def _user(rng: random.Random) -> dict:
    return {
        "segment": rng.choice(["new", "vip"]),
        "skin_type": "dry",
        "preferred_categories": [rng.choice(CATEGORIES)],
        "embedding": [rng.random() for _ in range(8)],
    }


def write_policy_log(app: AppConfig, events_dir: Path, models_dir: Path, n_decisions: int = 300) -> str:
    """Publish a fresh (untrained) policy of ``app``'s configuration to a model store at ``models_dir``, log
    ``n_decisions`` of its decisions over ITEMS, with rewards of a click model that favours each user's
    preferred categories, as an event log under ``events_dir``. Returns the published version id."""
    users, items = app.features.groups["users"], app.features.groups["items"]
    policy = Policy.create(app.policy.model_copy(update={"item_cache_size": 64}), users, items)
    version = ModelStore(models_dir).publish(policy)
    rng = random.Random(5)
    start = datetime(2024, 5, 1, tzinfo=UTC)
    events = []
    for i in range(n_decisions):
        user = _user(rng)
        decision = policy.decide(
            event_id=f"vw-{i:04d}",
            user_id=f"u{i}",
            user_features=user,
            context={"device": rng.choice(["mobile", "web"])},
            candidate_ids=ITEM_IDS,
            candidate_features=ITEMS,
            timestamp=start + timedelta(seconds=i),
        )
        liked = ITEMS[decision.chosen_index]["category"] in user["preferred_categories"]
        reward = 1.0 if rng.random() < (0.7 if liked else 0.1) else 0.0
        events.append(JoinedEvent(decision, (reward,), (False,), decision.timestamp))
    policy.close()
    write_events(events, events_dir)
    return version.id
