"""Batch training (``train_batch``) on the synthetic policy problem: the same weights as learning the events."""

from __future__ import annotations

import numpy as np

from features.config import FeatureStoreConfig
from recommender.events.log import write_events
from recommender.learning.batch import train_batch
from recommender.policy.model_store import open_model_store
from recommender.policy.policy import Policy
from recommender.settings.app import AppConfig
from recommender.settings.policy import PolicyConfig
from tests.recommender.policy import synthetic_policy_problem as sp

HELD_OUT = sp.contexts(30, seed=999)


def pmf_of(policy: Policy, ctx: sp.Context) -> np.ndarray:
    return policy.predict_pmf(ctx.user_features, ctx.context, sp.CANDIDATES, candidate_ids=sp.CANDIDATE_IDS)


def test_learning_from_the_parquet_log_equals_learning_the_events(tmp_path) -> None:
    events = sp.uniform_events(500, seed=4)
    write_events(events, tmp_path / "log")
    features = FeatureStoreConfig(groups={"users": sp.USER_GROUP, "items": sp.ITEM_GROUP})
    config = AppConfig(features=features, policy=PolicyConfig(model_dir=str(tmp_path / "models")))
    report = train_batch(config, tmp_path / "log", passes=2)
    from_events = Policy.create(config.policy, sp.USER_GROUP, sp.ITEM_GROUP)
    from_events.learn(events)
    from_events.learn(events)
    assert report.learned == 1000 and report.passes == 2 and report.files >= 1
    assert report.events is not None and report.events.count == 500
    assert report.events.first_event_id == "ev-4-0" and report.events.last_event_id == "ev-4-499"
    from_log = open_model_store(config).load()
    assert from_log.events_seen == report.events
    assert from_log.model_version == report.version.id
    for ctx in HELD_OUT:
        np.testing.assert_allclose(pmf_of(from_log, ctx), pmf_of(from_events, ctx), atol=1e-7)
