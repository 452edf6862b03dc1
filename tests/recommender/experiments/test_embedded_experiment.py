"""An experiment on the embedded default (one process) over HTTP: per-arm reward metrics fed by the joiner at every
batch, against the log; the arm in /v1/score answers; GET /v1/admin/experiments as /openapi.json describes it."""

from __future__ import annotations

from pathlib import Path

import jsonschema_rs
import numpy as np
import pytest

from tests.recommender.experiments.test_served_experiment import EXPERIMENT, arm_samples
from tests.recommender.served_app import CANDIDATES_20, events_in, service_document, wait_for

N = 60


def test_reward_metrics_per_arm_follow_the_joiner_without_an_admin_call(serve, tmp_path: Path) -> None:
    served = serve(service_document(tmp_path, None, experiments={"current": EXPERIMENT}))
    client = served.client()
    rng = np.random.default_rng(1)
    for i in range(N):
        body = client.post("/v1/score", {"user_id": f"user-{i % 30 + 1:05d}", "candidates": CANDIDATES_20}).json()
        if rng.random() < 0.4:
            assert client.post("/v1/reward", {"event_id": body["event_id"], "reward": 1.0}).status == 204
    events = wait_for(lambda: (e := events_in(served.config.join.event_log_dir)) and len(e) == N and e, timeout=15)
    joined = wait_for(lambda: (m := arm_samples(client.get("/metrics").body.decode(), "rewards_total"))
                      and sum(m.values()) == N and m)  # fmt: skip
    means = arm_samples(client.get("/metrics").body.decode(), "mean_reward")
    sums = arm_samples(client.get("/metrics").body.decode(), "reward_sum_total")
    for arm in ("baseline", "bandit"):
        rewards = [e.rewards[0] for e in events.values() if e.decision.arm == arm]
        assert joined[arm] == len(rewards) > 0
        assert sums[arm] == pytest.approx(sum(rewards))
        assert means[arm] == pytest.approx(np.mean(rewards))


def _validator(document: dict, component: str) -> jsonschema_rs.Validator:
    return jsonschema_rs.validator_for({"$ref": f"#/components/schemas/{component}", **document})


def test_score_names_the_arm_and_the_admin_route_is_in_the_openapi_document(serve, tmp_path: Path) -> None:
    plain = serve(service_document(tmp_path / "plain", None)).client()
    assert not {"experiment", "arm"} & set(plain.post("/v1/score", {"candidates": CANDIDATES_20}).json())

    served = serve(service_document(tmp_path, None, experiments={"current": EXPERIMENT, "min_events": 2}))
    client = served.client()
    document = client.get("/openapi.json").json()
    operation = document["paths"]["/v1/admin/experiments"]["get"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ExperimentStatus"}  # fmt: skip
    score_schema, status_schema = _validator(document, "ScoreResponse"), _validator(document, "ExperimentStatus")
    arms = {}
    for i in range(20):
        user = f"user-{i + 1:05d}"
        body = client.post("/v1/score", {"user_id": user, "candidates": CANDIDATES_20}).json()
        score_schema.validate(body)
        assert body["experiment"] == EXPERIMENT["name"]
        arms[body["event_id"]] = body["arm"]
    assert set(arms.values()) == {"baseline", "bandit"}
    events = wait_for(lambda: (e := events_in(served.config.join.event_log_dir)) and len(e) == 20 and e, timeout=15)
    assert {event_id: e.decision.arm for event_id, e in events.items()} == arms  # the answer names the logged arm
    status = client.get("/v1/admin/experiments").json()
    status_schema.validate(status)
    assert status["status"] == "running" and sum(a["n"] for a in status["arms"]) == 20
