"""``recommender serve`` for real: gunicorn with two worker processes sharing Redis (features and bus)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from recommender.policy.model_store import ModelStore
from tests.recommender.served_app import (
    CANDIDATES_20,
    Client,
    deep_update,
    events_in,
    serve_ready,
    service_document,
    start_serve,
    wait_for,
    wait_until_ready,
    write_config,
)
from tests.redis_harness import free_port

KEY = "gunicorn-test-key-0123456789"


def worker_pids(client: Client) -> set[str]:
    """The workers' pids, from the per-worker gauges of /metrics."""
    metrics = client.get("/metrics").body.decode()
    return {line.split('pid="')[1].split('"')[0] for line in metrics.splitlines()
            if line.startswith("recommender_exploration_setting{")}  # fmt: skip


def test_serve_under_gunicorn_with_two_workers(catalog_redis, tmp_path):
    port = free_port()
    document = service_document(tmp_path, catalog_redis.url,
                                service={"port": port, "workers": 2, "threads": 2, "api_keys": [KEY]})  # fmt: skip
    config_path = tmp_path / "config.yaml"
    config = write_config(config_path, document)
    process = start_serve(config_path, tmp_path)
    try:
        client = Client(f"http://127.0.0.1:{port}", headers={"X-API-Key": KEY})
        wait_until_ready(client)
        event_ids = []
        for i in range(40):
            # A fresh connection each time, so that both workers get requests.
            fresh = Client(client_url := f"http://127.0.0.1:{port}", headers={"X-API-Key": KEY})
            body = fresh.post("/v1/score", {"user_id": f"user-{i + 1:05d}", "candidates": CANDIDATES_20}).json()
            event_ids.append(body["event_id"])
            fresh.close()
        # Rewards go to whichever worker; the decision lives in Redis, so any worker can take them.
        for event_id in event_ids:
            assert Client(client_url, headers={"X-API-Key": KEY}).post(
                "/v1/reward", {"event_id": event_id, "reward": 1.0}).status == 204  # fmt: skip
        events = wait_for(lambda: (e := events_in(config.join.event_log_dir)) and set(event_ids) <= set(e) and e,
                          timeout=15)  # fmt: skip
        assert all(events[event_id].rewards == (1.0,) for event_id in event_ids)
        assert len(events) == len(event_ids)  # each joined exactly once, by one of the workers' joiners

        metrics = client.get("/metrics").body.decode()
        # Counters are summed over both workers (multiprocess mode).
        assert 'recommender_decisions_total{degraded="false"} 40.0' in metrics
        assert len(worker_pids(client)) == 2
        assert "recommender_joined_events_total 40.0" in metrics  # from the separate joiner process
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    log = output.decode()
    assert process.returncode == 0, log
    assert "Booting worker" in log
    assert KEY not in log


def shed_count(client: Client) -> float:
    metrics = client.get("/metrics").body.decode()
    line = next(line for line in metrics.splitlines() if line.startswith("recommender_shed_decisions_total"))
    return float(line.split()[-1])


def score_while_the_worker_is_stopped(client: Client, worker_pid: int, body: dict, seconds: float) -> dict:
    """Send a score request on the client's kept-alive connection while its worker is stopped for
    ``seconds``: to the request, the worker was busy that long."""
    answers = []
    os.kill(worker_pid, signal.SIGSTOP)
    try:
        sender = threading.Thread(target=lambda: answers.append(client.post("/v1/score", body)))
        sender.start()
        time.sleep(seconds)
    finally:
        os.kill(worker_pid, signal.SIGCONT)
    sender.join(timeout=30)
    assert answers and answers[0].status == 200, answers
    return answers[0].json()


def test_a_request_that_waited_too_long_for_its_worker_gets_no_model_decision(catalog_redis, tmp_path):
    port = free_port()
    document = service_document(tmp_path, catalog_redis.url,
                                service={"port": port, "workers": 1, "threads": 1, "queue_budget_ms": 200})  # fmt: skip
    config_path = tmp_path / "config.yaml"
    write_config(config_path, document)
    process = start_serve(config_path, tmp_path)
    try:
        client = Client(f"http://127.0.0.1:{port}")
        wait_until_ready(client)
        (pid,) = worker_pids(client)
        request = {"user_id": "user-00001", "candidates": CANDIDATES_20}
        served = client.post("/v1/score", request).json()
        assert not served["degraded"] and served["model_version"] != "uniform"

        shed = score_while_the_worker_is_stopped(client, int(pid), request, 0.6)
        assert shed["degraded"] is True
        assert shed["model_version"] == "uniform" and shed["policy"] == {"exploration": "uniform"}
        assert sorted(item["id"] for item in shed["ranking"]) == sorted(CANDIDATES_20)
        assert all(item["probability"] == pytest.approx(1 / 20) for item in shed["ranking"])
        metrics = client.get("/metrics").body.decode()
        assert "recommender_shed_decisions_total 1.0" in metrics
        assert "recommender_request_queue_seconds_bucket{le=\"1.0\"}" in metrics
        waits = next(line for line in metrics.splitlines() if line.startswith("recommender_request_queue_seconds_c"))
        assert float(waits.split()[-1]) >= 2  # the kept-alive connection's requests (its first was the pool's)

        # Apprentice mode keeps serving the baseline when it sheds (without asking the model for agreement).
        write_config(config_path, deep_update(document, {"trainer": {"mode": "apprentice"}}))
        wait_for(lambda: client.post("/v1/score", request).json()["model_version"] == "baseline", timeout=10)
        shed = score_while_the_worker_is_stopped(client, int(pid), request, 0.6)
        assert shed["degraded"] is True and shed["model_version"] == "baseline"
        assert [item["id"] for item in shed["ranking"]] == CANDIDATES_20

        # Ops can turn shedding off while the service runs.
        write_config(config_path, deep_update(document, {"service": {"queue_budget_ms": 0}}))
        wait_for(lambda: client.get("/v1/admin/settings").json()["service"]["queue_budget_ms"] == 0, timeout=10)
        shed_so_far = shed_count(client)
        waited = score_while_the_worker_is_stopped(client, int(pid), request, 0.6)
        assert waited["degraded"] is False and waited["model_version"] == "baseline"
        assert shed_count(client) == shed_so_far
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output.decode()


def _stop_embedded(tmp_path, stop) -> None:
    """``make run``'s setup: one worker, in-process store and bus, and the trainer as a process beside it. One
    decision rewarded in a ten-minute window, then ``stop(process)``: the worker's exit hook closes the open
    window early and writes the event, and only then is the trainer stopped, which learns it and publishes."""
    served = serve_ready(tmp_path, service_document(tmp_path, None, service={"port": free_port()},
                                                    join={"reward_wait_time": 600}))  # fmt: skip
    config, config_path, process, client = served.config, served.config_path, served.process, served.client
    try:
        checks = client.get("/readyz").json()["checks"]
        assert checks["trainer"] == "separate process" and checks["joiner"] == "running", checks
        event_id = client.post("/v1/score", {"user_id": "user-00001", "candidates": CANDIDATES_20}).json()["event_id"]
        assert client.post("/v1/reward", {"event_id": event_id, "reward": 1.0}).status == 204
        assert events_in(config.join.event_log_dir) == {}  # its window is open for ten minutes
    finally:
        stop(process)
        output, _ = process.communicate(timeout=60)
    log = output.decode()
    assert process.returncode == 0, log
    events = events_in(config.join.event_log_dir)
    assert set(events) == {event_id} and events[event_id].rewards == (1.0,), log
    assert "published model version" in log, log
    store = ModelStore(config.policy.model_dir)
    assert store.version(store.current_version()).event_range.count == 1, log  # the trainer learned the event
    assert _trainer_processes(config_path) == [], log


def _trainer_processes(config_path) -> list[int]:
    """Pids of live ``recommender ... train`` processes started on ``config_path``."""
    pattern = f"recommender.cli.main --config {config_path} train"
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def test_stopping_the_embedded_service_joins_its_open_decisions_and_the_trainer_learns_them(tmp_path):
    _stop_embedded(tmp_path, lambda process: process.send_signal(signal.SIGTERM))


def test_ctrl_c_stops_the_worker_before_the_trainer(tmp_path):
    """A terminal's Ctrl-C sends SIGINT to the whole foreground process group: the trainer, in a session of its
    own, must not stop before the worker has written its last events (it would publish without them)."""
    _stop_embedded(tmp_path, lambda process: os.killpg(process.pid, signal.SIGINT))


def test_the_settings_endpoint_shows_what_the_trainer_process_published(tmp_path):
    """The trainer process is not the worker's to inspect: /v1/admin/settings reports it through the model
    store (the version it published last, its events and their newest decision time)."""
    served = serve_ready(tmp_path, service_document(tmp_path, None, service={"port": free_port()},
                                                    join={"reward_wait_time": 1},
                                                    trainer={"model_update_interval": 1, "poll_seconds": 0.2}))
    config, process, client = served.config, served.process, served.client
    try:
        assert client.get("/v1/admin/settings").json()["learning"]["trainer"] == {
            "in_process": False, "error": None, "published": None}  # fmt: skip
        event_id = client.post("/v1/score", {"user_id": "user-00001", "candidates": CANDIDATES_20}).json()["event_id"]
        assert client.post("/v1/reward", {"event_id": event_id, "reward": 1.0}).status == 204
        store = ModelStore(config.policy.model_dir)
        wait_for(lambda: store.current_version() is not None, timeout=20)
        version = store.version(store.current_version())
        published = client.get("/v1/admin/settings").json()["learning"]["trainer"]["published"]
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert published == {"version": version.id, "published_at": version.created_at.isoformat(), "events_learned": 1,
                         "newest_event_at": version.event_range.last_timestamp.isoformat()}  # fmt: skip


def test_the_trainer_process_exits_when_the_service_is_killed(tmp_path):
    """Killed with SIGKILL, the master cannot stop its trainer: the trainer notices and exits by itself."""
    served = serve_ready(tmp_path, service_document(tmp_path, None, service={"port": free_port()}))
    config_path, process = served.config_path, served.process
    try:
        wait_for(lambda: _trainer_processes(config_path), timeout=10)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the master and its worker (the trainer is in its own session)
        process.communicate(timeout=30)
    wait_for(lambda: not _trainer_processes(config_path), timeout=10)
