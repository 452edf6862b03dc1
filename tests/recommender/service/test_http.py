"""End to end over HTTP against the real app and a real redis-server: the contract, the join into the
Parquet log, deferred activation, hot reload of exploration, auth."""

from __future__ import annotations

import logging
import math
import threading
import time

import pytest
import yaml

from tests.recommender.served_app import CANDIDATES_20, events_in, service_document, wait_for

KEY = "k" * 8 + "-0123456789abcdef"


def test_score_then_reward_lands_in_the_parquet_log(serve, catalog_redis, tmp_path):
    served = serve(service_document(tmp_path, catalog_redis.url))
    client = served.client()
    response = client.post(
        "/v1/score",
        {"user_id": "user-00042", "context": {"device": "mobile", "hour": 21}, "candidates": CANDIDATES_20,
         "excluded": ["item-0005"]},
    )  # fmt: skip
    assert response.status == 200, response.body
    body = response.json()
    assert set(body) == {"event_id", "ranking", "reward_action_id", "model_version", "policy", "degraded"}
    assert [r["id"] for r in body["ranking"]][0] == body["reward_action_id"]
    assert sorted(r["id"] for r in body["ranking"]) == sorted(set(CANDIDATES_20) - {"item-0005"})
    assert math.isclose(sum(r["probability"] for r in body["ranking"]), 1.0, abs_tol=1e-6)
    assert body["policy"] == {"exploration": "epsilon_greedy", "epsilon": 0.1}
    assert body["degraded"] is False

    event_id = body["event_id"]
    assert client.post("/v1/reward", {"event_id": event_id, "reward": 0.5}).status == 204
    assert client.post("/v1/reward", {"event_id": event_id, "reward": 0.25}).status == 204

    log_dir = served.config.join.event_log_dir
    event = wait_for(lambda: events_in(log_dir).get(event_id))
    assert event.rewards == (0.75,)  # aggregation: sum
    assert event.reward_is_default == (False,)
    decision = event.decision
    assert decision.user_id == "user-00042"
    assert dict(decision.context) == {"device": "mobile", "hour": 21}
    assert decision.candidate_ids[decision.chosen_index] == body["reward_action_id"]
    assert "item-0005" not in decision.candidate_ids
    assert decision.user_features["segment"] in {"new", "casual", "loyal", "vip"}  # from Redis, not defaults
    assert decision.candidate_features[0]["category"]
    assert decision.exploration == {"algorithm": "epsilon_greedy", "epsilon": 0.1}
    assert decision.model_version == body["model_version"]
    probabilities = {r["id"]: r["probability"] for r in body["ranking"]}
    for cid, p in zip(decision.candidate_ids, decision.pmf, strict=True):
        assert math.isclose(p, probabilities[cid])
    # After the window: the event is joined, a late reward is refused.
    late = client.post("/v1/reward", {"event_id": event_id, "reward": 1.0})
    assert late.status == 404 and late.json()["error"] == "unknown_event"


def test_decision_without_reward_gets_the_default_after_the_window(serve, catalog_redis, tmp_path):
    served = serve(service_document(tmp_path, catalog_redis.url, join={"default_reward": -0.1,
                                                                        "aggregation": "max"}))
    client = served.client()
    quiet = client.post("/v1/score", {"candidates": CANDIDATES_20[:5]}).json()["event_id"]
    rewarded = client.post("/v1/score", {"candidates": CANDIDATES_20[:5]}).json()["event_id"]
    for value in (0.2, 0.9, -0.5):
        assert client.post("/v1/reward", {"event_id": rewarded, "reward": value}).status == 204
    started = time.monotonic()
    log_dir = served.config.join.event_log_dir
    events = wait_for(lambda: (e := events_in(log_dir)) and quiet in e and rewarded in e and e)
    assert time.monotonic() - started < 5
    assert events[quiet].rewards == (-0.1,) and events[quiet].reward_is_default == (True,)
    assert events[rewarded].rewards == (0.9,) and events[rewarded].reward_is_default == (False,)
    assert events[quiet].decision.user_id is None


def test_deferred_decision_is_learned_only_once_activated(serve, catalog_redis, tmp_path):
    served = serve(service_document(tmp_path, catalog_redis.url))
    client = served.client()
    shown = client.post("/v1/score", {"candidates": CANDIDATES_20, "defer_activation": True}).json()["event_id"]
    never = client.post("/v1/score", {"candidates": CANDIDATES_20, "defer_activation": True}).json()["event_id"]
    assert client.post(f"/v1/events/{shown}/activate").status == 204
    assert client.post("/v1/reward", {"event_id": shown, "reward": 1.0}).status == 204
    unknown = client.post("/v1/events/no-such-event/activate")
    assert unknown.status == 404 and unknown.json()["field"] == "event_id"
    log_dir = served.config.join.event_log_dir
    event = wait_for(lambda: events_in(log_dir).get(shown))
    assert event.decision.deferred and event.rewards == (1.0,)
    time.sleep(0.5)  # both windows are closed by now and every joiner cycle has run
    assert never not in events_in(log_dir)
    assert client.post(f"/v1/events/{never}/activate").status == 404  # too late


def test_exploration_hot_reload_applies_within_seconds_and_refuses_invalid_edits(serve, catalog_redis, tmp_path):
    document = service_document(tmp_path, catalog_redis.url)
    served = serve(document)
    client = served.client()
    before = client.post("/v1/score", {"candidates": CANDIDATES_20}).json()
    assert before["policy"]["epsilon"] == 0.1
    path = served.runtime.config_path

    document["policy"]["exploration"] = {"epsilon": 0.3}
    path.write_text(yaml.safe_dump(document))
    edited = time.monotonic()
    after = wait_for(lambda: (b := client.post("/v1/score", {"candidates": CANDIDATES_20}).json())
                     and b["policy"]["epsilon"] == 0.3 and b, timeout=5)  # fmt: skip
    assert time.monotonic() - edited < 5
    assert after["model_version"] == before["model_version"]  # same weights, not a reset model
    assert math.isclose(sum(r["probability"] for r in after["ranking"]), 1.0, abs_tol=1e-6)

    document["policy"]["exploration"] = {"epsilon": 2.0}  # invalid
    path.write_text(yaml.safe_dump(document))
    admin = wait_for(lambda: (s := client.get("/v1/admin/settings").json())["last_reload"]["outcome"] == "refused"
                     and s)  # fmt: skip
    assert "policy.exploration.epsilon" in admin["last_reload"]["error"]
    for _ in range(5):
        assert client.post("/v1/score", {"candidates": CANDIDATES_20}).json()["policy"]["epsilon"] == 0.3
    # Each decision logs the settings it was made under.
    event_id = client.post("/v1/score", {"candidates": CANDIDATES_20}).json()["event_id"]
    event = wait_for(lambda: events_in(served.config.join.event_log_dir).get(event_id))
    assert event.decision.exploration["epsilon"] == 0.3


def test_no_request_fails_while_the_settings_change_under_load(serve, catalog_redis, tmp_path):
    document = service_document(tmp_path, catalog_redis.url)
    served = serve(document)
    path = served.runtime.config_path
    failures: list[str] = []
    seen: set[float] = set()
    stop = threading.Event()

    def load() -> None:
        client = served.client()
        while not stop.is_set():
            response = client.post("/v1/score", {"candidates": CANDIDATES_20})
            if response.status != 200:
                failures.append(response.body.decode())
            else:
                seen.add(response.json()["policy"]["epsilon"])

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    for epsilon in (0.2, 0.05, 0.4):
        document["policy"]["exploration"] = {"epsilon": epsilon}
        path.write_text(yaml.safe_dump(document))
        time.sleep(0.6)
    stop.set()
    for thread in threads:
        thread.join()
    assert not failures
    assert {0.2, 0.05, 0.4} <= seen


def test_api_keys_guard_rewards_activation_and_admin(serve, catalog_redis, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    served = serve(service_document(tmp_path, catalog_redis.url, service={"api_keys": [KEY]}))
    client = served.client()
    event_id = client.post("/v1/score", {"candidates": CANDIDATES_20}).json()["event_id"]  # score stays open
    for headers in ({}, {"Authorization": "Bearer wrong-key-0123456789"}, {"X-API-Key": KEY[:-1]},
                    {"Authorization": f"Basic {KEY}"}):  # fmt: skip
        response = client.post("/v1/reward", {"event_id": event_id, "reward": 1.0}, headers=headers)
        assert response.status == 401, headers
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert client.post(f"/v1/events/{event_id}/activate", headers=headers).status == 401
        assert client.get("/v1/admin/settings", headers=headers).status == 401
    assert client.post("/v1/reward", {"event_id": event_id, "reward": 1.0},
                       headers={"Authorization": f"Bearer {KEY}"}).status == 204  # fmt: skip
    assert client.post("/v1/reward", {"event_id": event_id, "reward": 1.0}, headers={"X-API-Key": KEY}).status == 204
    settings = client.get("/v1/admin/settings", headers={"X-API-Key": KEY})
    assert settings.status == 200 and KEY not in settings.body.decode()
    assert all(KEY not in record.getMessage() for record in caplog.records)


def test_score_can_require_a_key_too(serve, catalog_redis, tmp_path):
    served = serve(service_document(tmp_path, catalog_redis.url,
                                    service={"api_keys": [KEY], "protect_score": True}))  # fmt: skip
    client = served.client()
    assert client.post("/v1/score", {"candidates": CANDIDATES_20}).status == 401
    assert client.post("/v1/score", {"candidates": CANDIDATES_20}, headers={"X-API-Key": KEY}).status == 200
    assert client.get("/healthz").status == 200  # probes stay open


def test_duplicate_event_id_is_a_conflict_and_ids_are_kept(serve, catalog_redis, tmp_path):
    served = serve(service_document(tmp_path, catalog_redis.url))
    client = served.client()
    first = client.post("/v1/score", {"event_id": "order-17/page-3", "candidates": CANDIDATES_20})
    assert first.status == 200 and first.json()["event_id"] == "order-17/page-3"
    again = client.post("/v1/score", {"event_id": "order-17/page-3", "candidates": CANDIDATES_20})
    assert again.status == 409 and again.json() == {
        "error": "duplicate_event", "field": "event_id",
        "message": "event_id: a decision with event_id 'order-17/page-3' is already pending",
    }  # fmt: skip
    assert client.post("/v1/events/order-17/page-3/activate").status == 204  # ids with '/' work in the path


def test_operational_endpoints(serve, catalog_redis, tmp_path):
    served = serve(service_document(tmp_path, catalog_redis.url))
    client = served.client()
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status == 200 and ready.json()["ready"] is True
    event_id = client.post("/v1/score", {"candidates": CANDIDATES_20}).json()["event_id"]
    client.post("/v1/reward", {"event_id": event_id, "reward": 1.0})
    wait_for(lambda: events_in(served.config.join.event_log_dir).get(event_id))
    metrics = client.get("/metrics")
    assert metrics.status == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.body.decode()
    for name in (
        'recommender_request_seconds_bucket{endpoint="scoring.score"',
        'recommender_decisions_total{degraded="false"} 1.0',
        "recommender_policy_cpu_seconds_count 1.0",
        'recommender_rewards_total{outcome="accepted"} 1.0',
        "recommender_joined_events_total 1.0",
        "recommender_joined_rewarded_events_total 1.0",  # the join rate's numerator (docs/operations.md)
        "recommender_default_reward_slots_total 0.0",  # the default reward rate's
        'recommender_exploration_setting{algorithm="epsilon_greedy",name="epsilon"} 0.1',
        "recommender_model_info{version=",
    ):
        assert name in text, name
    document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) >= {"/v1/score", "/v1/reward", "/v1/events/{event_id}/activate", "/healthz",
                                      "/readyz", "/metrics", "/openapi.json"}  # fmt: skip
    assert document["components"]["schemas"]["ScoreRequest"]["properties"]["candidates"]["maxItems"] == 500


@pytest.mark.parametrize("slots", [2, 3])
def test_multi_slot_decisions(serve, catalog_redis, tmp_path, slots):
    served = serve(service_document(tmp_path, catalog_redis.url, policy={"mode": "ccb"}))
    client = served.client()
    body = client.post("/v1/score", {"candidates": CANDIDATES_20, "slots": slots}).json()
    assert [s["slot"] for s in body["slots"]] == list(range(slots))
    assert len({s["id"] for s in body["slots"]}) == slots
    assert body["slots"][0]["id"] == body["reward_action_id"]
    assert client.post("/v1/reward", {"event_id": body["event_id"], "reward": 1.0, "slot": slots - 1}).status == 204
    bad = client.post("/v1/reward", {"event_id": body["event_id"], "reward": 1.0, "slot": slots})
    assert bad.status == 400 and bad.json()["field"] == "slot"
    event = wait_for(lambda: events_in(served.config.join.event_log_dir).get(body["event_id"]))
    assert event.rewards[slots - 1] == 1.0 and event.reward_is_default == (True,) * (slots - 1) + (False,)
