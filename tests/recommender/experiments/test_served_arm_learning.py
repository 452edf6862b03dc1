"""An arm with its own learner end to end on the Redis path: ``recommender serve`` (gunicorn, two workers, the
joiner process) and ``recommender train`` in processes of their own. The arm publishes its own versions, both
workers swap them in (every /v1/score answer on fresh connections names the arm's newest version), the per-arm
figures match a recomputation from the Parquet log, and ``recommender experiment promote`` of that arm while
everything runs never lets a request without the experiment be served by the old main model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from recommender.cli.main import main
from recommender.experiments.assignment import Assigner, assignment_unit
from recommender.policy.model_store import ModelStore
from recommender.settings.experiments import Experiment
from recommender.settings.loading import load_config
from tests.recommender.served_app import (
    CANDIDATES_20,
    Client,
    service_document,
    start_serve,
    wait_for,
    wait_until_ready,
    write_config,
)
from tests.redis_harness import free_port

KEY = "experiment-test-key-0123456789"
EXPERIMENT = {
    "name": "own-arm",
    "control": "baseline",
    "arms": [
        {"name": "baseline", "kind": "baseline", "share": 0.3},
        {"name": "bandit", "kind": "policy", "share": 0.35},
        {"name": "slow", "kind": "policy", "share": 0.35, "learning": {"learning_rate": 0.5}},
    ],
}
ASSIGN = Assigner.of(Experiment.model_validate(EXPERIMENT))
USERS = [f"user-{i:05d}" for i in range(1, 61)]
SLOW_USERS = [u for u in USERS if ASSIGN(assignment_unit(u, "")) == "slow"]


def start_train(config_path: Path, cwd: Path) -> subprocess.Popen:
    """``recommender train`` on ``config_path`` in a process of its own (stdout and stderr piped)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    return subprocess.Popen([sys.executable, "-m", "recommender.cli.main", "--config", str(config_path), "train"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd)  # fmt: skip


def score(url: str, user: str, rng: np.random.Generator) -> dict:
    """One /v1/score on a fresh connection (either worker), clicked when the item's number is a multiple of 3."""
    fresh = Client(url, headers={"X-API-Key": KEY})
    body = fresh.post("/v1/score", {"user_id": user, "candidates": list(rng.permutation(CANDIDATES_20))}).json()
    if int(body["reward_action_id"][-4:]) % 3 == 0:
        assert fresh.post("/v1/reward", {"event_id": body["event_id"], "reward": 1.0}).status == 204
    fresh.close()
    return body


def version_of(body: dict) -> str:
    return body["model_version"].split("+")[0]


def test_an_arm_with_its_own_learner_on_redis_with_two_workers_and_recommender_train(
    catalog_redis, tmp_path: Path
) -> None:
    assert SLOW_USERS  # the hash puts some of the users in the separately learned arm
    port = free_port()
    document = service_document(
        tmp_path, catalog_redis.url, service={"port": port, "workers": 2, "threads": 2, "api_keys": [KEY]},
        experiments={"current": EXPERIMENT, "min_events": 10},
        trainer={"model_update_interval": 1.0, "poll_seconds": 0.2},
    )  # fmt: skip
    config_path = tmp_path / "config.yaml"
    config = write_config(config_path, document)
    main_store = ModelStore(config.policy.model_dir)
    arm_store = main_store.arm_store(EXPERIMENT["name"], "slow")
    serve = start_serve(config_path, tmp_path)
    train = start_train(config_path, tmp_path)
    rng = np.random.default_rng(11)
    url = f"http://127.0.0.1:{port}"
    answers: list[dict] = []
    try:
        client = Client(url, headers={"X-API-Key": KEY})
        wait_until_ready(client)
        swapped: set[str] = set()
        for _ in range(2):  # a round of traffic, then the arm's next version swapped in by both workers
            before = arm_store.current_version()
            answers += [score(url, user, rng) for user in USERS]
            newest = wait_for(lambda: (c := arm_store.current_version()) != before and c, timeout=15)  # noqa: B023
            # Every worker serves it: 12 answers in a row on fresh connections (spread over both workers).
            wait_for(lambda: all(version_of(score(url, u, rng)) == newest  # noqa: B023
                                 for u in (SLOW_USERS * 12)[:12]), timeout=10, interval=0.2)  # fmt: skip
            swapped.add(newest)
        assert len(swapped) == 2 and not swapped & {v.id for v in main_store.versions()}

        # Per-arm figures: the admin route against the Parquet log, once every decision is joined.
        n_decisions = sum(
            float(line.split()[-1]) for line in client.get("/metrics").body.decode().splitlines()
            if line.startswith("recommender_experiment_decisions_total{"))  # fmt: skip

        def log_rows() -> list[tuple[str, float, str]]:
            if not any(Path(config.join.event_log_dir).glob("date=*/hour=*/*.parquet")):
                return []
            table = pq.ParquetDataset(config.join.event_log_dir).read(
                columns=["experiment", "arm", "rewards", "model_version"]
            )
            columns = [table.column(c).to_pylist() for c in ("experiment", "arm", "rewards", "model_version")]
            return [(a, r[0], v) for e, a, r, v in zip(*columns, strict=True) if e == EXPERIMENT["name"]]

        rows = wait_for(lambda: (r := log_rows()) and len(r) == n_decisions and r, timeout=15)
        report = client.get("/v1/admin/experiments").json()
        assert {arm["arm"] for arm in report["arms"]} == {"baseline", "bandit", "slow"}
        for arm in report["arms"]:
            rewards = np.array([r for a, r, _ in rows if a == arm["arm"]])
            assert arm["n"] == rewards.size and arm["mean"] == pytest.approx(rewards.mean())
            assert arm["std"] == pytest.approx(rewards.std(ddof=1))
        logged = {v.split("+")[0] for a, _, v in rows if a == "slow"}
        assert swapped <= logged and not logged & {v.id for v in main_store.versions()}  # never the main model
        old_main = main_store.current_version()

        # Promote the arm while everything runs: a request without the experiment gets the promoted model
        # (or a version the trainer learned on top of it), never the old main one.
        assert main(["--config", str(config_path), "experiment", "promote", "slow"]) == 0
        promoted = main_store.current_version()
        assert promoted != old_main and main_store.version(promoted).policy["learning"]["learning_rate"] == 0.5

        def descends_from_promoted(version_id: str) -> bool:
            while version_id and version_id != promoted:
                version_id = main_store.version(version_id).parent_version or ""
            return version_id == promoted

        # Every answer until 20 came without the experiment (both workers reloaded the file), within 20 s.
        ended, i, deadline = 0, 0, time.monotonic() + 20
        while ended < 20 and time.monotonic() < deadline:
            body = score(url, USERS[i % len(USERS)], rng)
            i += 1
            if "experiment" not in body:
                ended += 1
                assert version_of(body) != old_main and descends_from_promoted(version_of(body)), body
        assert ended >= 20  # the workers reloaded the config within the run
        assert load_config(config_path).policy.learning.learning_rate == 0.5
    finally:
        for process in (train, serve):
            process.send_signal(signal.SIGTERM)
        outputs = [process.communicate(timeout=30)[0].decode() for process in (train, serve)]
    assert train.returncode == 0, outputs[0][-3000:]
    assert serve.returncode == 0, outputs[1][-3000:]
