"""Redis down or slow: /v1/score keeps answering 200 from the current model with default features,
flagged degraded and logged truthfully; /readyz says why; the service recovers by itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from features import open_store
from features.sample_catalog import load_sample_catalog
from tests.recommender.served_app import CANDIDATES_20, events_in, service_document, wait_for
from tests.redis_harness import RedisServer


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, which the test stops and restarts."""
    server = RedisServer().start()
    yield server
    server.stop()


def load_catalog(served) -> None:
    store = open_store(served.config.features.model_copy(
        update={"redis": served.config.features.redis.model_copy(update={"timeout_ms": 5000})}))  # fmt: skip
    load_sample_catalog(store, n_users=100)
    store.close()


def timed_score(client, body):
    started = time.perf_counter()
    response = client.post("/v1/score", body)
    return response, time.perf_counter() - started


def test_redis_down_degrades_then_recovers_by_itself(serve, private_redis, tmp_path):
    document = service_document(tmp_path, private_redis.url)
    document["features"]["redis"]["key_prefix"] = "fs"
    served = serve(document)
    load_catalog(served)
    client = served.client()
    body = {"user_id": "user-00042", "context": {"device": "mobile"}, "candidates": CANDIDATES_20}
    healthy, _ = timed_score(client, body)
    assert healthy.status == 200 and healthy.json()["degraded"] is False

    private_redis.stop()
    outage_ids = []
    for _ in range(20):
        response, elapsed = timed_score(client, body)
        assert response.status == 200, response.body
        decision = response.json()
        assert decision["degraded"] is True
        assert decision["model_version"] == healthy.json()["model_version"]  # the current model, not uniform
        assert elapsed < 0.25
        outage_ids.append(decision["event_id"])
    # Scoring works (degraded): readiness holds, so a probe does not pull the pod; full health says why not.
    ready = client.get("/readyz")
    assert ready.status == 200 and ready.json()["ready"] is True and ready.json()["healthy"] is False
    full = client.get("/healthz/full")
    assert full.status == 503
    reasons = " ".join(full.json()["reasons"])
    assert "feature_store unreachable" in reasons and "event_bus unreachable" in reasons
    assert full.json()["reasons"] == ready.json()["reasons"]
    reward = client.post("/v1/reward", {"event_id": outage_ids[0], "reward": 1.0})
    assert reward.status == 503 and reward.json()["error"] == "unavailable"  # not stored: the client retries
    assert reward.headers["retry-after"] == "1"

    private_redis.start()  # same port, empty: the service must find it again on its own
    load_catalog(served)
    wait_for(lambda: client.get("/healthz/full").status == 200, timeout=10)
    recovered = wait_for(lambda: (r := client.post("/v1/score", body).json()) and not r["degraded"] and r)
    assert recovered["degraded"] is False

    # The decisions made during the outage were buffered, written once Redis was back, and joined:
    # degraded, with the default features they were made with and their true pmf.
    log_dir = served.config.join.event_log_dir
    events = wait_for(lambda: (e := events_in(log_dir)) and set(outage_ids) <= set(e) and e, timeout=10)
    for event_id in outage_ids:
        decision = events[event_id].decision
        assert decision.degraded
        assert decision.user_features["segment"] == "unknown"  # the group default
        assert abs(sum(decision.pmf) - 1) < 1e-6
        assert events[event_id].reward_is_default == (True,)


def test_slow_redis_costs_at_most_the_budget(serve, private_redis, tmp_path):
    document = service_document(tmp_path, private_redis.url,
                                service={"redis_retry_seconds": 0.5}, bus={"timeout_ms": 50})  # fmt: skip
    document["features"]["redis"].update(key_prefix="fs", timeout_ms=50)
    served = serve(document)
    load_catalog(served)
    client = served.client()
    body = {"user_id": "user-00042", "candidates": CANDIDATES_20}
    assert timed_score(client, body)[0].json()["degraded"] is False

    # DEBUG SLEEP blocks the whole server: every command waits 1.5 s.
    blocker = redis.Redis.from_url(private_redis.url, socket_timeout=10)
    sleeper = threading.Thread(target=lambda: blocker.execute_command("DEBUG", "SLEEP", "1.5"))
    sleeper.start()
    time.sleep(0.1)
    timings = []
    degraded = []
    for _ in range(10):
        response, elapsed = timed_score(client, body)
        assert response.status == 200
        timings.append(elapsed)
        degraded.append(response.json()["degraded"])
    sleeper.join()
    blocker.close()
    assert all(degraded)
    # The first request pays the feature budget (50 ms; the bus write is then skipped by the breaker);
    # the next ones skip Redis altogether. Bounds are far below the 1.5 s a request waiting on Redis
    # would take, with room for a loaded CI machine (this is a behaviour test, not a benchmark).
    assert timings[0] < 0.5, timings
    assert max(timings[1:]) < 0.25, timings
    assert sorted(timings[1:])[len(timings) // 2] < 0.05, timings  # typically a few ms
    wait_for(lambda: not client.post("/v1/score", body).json()["degraded"], timeout=5)
