"""No acknowledged reward lost, no reward counted twice, one log row per event id, and degraded decisions
that say why: the real app over HTTP on a real redis-server (a private one where the test stops it)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from recommender.events.log import read_events
from recommender.service import publisher
from recommender.service.arrival import ARRIVED_AT
from tests.recommender.served_app import CANDIDATES_20, events_in, service_document, wait_for
from tests.redis_harness import RedisServer

BODY = {"user_id": "user-00042", "candidates": CANDIDATES_20}


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, which the test stops and restarts."""
    server = RedisServer().start()
    yield server
    server.stop()


def metric(client, name: str) -> float | None:
    """The value of the sample ``name`` (with its labels, as exposed) on /metrics, or None."""
    for line in client.get("/metrics").body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def test_a_reward_for_a_decision_still_held_by_the_worker_is_stored_not_refused(serve, private_redis, tmp_path,
                                                                                monkeypatch):  # fmt: skip
    # The flusher's next round is half a minute away: the second or so seen in production between Redis coming
    # back and the held decisions being written, made long enough to hit every time.
    monkeypatch.setattr(publisher, "FLUSH_INTERVAL_SECONDS", 30.0)
    document = service_document(tmp_path, private_redis.url, join={"reward_wait_time": 3.0})
    document["features"]["redis"]["key_prefix"] = "fs"
    served = serve(document)
    client = served.client()
    assert client.post("/v1/score", BODY).status == 200  # Redis up: written at once
    assert metric(client, "recommender_buffered_decisions") == 0

    private_redis.stop()
    held = client.post("/v1/score", BODY).json()
    assert held["degraded"] is True
    assert served.runtime.publisher.buffered == 1
    assert metric(client, "recommender_buffered_decisions") == 1  # what /readyz says too
    assert client.get("/readyz").json()["checks"]["buffered_decisions"] == 1
    twice = client.post("/v1/score", {**BODY, "event_id": held["event_id"]})  # held, so pending: refused
    assert twice.status == 409 and served.runtime.publisher.buffered == 1

    private_redis.start()  # back, empty; the decision is still in the worker's memory
    # The breaker lets a probe through after service.redis_retry_seconds; until then 503 (retry later).
    reward = wait_for(lambda: (r := client.post("/v1/reward", {"event_id": held["event_id"], "reward": 1.0}))
                      .status != 503 and r, timeout=5)  # fmt: skip
    assert reward.status == 204, reward.body  # not 404 "unknown event"
    assert served.runtime.publisher.buffered == 0
    assert metric(client, "recommender_buffered_decisions") == 0
    event = wait_for(lambda: events_in(served.config.join.event_log_dir).get(held["event_id"]), timeout=10)
    assert event.rewards == (1.0,) and event.reward_is_default == (False,)


def test_a_retried_reward_is_a_no_op_and_every_aggregated_reward_stays_in_range(serve, catalog_redis, tmp_path):
    served = serve(service_document(tmp_path, catalog_redis.url))
    client = served.client()
    retried, summed = (client.post("/v1/score", BODY).json()["event_id"] for _ in range(2))
    for _ in range(2):  # the client's retry after a lost answer: same id, same answer, nothing added
        assert client.post("/v1/reward", {"event_id": retried, "reward": 0.75, "reward_id": "r-1"}).status == 204
        header = client.post("/v1/reward", {"event_id": retried, "reward": 0.125},
                             headers={"Idempotency-Key": "r-2"})  # fmt: skip
        assert header.status == 204
    mismatch = client.post("/v1/reward", {"event_id": retried, "reward": 0.5, "reward_id": "a"},
                           headers={"Idempotency-Key": "b"})  # fmt: skip
    assert mismatch.status == 400 and mismatch.json()["field"] == "reward_id"
    bad_key = client.post("/v1/reward", {"event_id": retried, "reward": 0.5}, headers={"Idempotency-Key": "x" * 200})
    assert bad_key.status == 400 and bad_key.json()["field"] == "Idempotency-Key"
    for _ in range(2):  # two rewards without an id: both count, and their sum is clipped into [-1, 1]
        assert client.post("/v1/reward", {"event_id": summed, "reward": 0.75}).status == 204

    log_dir = served.config.join.event_log_dir
    events = wait_for(lambda: (e := events_in(log_dir)) and {retried, summed} <= set(e) and e)
    assert events[retried].rewards == (0.875,)  # 0.75 + 0.125, once each
    assert events[summed].rewards == (1.0,)  # not 1.5
    assert metric(client, "recommender_clipped_reward_slots_total") == 1
    assert metric(client, 'recommender_rewards_total{outcome="duplicate"}') == 2
    # A retry after the join still gets what the first attempt got.
    after = client.post("/v1/reward", {"event_id": retried, "reward": 0.75, "reward_id": "r-1"})
    assert after.status == 204


def test_an_event_id_reused_after_its_window_closed_is_refused(serve, catalog_redis, tmp_path):
    served = serve(service_document(tmp_path, catalog_redis.url))
    client = served.client()
    first = client.post("/v1/score", {**BODY, "event_id": "page-view-1"})
    assert first.status == 200
    log_dir = served.config.join.event_log_dir
    wait_for(lambda: "page-view-1" in events_in(log_dir))  # window closed, joined, gone from the pending set
    again = client.post("/v1/score", {**BODY, "event_id": "page-view-1"})
    assert again.status == 409 and again.json()["error"] == "duplicate_event", again.body
    time.sleep(served.config.join.reward_wait_time + 0.5)  # a second decision would be joined by now
    rows = [row for row in read_events(log_dir) if row.decision.event_id == "page-view-1"]
    assert len(rows) == 1


def _arrived(app, seconds_ago: float) -> None:
    """Make the served app see every request as having waited ``seconds_ago`` for its worker (what the
    gunicorn worker reports from the kernel's receive timestamp; werkzeug does not)."""
    inner = app.wsgi_app

    def wsgi_app(environ, start_response):
        environ[ARRIVED_AT] = time.time() - seconds_ago
        return inner(environ, start_response)

    app.wsgi_app = wsgi_app


def test_a_degraded_decision_says_why_in_the_answer_the_log_and_the_metrics(serve, catalog_redis, private_redis,
                                                                              tmp_path, caplog):  # fmt: skip
    caplog.set_level(logging.WARNING, logger="recommender.service.fallback")
    healthy = serve(service_document(tmp_path, catalog_redis.url)).client().post("/v1/score", BODY).json()
    assert healthy["degraded"] is False and "degraded_reason" not in healthy

    shedding = serve(service_document(tmp_path, catalog_redis.url, service={"queue_budget_ms": 50}))
    _arrived(shedding.app, 0.5)
    shed = shedding.client().post("/v1/score", BODY).json()
    assert shed["degraded"] is True and shed["degraded_reason"] == "shed"
    assert metric(shedding.client(), 'recommender_degraded_decisions_total{reason="shed"}') == 1

    no_model = serve(service_document(tmp_path, catalog_redis.url), policy=None).client().post("/v1/score", BODY)
    assert no_model.json()["degraded_reason"] == "no_model"

    document = service_document(tmp_path, private_redis.url)
    document["features"]["redis"]["key_prefix"] = "nothing-loaded"
    outage = serve(document)
    client = outage.client()
    assert client.post("/v1/score", BODY).json()["degraded_reason"] == "features_not_loaded"
    private_redis.stop()
    down = client.post("/v1/score", BODY).json()
    assert down["degraded"] is True and down["degraded_reason"] == "feature_store_unavailable"

    lines = {record.getMessage() for record in caplog.records if record.levelno == logging.WARNING}
    assert f"decision {shed['event_id']} degraded: shed" in lines
    assert f"decision {down['event_id']} degraded: feature_store_unavailable" in lines
    schema = serve(service_document(tmp_path, None)).client().get("/openapi.json").json()
    reasons = schema["components"]["schemas"]["DegradedReason"]["enum"]
    assert {"shed", "feature_store_unavailable", "no_model", "policy_error"} <= set(reasons)
