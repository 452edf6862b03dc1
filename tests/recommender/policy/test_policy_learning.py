"""Learning: the cached-example path feeds VW exactly what rebuilding every example did, and ``learn_one``
(plain values) learns exactly what ``learn`` (logged records) does."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from recommender.errors import ExampleError, PolicyError
from recommender.policy.examples import cost_from_reward
from recommender.policy.policy import Policy
from recommender.policy.vw import VWModel
from recommender.records import JoinedEvent
from recommender.settings.policy import PolicyConfig
from tests.recommender.policy import synthetic_policy_problem as sp

CONFIGS = [
    {"exploration": {"algorithm": "epsilon_greedy", "epsilon": 0.1}},
    {"exploration": {"algorithm": "epsilon_greedy", "epsilon": 0.2}, "learning": {"cb_type": "ips"}},
    {"exploration": {"algorithm": "softmax", "lambda": 3.0}, "learning": {"cb_type": "dr"}},
    {"exploration": {"algorithm": "squarecb", "gamma_scale": 10.0}, "learning": {"learning_rate": 1.0}},
    {"exploration": {"algorithm": "bagging", "bags": 3, "epsilon": 0.1}},
    {"exploration": {"algorithm": "online_cover", "policies": 3}},
    {"mode": "ccb", "exploration": {"algorithm": "epsilon_greedy", "epsilon": 0.1},
     "interactions": [["user", "item"], ["slot", "item"]]},
]


def _model_bytes(write) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.vw"
        write(path)
        return path.read_bytes()


def _events(mode: str, n: int) -> list[JoinedEvent]:
    return sp.uniform_events(n, seed=21, slots=2 if mode == "ccb" else 1)


@pytest.mark.parametrize("overrides", CONFIGS, ids=lambda c: c.get("mode", "cb") + "-" + c["exploration"]["algorithm"])
def test_cached_learning_gives_the_same_model_bytes_as_rebuilding_every_example(overrides: dict) -> None:
    """Decide, then learn, event by event: the policy (item cache, one fresh labelled example) against VW
    fed freshly built examples for every call, as ``Policy.learn`` did before the cache was used."""
    config = PolicyConfig.model_validate(overrides)
    policy = Policy.create(config, sp.USER_GROUP, sp.ITEM_GROUP)
    reference = VWModel(config.vw_args())
    builder = policy.builder
    for i, event in enumerate(_events(config.mode, 400)):
        decision = event.decision
        shared = builder.shared(decision.user_features, decision.context)
        items = [builder.item(row) for row in decision.candidate_features]
        # Predictions first, on both, so the cached examples have been through VW's predict before learning.
        if config.mode == "cb":
            ours = policy.decide(
                event_id=f"p-{i}",
                user_id=decision.user_id,
                user_features=decision.user_features,
                context=decision.context,
                candidate_ids=decision.candidate_ids,
                candidate_features=decision.candidate_features,
            ).pmfs[0]
            np.testing.assert_array_equal(ours, reference.predict_cb_uncached(shared, items))
            policy.learn([event])
            chosen = decision.chosen[0]
            reference.learn_cb(shared, items, chosen, cost_from_reward(event.reward), decision.pmfs[0][chosen])
        else:
            policy.learn([event])
            slots = zip(decision.chosen, event.rewards, decision.pmfs, strict=True)
            outcomes = [(c, cost_from_reward(r), p[c]) for c, r, p in slots]
            reference.learn_ccb(shared, items, [builder.slot(0), builder.slot(1)], outcomes)
    assert policy.cache_info()["hits"] > 0
    assert _model_bytes(policy.write_model_file) == _model_bytes(reference.save)
    policy.close()
    reference.close()


def _learn_one_kwargs(event: JoinedEvent, multi: bool) -> dict:
    d = event.decision
    if multi:
        chosen = list(d.chosen)
        probability = [pmf[c] for pmf, c in zip(d.pmfs, d.chosen, strict=True)]
        reward = list(event.rewards)
    else:
        chosen, probability, reward = d.chosen[0], d.pmfs[0][d.chosen[0]], event.reward
    return {
        "user_features": d.user_features,
        "context": d.context,
        "candidates": d.candidate_features,
        "candidate_ids": d.candidate_ids,
        "chosen": chosen,
        "probability": probability,
        "reward": reward,
    }


@pytest.mark.parametrize("mode", ["cb", "ccb"])
def test_learn_one_learns_exactly_what_learn_does(mode: str) -> None:
    config = PolicyConfig.model_validate({"mode": mode})
    records = Policy.create(config, sp.USER_GROUP, sp.ITEM_GROUP)
    values = Policy.create(config, sp.USER_GROUP, sp.ITEM_GROUP)
    events = _events(mode, 200)
    assert records.learn(events) == 200
    for event in events:
        values.learn_one(**_learn_one_kwargs(event, mode == "ccb"))
    assert _model_bytes(records.write_model_file) == _model_bytes(values.write_model_file)
    assert values.model_version.endswith("+200") and values.events_seen is None
    assert records.events_seen is not None and records.events_seen.count == 200


def test_learn_one_without_ids_or_shared_features_still_learns() -> None:
    policy = Policy.create(PolicyConfig(), sp.USER_GROUP, sp.ITEM_GROUP)
    for i in range(3000):  # item 2 always pays, whatever the context
        chosen = i % sp.K
        policy.learn_one(candidates=sp.CANDIDATES, chosen=chosen, probability=1 / sp.K, reward=float(chosen == 2))
    assert int(np.argmax(policy.predict_pmf({}, {}, sp.CANDIDATES))) == 2


BASE = {"candidates": sp.CANDIDATES, "chosen": 1, "probability": 0.5, "reward": 1.0}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"chosen": sp.K}, r"chosen must be an index in \[0, 8\), got 8"),
        ({"chosen": True}, r"chosen must be an index"),
        ({"chosen": [0, 1], "probability": [0.5, 0.5], "reward": [1.0, 0.0]}, r"multi-slot policy"),
        ({"probability": 0.0}, r"probability must be a number in \(0, 1\], got 0.0"),
        ({"probability": 1.5}, r"probability must be a number in \(0, 1\]"),
        ({"probability": "0.5"}, r"probability must be a number or a sequence"),
        ({"reward": float("nan")}, r"reward must be a finite number"),
        ({"reward": None}, r"reward must be a finite number, got None"),
        ({"candidates": []}, r"no candidates"),
        ({"candidate_ids": ["a", "a", "b", "c", "d", "e", "f", "g"]}, r"candidate ids must be unique"),
        ({"chosen": 0, "candidates": [{"price": "cheap"}]}, r"outcome: candidate 0: item feature 'price': expected a"),
        ({"chosen": 0, "candidates": [{"price": 1.0}, {"price": "1"}]}, r"outcome: candidate 1: item feature 'price'"),
        ({"chosen": 0, "user_features": {"embedding": [1, 2]}}, r"outcome: user feature 'embedding': expected a vec"),
    ],
)
def test_learn_one_refuses_bad_input_and_learns_nothing(overrides: dict, message: str) -> None:
    policy = Policy.create(PolicyConfig(), sp.USER_GROUP, sp.ITEM_GROUP)
    before = policy.model_version
    with pytest.raises(PolicyError, match=message):
        policy.learn_one(**{**BASE, **overrides})
    assert policy.model_version == before


def test_learn_one_on_a_multi_slot_policy_checks_the_slots() -> None:
    policy = Policy.create(PolicyConfig(mode="ccb"), sp.USER_GROUP, sp.ITEM_GROUP)
    with pytest.raises(PolicyError, match=r"chosen indices must differ between slots, got \[1, 1\]"):
        policy.learn_one(candidates=sp.CANDIDATES, chosen=[1, 1], probability=[0.5, 0.5], reward=[1.0, 0.0])
    with pytest.raises(PolicyError, match=r"one chosen index, probability and reward per slot: got 2, 1 and 2"):
        policy.learn_one(candidates=sp.CANDIDATES, chosen=[1, 2], probability=0.5, reward=[1.0, 0.0])
    policy.learn_one(candidates=sp.CANDIDATES, chosen=[1, 2], probability=[0.5, 0.25], reward=[1.0, 0.0])
    assert policy.model_version.endswith("+1")


def test_a_bad_feature_in_a_logged_event_is_named_with_the_event() -> None:
    policy = Policy.create(PolicyConfig(), sp.USER_GROUP, sp.ITEM_GROUP)
    event = sp.uniform_events(1, seed=3)[0]
    rows = list(event.decision.candidate_features)
    rows[3] = {**rows[3], "price": float("inf")}
    decision = event.decision.__class__(**{**event.decision.__dict__, "candidate_features": tuple(rows)})
    with pytest.raises(ExampleError, match=r"event 'ev-3-0': candidate 'item-3': item feature 'price': inf is not"):
        policy.learn([JoinedEvent(decision, event.rewards, event.reward_is_default, event.joined_at)])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([0.5, 0, 2, -1.25], [("e[0]", 0.5), ("e[2]", 2.0), ("e[3]", -1.25)]),  # zeros dropped, ints as floats
        (np.array([0.0, 3.0, 0.25, 1.0], dtype=np.float32), [("e[1]", 3.0), ("e[2]", 0.25), ("e[3]", 1.0)]),
        ([np.float64(1.5), 2.0, np.int64(3), 0.0], [("e[0]", 1.5), ("e[1]", 2.0), ("e[2]", 3.0)]),  # checked one by one
    ],
)
def test_vectors_checked_whole_or_element_by_element_give_the_same_features(value, expected) -> None:
    builder = Policy.create(PolicyConfig(), sp.USER_GROUP, sp.ITEM_GROUP).builder
    user = builder.shared({"embedding": value}, {})[0][1]
    assert [(t.replace("embedding", "e"), v) for t, v in user if t.startswith("embedding")] == expected
    assert all(type(v) is float for _, v in user)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([0.5, True, 1.0, 2.0], r"user feature 'embedding'\[1\]: expected a number, got bool True"),
        ([0.5, 1.0, float("nan"), 2.0], r"user feature 'embedding'\[2\]: nan is not a finite number"),
        ([0.5, 1.0, 2.0, "3"], r"user feature 'embedding'\[3\]: expected a number, got str '3'"),
        ([0.5, 1.0, 2.0, float("-inf")], r"user feature 'embedding'\[3\]: -inf is not a finite number"),
    ],
)
def test_a_bad_vector_element_is_named(value, message) -> None:
    builder = Policy.create(PolicyConfig(), sp.USER_GROUP, sp.ITEM_GROUP).builder
    with pytest.raises(ExampleError, match=message):
        builder.shared({"embedding": value}, {})
