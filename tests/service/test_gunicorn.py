"""``recommender serve`` for real: gunicorn with two worker processes sharing Redis (features and bus)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.redis_harness import free_port
from tests.service.conftest import CANDIDATES_20, Client, events_in, service_document, wait_for, write_config

KEY = "gunicorn-test-key-0123456789"


def test_serve_under_gunicorn_with_two_workers(catalog_redis, tmp_path):
    port = free_port()
    document = service_document(tmp_path, catalog_redis.url,
                                service={"port": port, "workers": 2, "threads": 2, "api_keys": [KEY]})  # fmt: skip
    config_path = tmp_path / "config.yaml"
    config = write_config(config_path, document)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "recommender.cli", "--config", str(config_path), "serve"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        client = Client(f"http://127.0.0.1:{port}", headers={"X-API-Key": KEY})

        def ready() -> bool:
            try:
                return client.get("/readyz").status == 200
            except OSError:
                return False

        wait_for(ready, timeout=30, interval=0.2)
        pids = set()
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
        pids = {line.split('pid="')[1].split('"')[0] for line in metrics.splitlines()
                if line.startswith("recommender_exploration_setting{")}  # fmt: skip
        assert len(pids) == 2
        assert "recommender_joined_events_total 40.0" in metrics  # from the separate joiner process
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    log = output.decode()
    assert process.returncode == 0, log
    assert "Booting worker" in log
    assert KEY not in log
