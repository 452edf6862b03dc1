"""An experiment end to end: ``recommender serve`` (gunicorn, two workers) on Redis, two arms, the traffic split,
sticky arms across workers, and GET /v1/admin/experiments against an independent recomputation from the log."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from recommender.experiments.assignment import Assigner, assignment_unit
from recommender.settings.experiments import Experiment
from tests.recommender.served_app import (
    CANDIDATES_20,
    Client,
    events_in,
    service_document,
    start_serve,
    wait_for,
    wait_until_ready,
    write_config,
)
from tests.redis_harness import free_port

KEY = "experiment-test-key-0123456789"
EXPERIMENT = {
    "name": "bandit-vs-baseline",
    "control": "baseline",
    "arms": [
        {"name": "baseline", "kind": "baseline", "share": 0.5},
        {"name": "bandit", "kind": "policy", "share": 0.5},
    ],
}
USERS = 60


def arm_samples(metrics: str, suffix: str) -> dict[str, float]:
    """arm -> value of ``recommender_experiment_<suffix>{experiment="bandit-vs-baseline",arm=...}``."""
    found = {}
    for line in metrics.splitlines():
        if line.startswith(f"recommender_experiment_{suffix}{{") and f'experiment="{EXPERIMENT["name"]}"' in line:
            found[line.split('arm="')[1].split('"')[0]] = float(line.split()[-1])
    return found


def _reward(item_id: str) -> float | None:
    """A fixed click rule: items whose number is a multiple of 3 are clicked, others not (no reward call)."""
    return 1.0 if int(item_id[-4:]) % 3 == 0 else None


def test_two_arms_over_http_with_two_workers_and_the_report_matches_the_log(catalog_redis, tmp_path: Path) -> None:
    port = free_port()
    document = service_document(
        tmp_path, catalog_redis.url, service={"port": port, "workers": 2, "threads": 2, "api_keys": [KEY]},
        experiments={"current": EXPERIMENT, "min_events": 10},
    )  # fmt: skip
    config_path = tmp_path / "config.yaml"
    config = write_config(config_path, document)
    process = start_serve(config_path, tmp_path)
    rng = np.random.default_rng(3)
    url = f"http://127.0.0.1:{port}"
    try:
        client = Client(url, headers={"X-API-Key": KEY})
        wait_until_ready(client)
        chosen: dict[str, tuple[str, str]] = {}  # event id -> (user, chosen item)
        for i in range(2 * USERS):  # every user twice, each time on a fresh connection (either worker)
            user = f"user-{i % USERS + 1:05d}"
            candidates = list(rng.permutation(CANDIDATES_20))
            fresh = Client(url, headers={"X-API-Key": KEY})
            body = fresh.post("/v1/score", {"user_id": user, "candidates": candidates}).json()
            fresh.close()
            chosen[body["event_id"]] = (user, body["reward_action_id"])
            if (reward := _reward(body["reward_action_id"])) is not None:
                assert client.post("/v1/reward", {"event_id": body["event_id"], "reward": reward}).status == 204
        events = wait_for(lambda: (e := events_in(config.join.event_log_dir)) and set(chosen) <= set(e) and e,
                          timeout=20)  # fmt: skip
        assign = Assigner.of(Experiment.model_validate(EXPERIMENT))
        arms_of_user: dict[str, set[str]] = {}
        for event_id, (user, _) in chosen.items():
            decision = events[event_id].decision
            assert decision.experiment == EXPERIMENT["name"]
            assert decision.arm == assign(assignment_unit(user, event_id))  # the documented hash, in every worker
            arms_of_user.setdefault(user, set()).add(decision.arm)
            if decision.arm == "baseline":  # the storefront's first candidate, probability 1, logged as such
                assert decision.chosen == (0,) and decision.probability == 1.0
                assert decision.exploration["algorithm"] == "baseline"
            else:
                assert decision.exploration["algorithm"] != "baseline"
        assert all(len(arms) == 1 for arms in arms_of_user.values())  # sticky per user across workers
        assert {arm for arms in arms_of_user.values() for arm in arms} == {"baseline", "bandit"}

        report = client.get("/v1/admin/experiments").json()
        # Independent recomputation straight from the Parquet files.
        table = pq.ParquetDataset(config.join.event_log_dir).read(columns=["experiment", "arm", "rewards"])
        rows = [(a, r[0]) for e, a, r in zip(*(table.column(c).to_pylist() for c in ("experiment", "arm", "rewards")),
                                             strict=True) if e == EXPERIMENT["name"]]  # fmt: skip
        for arm in report["arms"]:
            rewards = np.array([r for a, r in rows if a == arm["arm"]])
            assert arm["n"] == rewards.size
            assert arm["mean"] == pytest.approx(rewards.mean())
            assert arm["std"] == pytest.approx(rewards.std(ddof=1))
        assert sum(arm["n"] for arm in report["arms"]) == 2 * USERS
        comparison = report["comparisons"][0]
        means = {arm["arm"]: arm["mean"] for arm in report["arms"]}
        assert comparison["difference"] == pytest.approx(means["bandit"] - means["baseline"])
        assert report["decision"] in ("keep running", "stop", "promote")
        assert report["sample_ratio"]["mismatch"] is False

        metrics = client.get("/metrics").body.decode()
        served = sum(float(line.split()[-1]) for line in metrics.splitlines()
                     if line.startswith("recommender_experiment_decisions_total{"))  # fmt: skip
        assert served == 2 * USERS
        # The joiner process's per-arm counters, summed by every worker's /metrics, and the mean derived from them.
        joined = wait_for(lambda: (m := arm_samples(client.get("/metrics").body.decode(), "rewards_total"))
                          and sum(m.values()) == 2 * USERS and m, timeout=10)  # fmt: skip
        means = arm_samples(client.get("/metrics").body.decode(), "mean_reward")
        for arm in report["arms"]:
            assert joined[arm["arm"]] == arm["n"]
            assert means[arm["arm"]] == pytest.approx(arm["mean"])
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output.decode()[-3000:]
