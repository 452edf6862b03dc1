"""/metrics for ops: the current model version only, counters rather than lifetime rates, process metrics
of every process under gunicorn, and the joiner supervisor logging in the project's format."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

from recommender.logs import LOG_FORMAT
from recommender.policy.model_store import open_model_store
from recommender.policy.policy import Policy
from tests.recommender.sample_events import default_schema_events
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

MODEL_INFO = re.compile(r'^recommender_model_info\{(?P<labels>[^}]*)\} (?P<value>\S+)$', re.M)


def publish_versions(config, n: int) -> list[str]:
    """Publish ``n`` new model versions (each learned a little more) and return their ids."""
    store = open_model_store(config)
    policy = Policy.create(config.policy, config.user_group, config.item_group)
    ids = []
    for i in range(n):
        policy.learn(default_schema_events(30, seed=100 + i))
        ids.append(store.publish(policy).id)
    return ids


def model_info(client: Client) -> list[tuple[str, str]]:
    return [(m["labels"], m["value"]) for m in MODEL_INFO.finditer(client.get("/metrics").body.decode())]


def test_model_info_shows_the_current_version_only_and_rates_are_left_to_prometheus(serve, catalog_redis,
                                                                                    tmp_path):  # fmt: skip
    served = serve(service_document(tmp_path, catalog_redis.url))
    client = served.client()
    ids = []
    for _ in range(3):
        ids += publish_versions(served.config, 1)
        latest = ids[-1]
        wait_for(lambda v=latest: client.post("/v1/score", {"candidates": CANDIDATES_20}).json()["model_version"] == v)
    assert model_info(client) == [(f'version="{ids[-1]}"', "1.0")]

    event_id = client.post("/v1/score", {"candidates": CANDIDATES_20}).json()["event_id"]
    client.post("/v1/reward", {"event_id": event_id, "reward": 1.0})
    wait_for(lambda: events_in(served.config.join.event_log_dir).get(event_id))
    text = client.get("/metrics").body.decode()
    # The share of joined decisions rewarded is rate(rewarded) / rate(joined) in Prometheus, over the window
    # asked for; a gauge computed in the process would average over its whole life.
    assert "recommender_joined_rewarded_events_total 1.0" in text
    joined = re.search(r"^recommender_joined_events_total (\S+)$", text, re.M)
    assert joined and float(joined.group(1)) >= 1
    assert "recommender_join_rate" not in text and "recommender_default_reward_rate" not in text
    assert re.search(r"^process_resident_memory_bytes \d", text, re.M)  # this process's, single-process mode


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def joiner_pid(serve_pid: int) -> int | None:
    for pid in children(serve_pid):
        try:
            if b"join" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                return pid
        except OSError:
            continue
    return None


def test_under_gunicorn_metrics_cover_every_process_and_the_current_model_only(catalog_redis, tmp_path):
    port = free_port()
    document = service_document(tmp_path, catalog_redis.url, service={"port": port, "workers": 2, "threads": 2})
    config_path = tmp_path / "config.yaml"
    config = write_config(config_path, document)
    process = start_serve(config_path, tmp_path)
    try:
        client = Client(f"http://127.0.0.1:{port}")
        wait_until_ready(client)
        ids = publish_versions(config, 3)
        time.sleep(0.3)
        ids += publish_versions(config, 1)

        def swapped() -> list[tuple[str, str]] | None:
            info = model_info(client)
            return info if len({labels.split('pid="')[1] for labels, _ in info}) == 2 and all(
                f'version="{ids[-1]}"' in labels for labels, _ in info) else None  # fmt: skip

        info = wait_for(swapped, timeout=15)
        assert len(info) == 2 and all(value == "1.0" for _, value in info), info  # one series per worker

        joiner = wait_for(lambda: joiner_pid(process.pid), timeout=10)
        text = client.get("/metrics").body.decode()
        rss = dict(re.findall(r'^process_resident_memory_bytes\{pid="(\d+)"\} (\S+)$', text, re.M))
        workers = set(children(process.pid)) - {joiner}
        assert {str(pid) for pid in workers | {joiner, process.pid}} <= set(rss), (rss, workers, joiner)
        assert all(float(value) > 10e6 for value in rss.values())
        for name in ("process_cpu_seconds_total", "process_open_fds", "process_max_fds", "process_start_time_seconds"):
            assert re.search(rf'^{name}\{{pid="{joiner}"\}} ', text, re.M), name

        os.kill(joiner, signal.SIGKILL)  # the supervisor restarts it, and says so in the log
        wait_for(lambda: (pid := joiner_pid(process.pid)) is not None and pid != joiner, timeout=15)
        text = wait_for(lambda: (t := client.get("/metrics").body.decode()) and f'pid="{joiner}"' not in t and t)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    log = output.decode()
    restart = next(line for line in log.splitlines() if "joiner process" in line and "exited" in line)
    # LOG_FORMAT: "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"
    assert LOG_FORMAT.startswith("%(asctime)s [%(process)d] %(levelname)s %(name)s: ")
    assert re.fullmatch(
        rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d{{3}} \[{process.pid}\] ERROR "
        rf"recommender\.service\.gunicorn\.supervisor: the joiner process {joiner} exited after \d+ s; "
        r"restarting it in 1 s",
        restart), restart  # fmt: skip
