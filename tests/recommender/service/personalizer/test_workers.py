"""Multi-slot rewards by slot id across workers: ``recommender serve`` (gunicorn, two workers) on Redis, each
rank answered by one worker and its rewards sent to the other, and every reward finds its decision."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.recommender.served_app import (
    Client,
    events_in,
    service_document,
    start_serve,
    wait_for,
    wait_until_ready,
    write_config,
)
from tests.recommender.service.personalizer.conftest import KEY
from tests.redis_harness import free_port

HEADERS = {"Ocp-Apim-Subscription-Key": KEY}
ACTIONS = [{"id": name, "features": [{"topic": name}]} for name in ("news", "sports", "music", "film")]
SLOTS = [{"id": "Main", "baselineAction": "news"}, {"id": "Side", "baselineAction": "music"}]
EVENTS = 12


def _one_connection_per_worker(url: str) -> dict[str, Client]:
    """A keep-alive connection to each of the two workers (a connection stays with the worker that took it),
    told apart by the pid /readyz reports. Asked for up to 20 s: the service is ready once one worker answers,
    and until the other has built its app the first takes every connection."""
    by_pid: dict[str, Client] = {}
    spare: list[Client] = []  # held open meanwhile: a worker busy with open connections leaves new ones to the other
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            client = Client(url, headers=HEADERS)
            pid = str(client.get("/readyz").json()["checks"]["pid"])
            if pid in by_pid:
                spare.append(client)
                time.sleep(0.05)  # the other worker may still be starting: a few hundred spares at most
            else:
                by_pid[pid] = client
            if len(by_pid) == 2:
                return by_pid
    finally:
        for client in spare:
            client.close()
    raise AssertionError(f"for 20 s every connection reached the same worker(s): {sorted(by_pid)}")


def test_a_slot_reward_reaching_the_other_worker_finds_its_decision(catalog_redis, tmp_path: Path) -> None:
    port = free_port()
    document = service_document(tmp_path, catalog_redis.url, policy={"mode": "ccb"},
                                service={"port": port, "workers": 2, "threads": 2, "api_keys": [KEY]})  # fmt: skip
    config_path = tmp_path / "config.yaml"
    config = write_config(config_path, document)
    process = start_serve(config_path, tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(Client(url))
        first, second = _one_connection_per_worker(url).values()
        expected = {}
        for i in range(EVENTS):
            ranking, rewarding = (first, second) if i % 2 == 0 else (second, first)
            event_id = f"cross-{i}"
            body = {"actions": ACTIONS, "slots": SLOTS, "eventId": event_id}
            assert ranking.post("/personalizer/v1.1-preview.3/multislot/rank", body).status == 201
            rewards = {"reward": [{"slotId": "Side", "value": 0.25}, {"slotId": "Main", "value": 1.0}]}
            response = rewarding.post(f"/personalizer/v1.1-preview.3/multislot/events/{event_id}/reward", rewards)
            assert response.status == 204, response.body
            expected[event_id] = (1.0, 0.25)  # by position: Main is slot 0, Side slot 1
        missing = rewarding.post("/personalizer/v1.1-preview.3/multislot/events/never-ranked/reward",
                                 {"reward": [{"slotId": "Main", "value": 1.0}]})  # fmt: skip
        assert missing.status == 404 and "no pending multi-slot decision 'never-ranked'" in missing.json()["error"][
            "message"]  # fmt: skip
        events = wait_for(lambda: (e := events_in(config.join.event_log_dir)) and set(expected) <= set(e) and e,
                          timeout=30)  # fmt: skip
        for event_id, rewards in expected.items():
            assert events[event_id].rewards == rewards and events[event_id].reward_is_default == (False, False)
            assert events[event_id].decision.slot_names == ("Main", "Side")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
