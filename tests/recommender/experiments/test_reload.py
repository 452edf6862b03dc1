"""Experiments start, change and are refused live (hot reload), like exploration settings."""

from __future__ import annotations

from pathlib import Path

from tests.recommender.experiments.test_served_experiment import EXPERIMENT
from tests.recommender.served_app import CANDIDATES_20, events_in, service_document, wait_for, write_config


def test_an_experiment_starts_live_and_an_unservable_one_is_refused(serve, tmp_path: Path) -> None:
    document = service_document(tmp_path, None)
    served = serve(document)
    client = served.client()
    assert client.get("/v1/admin/experiments").json() == {"status": "none", "experiment": None}
    write_config(served.runtime.config_path, {**document, "experiments": {"current": EXPERIMENT}})
    wait_for(lambda: served.runtime.snapshot.arms is not None, timeout=5)
    ids = [client.post("/v1/score", {"user_id": f"user-{i:05d}", "candidates": CANDIDATES_20}).json()["event_id"]
           for i in range(1, 21)]  # fmt: skip
    events = wait_for(lambda: (e := events_in(served.config.join.event_log_dir)) and set(ids) <= set(e) and e)
    assert {events[i].decision.arm for i in ids} == {"baseline", "bandit"}
    # A pinned arm naming a version the model store does not hold: refused, the running experiment stays.
    pinned = {**EXPERIMENT, "arms": [EXPERIMENT["arms"][0], {"name": "v0", "kind": "pinned", "share": 0.5,
                                                              "model_version": "no-such-version"}]}  # fmt: skip
    write_config(served.runtime.config_path, {**document, "experiments": {"current": pinned}})
    wait_for(lambda: served.runtime.last_reload["outcome"] == "refused", timeout=5)
    assert served.runtime.snapshot.arms.experiment.arm("bandit").kind == "policy"
    report = client.get("/v1/admin/experiments").json()
    assert report["experiment"] == EXPERIMENT["name"] and report["status"] == "running"
