"""The scoring service under load: gunicorn on loopback, features and the event bus in a real Redis.

For 20 and 200 candidates per request:

1. saturation: closed-loop clients (separate processes, keep-alive ``http.client``) send requests as fast
   as answers come back; the best throughput over a few client counts is the saturation throughput;
2. at 70% of it: the same clients pace themselves to 0.7 x saturation; p50/p99 latency (request sent to
   response read) and the achieved requests/s are measured;
3. CPU: the service's CPU time (gunicorn master, workers and joiner, from /proc) per request during step 2,
   against a bare ``Policy.decide`` on the same candidates and features in this process (warm item
   cache, like the service's). The service's figure includes everything a request costs it: HTTP,
   parsing, the Redis round trips, the decision, the bus write and the join into Parquet (the reward window
   is 1 s here so that joining happens during the measurement).

Clients run on the same 2 cores as the service, so saturation is a lower bound of what the service alone
would do. Bounded: every phase stops after its request budget or its time budget, whichever comes first.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TARGET_P99_MS = 5.0
TARGET_RATIO = 3.0


# ----- load generation (client processes) -----------------------------------------------------------------
def _bodies(n_candidates: int, count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    items = [f"item-{i:04d}" for i in range(1, 1001)]
    return [
        json.dumps({
            "user_id": f"user-{rng.randint(1, 10_000):05d}",
            "context": {"device": rng.choice(["mobile", "desktop", "app"]), "hour": rng.randint(0, 23)},
            "candidates": rng.sample(items, n_candidates),
        }).encode()
        for _ in range(count)
    ]  # fmt: skip


def _client(port: int, n_candidates: int, rate: float | None, max_requests: int, seconds: float, seed: int,
            out: Any) -> None:  # fmt: skip
    """One closed-loop client; with ``rate`` it sends at most that many requests per second."""
    bodies = _bodies(n_candidates, 256, seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    latencies = []
    errors = 0
    start = time.perf_counter()
    deadline = start + seconds
    next_send = start + random.Random(seed).random() / rate if rate else start
    for i in range(max_requests):
        if rate:
            now = time.perf_counter()
            if next_send > now:
                time.sleep(next_send - now)
            next_send += 1.0 / rate
        sent = time.perf_counter()
        if sent > deadline:
            break
        conn.request("POST", "/v1/score", body=bodies[i % len(bodies)], headers=headers)
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - sent)
        errors += response.status != 200
    conn.close()
    out.put((latencies, errors, time.perf_counter() - start))


def _load(port: int, n_candidates: int, clients: int, total_rate: float | None, max_requests: int,
          seconds: float) -> dict[str, Any]:  # fmt: skip
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    rate = total_rate / clients if total_rate else None
    processes = [
        context.Process(target=_client, args=(port, n_candidates, rate, max_requests // clients, seconds, 1000 + i,
                                              queue))  # fmt: skip
        for i in range(clients)
    ]
    for process in processes:
        process.start()
    results = [queue.get(timeout=seconds + 60) for _ in processes]
    for process in processes:
        process.join()
    latencies = sorted(x for r in results for x in r[0])
    elapsed = max(r[2] for r in results)
    return {
        "requests": len(latencies),
        "errors": sum(r[1] for r in results),
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


# ----- the service under test ---------------------------------------------------------------------------
def _cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def _service_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [master, *map(int, children)]


def _wait_ready(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the service did not become ready")


def _bare_decide_cpu(config: Any, n_candidates: int, iterations: int) -> float:
    """CPU seconds of one Policy.decide on the same kind of request, features read from Redis once."""
    from features import open_store
    from recommender.policy import Policy

    features = config.features
    policy = Policy.create(config.policy, features.groups[features.user_group], features.groups[features.item_group])
    store = open_store(features)
    requests = [json.loads(body) for body in _bodies(n_candidates, 64, 7)]
    prepared = []
    for request in requests:
        rows = store.read_user_items(request["user_id"], request["candidates"])
        prepared.append((request, rows))
    store.close()

    def decide(i: int) -> None:
        request, rows = prepared[i % len(prepared)]
        policy.decide(event_id=f"bench-{i}", user_id=request["user_id"], user_features=rows.user,
                      context=request["context"], candidate_ids=request["candidates"], candidate_features=rows.items)

    for i in range(len(prepared) * 3):  # warm the item cache like the service's
        decide(i)
    started = time.process_time()
    for i in range(iterations):
        decide(i)
    return (time.process_time() - started) / iterations


def run(quick: bool) -> str:
    sys.path.insert(0, str(ROOT))
    from features import open_store
    from features.sample_catalog import load_sample_catalog
    from recommender.config import DEFAULT_CONFIG_PATH, load_config
    from tests.redis_harness import RedisServer, free_port

    redis = RedisServer().start()
    workdir = Path(tempfile.mkdtemp(prefix="bench-service-"))
    port = free_port()
    document = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    document["features"].update(backend="redis", redis={**document["features"]["redis"], "url": redis.url})
    document["policy"]["model_dir"] = str(workdir / "models")
    document["service"].update(port=port, workers=2, threads=2)
    document["join"].update(event_log_dir=str(workdir / "events"), reward_wait_time=1.0, flush_seconds=1.0)
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(document))
    config = load_config(config_path)
    store = open_store(config.features)
    load_sample_catalog(store)
    store.close()

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = subprocess.Popen([sys.executable, "-m", "recommender.cli", "--config", str(config_path), "serve",
                               "--log-level", "warning"], env=env, cwd=workdir,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    rows = []
    try:
        _wait_ready(port)
        pids = _service_pids(server.pid)
        seconds = 3.0 if quick else 10.0
        budget = 20_000 if quick else 100_000
        for n_candidates in (20, 200):
            _load(port, n_candidates, 2, None, 400, 5.0)  # warm-up: item caches, connections
            saturation = max(
                (_load(port, n_candidates, clients, None, budget, seconds / 2) for clients in (2, 4, 6)),
                key=lambda r: r["rps"],
            )
            target = 0.7 * saturation["rps"]
            cpu_before = _cpu_seconds(pids)
            paced = _load(port, n_candidates, 4, target, budget, seconds)
            cpu_per_request = (_cpu_seconds(pids) - cpu_before) / paced["requests"]
            bare = _bare_decide_cpu(config, n_candidates, 300 if quick else 2000)
            rows.append((n_candidates, saturation, target, paced, cpu_per_request, bare))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        redis.stop()

    lines = [
        "## Scoring service (gunicorn, Redis, loopback)",
        "",
        f"2 gunicorn workers x 2 threads (gthread), features and event bus in one local redis-server, "
        f"{os.cpu_count()} cores shared with the load generator (4 client processes, keep-alive). Requests: a "
        "random user and context, candidates drawn from the 1,000-item sample catalog. Latency: request sent "
        "to response read, at 70% of the saturation throughput. CPU ratio: the service's CPU time per "
        "request (gunicorn master, workers and the joiner process; Redis not counted) / one bare "
        "`Policy.decide` on the same candidates and features.",
        "",
        "| candidates | saturation req/s | paced at req/s | achieved req/s | p50 ms | p99 ms | errors "
        "| service CPU/req ms | bare decide ms | ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for n, saturation, target, paced, cpu, bare in rows:
        ratio = cpu / bare
        lines.append(
            f"| {n} | {saturation['rps']:.0f} | {target:.0f} | {paced['rps']:.0f} | {paced['p50_ms']:.2f} | "
            f"{paced['p99_ms']:.2f} | {paced['errors']} | {cpu * 1000:.2f} | {bare * 1000:.2f} | {ratio:.1f} |"
        )
        if n == 200:
            verdicts.append(f"p99 at 200 candidates {paced['p99_ms']:.2f} ms (target <= {TARGET_P99_MS:g} ms): "
                            f"{'met' if paced['p99_ms'] <= TARGET_P99_MS else 'NOT met'}")  # fmt: skip
        verdicts.append(f"CPU ratio at {n} candidates {ratio:.1f} (target <= {TARGET_RATIO:g}): "
                        f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}")  # fmt: skip
    lines += ["", *[f"- {v}" for v in verdicts]]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
