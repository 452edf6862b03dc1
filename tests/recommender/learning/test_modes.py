"""Learning modes in the real service over HTTP (embedded defaults): apprentice serves the baseline with a
truthful pmf and reports agreement; modes and exploration change live without resetting the model;
logging_only logs but learns nothing."""

from __future__ import annotations

import time

import yaml

from recommender.policy.model_store import ModelStore
from simulators.storefront import Storefront
from tests.recommender.learning.learning_config import learning_document
from tests.recommender.served_app import events_in, wait_for


def _set(served, **trainer):
    path = served.runtime.config_path
    document = yaml.safe_load(path.read_text())
    document["trainer"].update(trainer)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    wait_for(lambda: all(getattr(served.runtime.snapshot.config.trainer, k) == v for k, v in trainer.items()))


def test_apprentice_then_online_then_logging_only(serve, tmp_path):
    document = learning_document(tmp_path, trainer={"mode": "apprentice"})
    document["policy"]["exploration"] = {"algorithm": "epsilon_greedy", "epsilon": 0.1}
    served = serve(document)
    client = served.client()
    candidates = ["item-0007", "item-0003", "item-0042"]
    body = client.post("/v1/score", {"user_id": "user-00001", "candidates": candidates}).json()
    assert body["reward_action_id"] == "item-0007" and body["model_version"] == "baseline"
    assert [r["id"] for r in body["ranking"]] == candidates
    assert [r["probability"] for r in body["ranking"]] == [1.0, 0.0, 0.0]
    assert body["policy"] == {"exploration": "baseline", "baseline": "first", "mode": "apprentice"}

    storefront = Storefront(served.url, seed=3, event_prefix="app")
    storefront.run(300)
    settings = client.get("/v1/admin/settings").json()["learning"]
    assert settings["mode"] == "apprentice" and settings["trainer"]["in_process"] is True
    agreement = settings["agreement"]
    assert agreement["decisions"] == 301 and 0.0 <= agreement["rate"] <= 1.0
    metrics = client.get("/metrics").body.decode()
    assert "recommender_apprentice_decisions_total 301.0" in metrics
    assert 'recommender_learning_mode{mode="apprentice"} 1.0' in metrics

    # The trainer learns the baseline's events (probability 1) and publishes; the service swaps the version in.
    store = ModelStore(served.config.policy.model_dir)
    wait_for(lambda: (v := store.current_version()) and store.version(v).event_range.count == 301, timeout=15)
    logged = events_in(served.config.join.event_log_dir)
    assert all(e.decision.probability == 1.0 for e in logged.values())

    _set(served, mode="online")
    wait_for(lambda: served.runtime.snapshot.model_version == store.current_version())
    online = client.post("/v1/score", {"user_id": "user-00001", "candidates": candidates}).json()
    assert online["model_version"] == store.current_version()
    assert online["policy"] == {"exploration": "epsilon_greedy", "epsilon": 0.1}

    # An exploration change keeps the learned weights: the same model version, another exploration.
    path = served.runtime.config_path
    document = yaml.safe_load(path.read_text())
    document["policy"]["exploration"]["epsilon"] = 0.3
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    wait_for(lambda: served.runtime.snapshot.exploration().get("epsilon") == 0.3)
    assert served.runtime.snapshot.model_version == store.current_version()

    _set(served, mode="logging_only")
    # What was learned while online is still published (within the interval); then nothing more.
    wait_for(lambda: served.runtime.trainer.pending_events == 0)
    time.sleep(1.5)
    frozen = store.current_version()
    storefront.run(200)
    wait_for(lambda: len(events_in(served.config.join.event_log_dir)) == 502, timeout=10)
    settings = client.get("/v1/admin/settings").json()["learning"]
    assert settings["trainer"]["pending_events"] == 0
    assert store.current_version() == frozen  # logged, not learned
    storefront.close()
    client.close()
