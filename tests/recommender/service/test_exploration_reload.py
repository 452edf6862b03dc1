"""SquareCB's gamma_scale changed in the config file of the running service (the shipped exploration): the next
decisions' pmfs follow exactly, on the same model version, and the decision log records what was served."""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import numpy as np
import yaml

from features.sample_catalog import items_frame
from recommender.policy.model_store import ModelStore
from recommender.policy.policy import Policy
from recommender.policy.squarecb_scale import rescale_pmf
from recommender.settings.app import AppConfig
from recommender.settings.loading import load_config
from tests.recommender.served_app import CANDIDATES_20, events_in, service_document, wait_for, write_config

REQUEST = {"user_id": "user-00042", "context": {"device": "mobile", "hour": 21}, "candidates": CANDIDATES_20}


def publish_trained_model(config: AppConfig) -> str:
    """A model of the configured policy that learned, from uniform logs over CANDIDATES_20, that the first
    three items are clicked: its pmf is far from uniform, so gamma_scale shows."""
    catalog = {row.pop("item_id"): row for row in items_frame().to_dict("records")}
    # As the feature store gives them: vectors as lists, a missing value (skincare's shade: NaN here) left out.
    rows = [{k: (list(v) if k == "embedding" else v) for k, v in catalog[i].items() if not _missing(v)}
            for i in CANDIDATES_20]  # fmt: skip
    policy = Policy.create(config.policy, config.user_group, config.item_group)
    rng = random.Random(0)
    for _ in range(600):
        chosen = rng.randrange(len(rows))
        policy.learn_one(candidates=rows, candidate_ids=CANDIDATES_20, chosen=chosen, probability=1 / len(rows),
                         reward=float(chosen < 3 and rng.random() < 0.8))  # fmt: skip
    store = ModelStore(config.policy.model_dir, user_group=config.user_group, item_group=config.item_group)
    version = store.publish(policy)
    policy.close()
    return version.id


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def served_pmf(body: dict) -> np.ndarray:
    by_id = {r["id"]: r["probability"] for r in body["ranking"]}
    return np.array([by_id[i] for i in CANDIDATES_20])


def test_gamma_scale_hot_reload_rescales_the_next_decisions_on_the_same_model(serve, catalog_redis, tmp_path):
    document = service_document(tmp_path, catalog_redis.url, trainer={"model_update_interval": 3600})
    document["policy"]["exploration"] = {"algorithm": "squarecb", "gamma_scale": 50}
    config_path = Path(tmp_path / "seed.yaml")
    published = publish_trained_model(write_config(config_path, document))
    served = serve(document)
    client = served.client()
    before = client.post("/v1/score", REQUEST).json()
    assert before["model_version"] == published and before["policy"]["gamma_scale"] == 50
    pmf_50 = served_pmf(before)
    assert pmf_50.max() > 3 / len(CANDIDATES_20)  # learned: far from uniform

    document["policy"]["exploration"] = {"algorithm": "squarecb", "gamma_scale": 10}
    served.runtime.config_path.write_text(yaml.safe_dump(document))
    edited = time.monotonic()
    after = wait_for(lambda: (b := client.post("/v1/score", REQUEST).json()) and b["policy"]["gamma_scale"] == 10
                     and b, timeout=5)  # fmt: skip
    assert time.monotonic() - edited < 5
    assert served.runtime.last_reload["outcome"] == "applied"
    assert after["model_version"] == published  # the same weights, not a new or reset model
    pmf_10 = served_pmf(after)
    assert math.isclose(pmf_10.sum(), 1.0, abs_tol=1e-9)
    np.testing.assert_allclose(pmf_10, rescale_pmf(pmf_50, 10 / 50), atol=1e-9)
    assert np.abs(pmf_10 - pmf_50).max() > 0.02  # gamma 5x smaller: the best item's share visibly drops
    assert pmf_10.max() < pmf_50.max()

    # The decision log records the served settings and the served pmf.
    event = wait_for(lambda: events_in(served.config.join.event_log_dir).get(after["event_id"]))
    assert event.decision.exploration == {"algorithm": "squarecb", "gamma_scale": 10.0, "gamma_exponent": 0.5,
                                          "elim": False}  # fmt: skip
    assert event.decision.model_version == published
    np.testing.assert_allclose(event.decision.pmf, pmf_10, atol=1e-12)

    # Back to the model's own scale: VW's pmf again, still on the same version.
    document["policy"]["exploration"] = {"algorithm": "squarecb", "gamma_scale": 50}
    served.runtime.config_path.write_text(yaml.safe_dump(document))
    again = wait_for(lambda: (b := client.post("/v1/score", REQUEST).json()) and b["policy"]["gamma_scale"] == 50
                     and b, timeout=5)  # fmt: skip
    assert again["model_version"] == published
    np.testing.assert_allclose(served_pmf(again), pmf_50, atol=1e-9)
    assert load_config(served.runtime.config_path).policy.exploration.gamma_scale == 50
