"""The comparison benchmarks' parts, short: the afternoon build and the floor answer like the service and log
their decisions; the wrk driver (and its Python fallback) loads them and our service without an error and
parses wrk's figures; our app runs under a stock WSGI server from its module-level application."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from benchmarks.afternoon_app import load_lines
from benchmarks.service_setup import ServiceOnRedis
from benchmarks.wrk_load import N_ITEMS, ensure_wrk, parse_result, run_python, run_wrk
from benchmarks.wsgi_servers import ServedProcesses, gunicorn_command, server_commands
from tests.redis_harness import RedisServer, free_port

CANDIDATES = [f"item-{i:04d}" for i in (3, 77, 512, 999, 1000)]


def post_score(port: int, body: dict) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/v1/score", json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


@pytest.fixture
def wrk() -> str:
    found = ensure_wrk()
    assert found is not None, "wrk is neither installed nor installable (apt-get install wrk)"
    return found


@pytest.fixture
def baselines(redis_server: RedisServer, unique_prefix: str, tmp_path: Path) -> Iterator[dict[str, int]]:
    """The afternoon build and the floor on the session's redis-server, under a fresh key prefix: name -> port."""
    client = redis.Redis.from_url(redis_server.url)
    assert load_lines(client, unique_prefix) == 10_000 + N_ITEMS
    groups = {}
    try:
        for name in ("afternoon", "floor"):
            port = free_port()
            env = {"AFTERNOON_REDIS_URL": redis_server.url, "AFTERNOON_PREFIX": unique_prefix}
            groups[name] = ServedProcesses(name, [gunicorn_command(f"benchmarks.{name}_app:create_app()", port)],
                                           port, tmp_path, env=env).start()  # fmt: skip
        yield {name: group.port for name, group in groups.items()}
    finally:
        for group in groups.values():
            group.stop()
        client.delete(*client.keys(f"{unique_prefix}:*"))


def test_the_afternoon_build_and_the_floor_answer_like_the_service_and_log_each_decision(baselines, redis_server,
                                                                                        unique_prefix):  # fmt: skip
    client = redis.Redis.from_url(redis_server.url)
    for name, port in baselines.items():
        event_id = f"{name}-1"
        status, body = post_score(port, {"event_id": event_id, "user_id": "user-00042", "candidates": CANDIDATES,
                                         "context": {"device": "mobile", "hour": 13}})  # fmt: skip
        assert status == 200, (name, body)
        assert body["event_id"] == event_id
        ranking = body["ranking"]
        assert sorted(entry["id"] for entry in ranking) == sorted(CANDIDATES)
        assert ranking[0]["id"] == body["reward_action_id"]
        assert sum(entry["probability"] for entry in ranking) == pytest.approx(1.0, abs=1e-5)
        # epsilon 0.1 over 5 candidates: every one has at least 0.1 / 5
        assert min(entry["probability"] for entry in ranking) >= 0.02 - 1e-6
        entries = client.xrange(f"{unique_prefix}:decisions")
        logged = [fields for _, fields in entries if fields[b"event_id"] == event_id.encode()]
        assert len(logged) == 1, name
        record = logged[0]
        assert json.loads(record[b"candidates"]) == CANDIDATES
        assert len(json.loads(record[b"pmf"])) == len(CANDIDATES)
        assert record[b"chosen"].decode() == body["reward_action_id"] and record[b"user"] == b"user-00042"


def test_wrk_and_the_python_fallback_load_the_afternoon_build_without_errors(baselines, wrk):
    result = run_wrk(wrk, baselines["afternoon"], 20, 2, 1.0)
    assert result["tool"] == "wrk" and result["errors"] == 0, result
    assert result["requests"] > 20 and result["rps"] > 0, result
    assert 0 < result["p50_ms"] <= result["p99_ms"], result
    fallback = run_python(baselines["floor"], 20, 2, 1.0)
    assert fallback["errors"] == 0 and fallback["requests"] > 20, fallback
    assert 0 < fallback["p50_ms"] <= fallback["p99_ms"], fallback


@pytest.mark.slow
def test_wrk_loads_our_service_with_fresh_event_ids_and_our_app_runs_under_stock_gunicorn(wrk, tmp_path):
    service = ServiceOnRedis(workdir=tmp_path, keep_logs=False)
    try:
        service.start()
        # Every request a new event id: a repeated one would be refused (409) and counted as an error.
        result = run_wrk(wrk, service.port, 200, 2, 1.0)
        assert result["errors"] == 0 and result["requests"] > 5, result
        assert 0 < result["p50_ms"] <= result["p99_ms"], result
        port = free_port()
        stock = ServedProcesses("gthread", server_commands("gthread", port), port, tmp_path,
                                env={"BENCH_SERVICE_CONFIG": str(service.config_path)})  # fmt: skip
        try:
            stock.start()
            status, body = post_score(port, {"user_id": "user-00042", "candidates": CANDIDATES})
            assert status == 200 and body["reward_action_id"] in CANDIDATES, body
        finally:
            stock.stop()
    finally:
        service.stop()


def test_the_done_hook_line_is_parsed_and_its_absence_is_an_error():
    result = parse_result("Running 1s test\nWRK_RESULT 500 2000000 0 1 0 2 0 1500.0 9000.5 2100.0\n")
    assert result == {"tool": "wrk", "requests": 500, "errors": 3, "rps": 250.0, "p50_ms": 1.5, "p99_ms": 9.0005,
                      "mean_ms": 2.1}  # fmt: skip
    with pytest.raises(ValueError, match="WRK_RESULT"):
        parse_result("Running 1s test\n  0 requests in 1.00s\n")
