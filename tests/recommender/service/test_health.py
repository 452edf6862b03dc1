"""Health that tells the truth: a missing catalog is detected and said (degraded decisions, a reason, a
metric, one log line), and readiness ("can serve") stays apart from full health, the same from every worker."""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Iterator

import pytest

from features import open_store
from features.sample_catalog import load_sample_catalog
from tests.recommender.served_app import (
    CANDIDATES_20,
    Client,
    service_document,
    start_serve,
    wait_for,
    wait_until_ready,
    write_config,
)
from tests.redis_harness import RedisServer, free_port

BODY = {"user_id": "user-00042", "context": {"device": "mobile"}, "candidates": CANDIDATES_20}


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own (no persistence: a restart comes back empty)."""
    server = RedisServer().start()
    yield server
    server.stop()


def load_catalog(config) -> None:
    features = config.features
    store = open_store(features.model_copy(update={"redis": features.redis.model_copy(update={"timeout_ms": 5000})}))
    load_sample_catalog(store, n_users=100)
    store.close()


def unloaded_reads(client: Client) -> float:
    metrics = client.get("/metrics").body.decode()
    found = re.search(r'^recommender_unloaded_feature_reads_total\{group="items"\} (\S+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0


def test_redis_restarted_empty_degrades_decisions_and_says_why(serve, private_redis, tmp_path, caplog):
    served = serve(service_document(tmp_path, private_redis.url))
    load_catalog(served.config)
    client = served.client()
    assert client.post("/v1/score", BODY).json()["degraded"] is False
    assert client.get("/healthz/full").status == 200

    caplog.set_level(logging.WARNING, logger="features.store")
    private_redis.restart()  # same port, no data: the catalog is gone
    wait_for(lambda: client.get("/readyz").json()["checks"]["feature_store"] == "not loaded", timeout=10)
    decisions = [client.post("/v1/score", BODY) for _ in range(10)]
    assert all(r.status == 200 and r.json()["degraded"] is True for r in decisions)
    ready = client.get("/readyz")
    assert ready.status == 200 and ready.json()["ready"] is True and ready.json()["healthy"] is False
    assert ready.json()["checks"]["feature_store"] == "not loaded"
    assert any("'items'" in r and "no live version" in r for r in ready.json()["reasons"]), ready.json()
    assert client.get("/healthz/full").status == 503
    assert unloaded_reads(client) >= 10
    said = [r.getMessage() for r in caplog.records if "no live version" in r.getMessage()]
    assert len([m for m in said if "'items'" in m]) == 1, said  # once, not once per request

    load_catalog(served.config)
    wait_for(lambda: client.post("/v1/score", BODY).json()["degraded"] is False, timeout=10)
    assert client.get("/healthz/full").status == 200 and client.get("/readyz").json()["healthy"] is True


def verdicts(port: int, n: int = 24, workers: int = 2) -> tuple[set[tuple], set[int]]:
    """(status, ready, healthy, reasons) of /readyz asked at least ``n`` times on fresh connections (until
    ``workers`` pids have answered, for at most 20 s: a worker still building its app, or waiting out a Redis
    timeout, leaves the other to take every connection meanwhile); the pids that answered."""
    answers, pids = set(), set()
    deadline = time.monotonic() + 20
    for i in itertools.count():
        if i >= n and (len(pids) >= workers or time.monotonic() > deadline):
            break
        client = Client(f"http://127.0.0.1:{port}")
        response = client.get("/readyz")
        client.close()
        body = response.json()
        answers.add((response.status, body["ready"], body["healthy"], tuple(body["reasons"])))
        pids.add(body["checks"]["pid"])
    return answers, pids


def test_readiness_holds_while_scoring_works_degraded_and_every_worker_says_the_same(private_redis, tmp_path):
    port = free_port()
    document = service_document(tmp_path, private_redis.url, service={"port": port, "workers": 2, "threads": 2},
                                features={"redis": {"timeout_ms": 100}})  # fmt: skip
    config_path = tmp_path / "config.yaml"
    config = write_config(config_path, document)
    load_catalog(config)
    process = start_serve(config_path, tmp_path)
    try:
        wait_until_ready(Client(f"http://127.0.0.1:{port}"))
        answers, pids = verdicts(port)
        assert answers == {(200, True, True, ())} and len(pids) == 2

        private_redis.stop()
        answers, pids = verdicts(port)
        assert len(pids) == 2, pids  # both workers answered ...
        assert len(answers) == 1, answers  # ... the same
        ((status, ready, healthy, reasons),) = answers
        assert status == 200 and ready is True and healthy is False
        assert [r.split(":")[0] for r in reasons] == ["feature_store unreachable", "event_bus unreachable"], reasons
        client = Client(f"http://127.0.0.1:{port}")
        scored = client.post("/v1/score", BODY)
        assert scored.status == 200 and scored.json()["degraded"] is True

        private_redis.start()  # back, but empty
        answers, pids = verdicts(port)
        assert len(pids) == 2 and len(answers) == 1, answers
        ((status, ready, healthy, reasons),) = answers
        assert status == 200 and ready is True and healthy is False
        assert reasons == ("feature groups 'users', 'items' have no live version (not loaded): their features are "
                           "the defaults",)  # fmt: skip
        assert Client(f"http://127.0.0.1:{port}").post("/v1/score", BODY).json()["degraded"] is True
    finally:
        process.terminate()
        process.communicate(timeout=30)
