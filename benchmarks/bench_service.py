"""The scoring service under load: gunicorn on loopback, features and the event bus in a real Redis.

For 20 and 200 candidates per request:

1. saturation: closed-loop clients (``benchmarks.http_load``: 2 processes x 4 keep-alive raw sockets) send
   requests as fast as answers come back; the throughput the service sustains with joining included
   (the median of a few runs) is the saturation throughput;
2. at 70% of it: clients schedule requests evenly at 0.7 x saturation, each sent on the first free
   connection; two latencies per request: the response time from its send (what a paced closed-loop
   client sees) and the latency from its scheduled time (open loop: a late
   answer that delays the next request is counted too, no coordinated omission); p50/p99 and the
   achieved requests/s are the medians of a few runs;
3. CPU: the service's CPU time (gunicorn master, workers and joiner, from /proc) per request during step 2,
   against a bare ``Policy.decide`` on the same requests' candidates and features in this process (warm
   item cache, like the service's, and a hot loop). The service's figure includes everything a request
   costs it: HTTP, parsing, the Redis round trips, the decision, the bus write and the join into Parquet
   (the reward window is 1 s here so that joining happens during the measurement). The service also
   reports the CPU its policy spent per decision (``recommender_policy_cpu_seconds``): the same work as
   the bare decide, in processes whose caches the rest of the machine keeps cold. The bare decide is also
   measured cold (``SWEEP_BYTES`` of other memory written before each decision) to show that range.

Latency is also measured at 30% and 50% of saturation (one run each): where a storefront's p99 budget is
met, if not at 70%.

The CPU of a trivial request (``GET /healthz``) in the same workers is measured too: the floor that HTTP
and the web framework put under every request, whatever the policy costs.

Clients run on the same 2 cores as the service, so saturation is a lower bound of what the service alone
would do. Bounded: every phase stops after its request budget or its time budget, whichever comes first.
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.http_load import build_request, run_load
from benchmarks.service_setup import ServiceOnRedis, cpu_seconds, get, wait_for_joiner
from features import open_store
from recommender.policy.policy import Policy
from recommender.settings.app import AppConfig
from recommender.settings.loading import DEFAULT_CONFIG_PATH, load_config

CLIENT_PROCESSES = 2
CONNECTIONS = 4  # per client process
REWARD_WAIT_SECONDS = 1.0
LIGHTER_LOADS = (0.3, 0.5)  # shares of saturation also measured (one run each)
SWEEP_BYTES = 16 * 2**20  # other memory written between the cold bare decisions
OVERLOAD = 1.3  # offered load of the overload runs, as a multiple of saturation (200 candidates)
# Per client process in the overload runs: a storefront fleet holds many connections, so that the backlog
# waits in the service's receive buffers (where the service can see it), not in the client's pool.
OVERLOAD_CONNECTIONS = 32


def score_bodies(n_candidates: int, count: int, seed: int) -> list[bytes]:
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


# ----- the service under test ---------------------------------------------------------------------------
def _metrics(port: int, *names: str) -> list[float]:
    """The values of unlabelled series ``names`` in ``/metrics`` (summed over the workers), 0 when absent."""
    text = get(port, "/metrics")[1].decode()
    return [float(m.group(1)) if (m := re.search(rf"^{name} (\S+)$", text, re.M)) else 0.0 for name in names]


def _policy_cpu(port: int) -> tuple[float, float]:
    """(sum of seconds, count) of ``recommender_policy_cpu_seconds`` over all workers."""
    total, count = _metrics(port, "recommender_policy_cpu_seconds_sum", "recommender_policy_cpu_seconds_count")
    return total, count


def _bare_decide_cpu(config: AppConfig, bodies: list[bytes], iterations: int, sweep_bytes: int = 0) -> float:
    """CPU seconds of one Policy.decide on the load's requests, features read from Redis once.

    ``sweep_bytes``: between decisions, write that much other memory (not timed), so that each decision
    starts with caches as cold as a busy machine leaves them."""
    policy = Policy.create(config.policy, config.user_group, config.item_group)
    store = open_store(config.features)
    requests = [json.loads(body) for body in bodies]
    prepared = [(request, store.read_user_items(request["user_id"], request["candidates"])) for request in requests]
    store.close()

    def decide(i: int) -> None:
        request, rows = prepared[i % len(prepared)]
        policy.decide(event_id=f"bench-{i}", user_id=request["user_id"], user_features=rows.user,
                      context=request["context"], candidate_ids=request["candidates"], candidate_features=rows.items)

    for i in range(len(prepared) * 2):  # warm the item cache like the service's
        decide(i)
    other = np.zeros(sweep_bytes // 8)
    total = 0.0
    for i in range(iterations):
        if sweep_bytes:
            other += 1.0
        started = time.thread_time()
        decide(i)
        total += time.thread_time() - started
    return total / iterations


def _measure(port: int, roles: dict[str, list[int]], requests: list[bytes], rate: float, seconds: float,
             budget: int) -> dict[str, Any]:  # fmt: skip
    """One open-loop run at ``rate`` with the service's CPU per request (ms) by process role."""
    wait_for_joiner(roles["joiner"], 1.0)
    before = {role: cpu_seconds(pids) for role, pids in roles.items()}
    policy_before = _policy_cpu(port)
    result = run_load(port, requests, processes=CLIENT_PROCESSES, connections=CONNECTIONS, rate=rate,
                      max_requests=budget, seconds=seconds)  # fmt: skip
    wait_for_joiner(roles["joiner"], 1.0)  # the joiner finishes this run's reward windows
    policy_after = _policy_cpu(port)
    for role, pids in roles.items():
        result[f"{role}_ms"] = 1000 * (cpu_seconds(pids) - before[role]) / result["requests"]
    result["service_ms"] = sum(result[f"{role}_ms"] for role in roles)
    result["policy_ms"] = 1000 * (policy_after[0] - policy_before[0]) / max(1.0, policy_after[1] - policy_before[1])
    return result


def _overload(port: int, roles: dict[str, list[int]], requests: list[bytes], rate: float, seconds: float,
              budget: int, config_path: Path, document: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """One open-loop run at ``rate`` (beyond saturation) over ``OVERLOAD_CONNECTIONS`` per client process,
    under ``document`` (written to the service's config file, which it reloads), with the share of
    decisions shed."""
    config_path.write_text(yaml.safe_dump(document))
    time.sleep(3.0)  # the workers check the file every second
    wait_for_joiner(roles["joiner"], 1.0)
    (shed_before,) = _metrics(port, "recommender_shed_decisions_total")
    result = run_load(port, requests, processes=CLIENT_PROCESSES, connections=OVERLOAD_CONNECTIONS, rate=rate,
                      max_requests=budget, seconds=seconds)  # fmt: skip
    result["offered"] = rate
    (shed_after,) = _metrics(port, "recommender_shed_decisions_total")
    result["shed"] = (shed_after - shed_before) / max(1, result["requests"])
    time.sleep(2.0)  # what the client left behind drains before the next run
    return result


def _overload_report(runs: dict[float, dict[str, Any]]) -> str:
    lines = [
        "",
        "",
        f"Overload: 200 candidates offered at {OVERLOAD:g}x saturation, open loop, over {CLIENT_PROCESSES} x "
        f"{OVERLOAD_CONNECTIONS} connections (one run each), with shedding off and at the default "
        "`service.queue_budget_ms`:",
        "",
        "| service.queue_budget_ms | offered req/s | served req/s | latency p50 / p99 ms | shed | errors |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for budget_ms, run in runs.items():
        lines.append(f"| {budget_ms:g} | {run['offered']:.0f} | {run['rps']:.0f} | {run['p50_ms']:.1f} / "
                     f"{run['p99_ms']:.1f} | {run['shed']:.0%} | {run['errors']:.0f} |")  # fmt: skip
    return "\n".join(lines)


def _saturation(port: int, roles: dict[str, list[int]], requests: list[bytes], seconds: float, budget: int,
                repeats: int, reward_wait: float) -> dict[str, Any]:  # fmt: skip
    """The throughput the service sustains, joining included: the median of ``repeats`` closed-loop runs
    over the same connections the paced runs use (``CONNECTIONS`` per client process; fewer would spare
    the workers' threads the contention the paced runs then meet).

    Under a closed loop the niced joiner falls behind and catches up afterwards, so a run's requests are
    divided by its duration plus the time the joiner then needed beyond the reward window; pacing at 70%
    of a rate that left joining for later would overload the service. The median, because the best
    single run of a noisy machine overstates the peak."""

    def closed() -> dict[str, Any]:
        wait_for_joiner(roles["joiner"], 1.0)
        before = {role: cpu_seconds(pids) for role, pids in roles.items()}
        result = run_load(port, requests, processes=CLIENT_PROCESSES, connections=CONNECTIONS, rate=None,
                          max_requests=budget, seconds=seconds)  # fmt: skip
        catch_up = max(0.0, wait_for_joiner(roles["joiner"], 1.0) - reward_wait)
        result["rps"] = result["requests"] / (result["requests"] / result["rps"] + catch_up)
        result["service_ms"] = 1000 * sum(cpu_seconds(pids) - before[role] for role, pids in roles.items()) / \
            result["requests"]
        return result

    return _median_run([closed() for _ in range(repeats)])


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def run(quick: bool) -> str:
    # Shedding off (queue_budget_ms 0): the figures are those of the model's decisions; the overload runs
    # turn it on.
    default_budget_ms = load_config(DEFAULT_CONFIG_PATH).service.queue_budget_ms
    service = ServiceOnRedis({"service": {"queue_budget_ms": 0},
                              "join": {"reward_wait_time": REWARD_WAIT_SECONDS, "flush_seconds": 1.0}},
                             workdir=Path(tempfile.mkdtemp(prefix="bench-service-")), keep_logs=False)  # fmt: skip
    rows = []
    seconds = 3.0 if quick else 10.0
    repeats = 1 if quick else 3
    budget = 20_000 if quick else 100_000
    try:
        service.start()
        port, config, document, config_path = service.port, service.config, service.document, service.config_path
        assert config is not None
        roles = service.roles()
        health = [b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"]
        before = cpu_seconds(roles["workers"])
        floor = run_load(port, health, processes=CLIENT_PROCESSES, connections=2, rate=None, max_requests=budget,
                         seconds=seconds / 2)  # fmt: skip
        floor_ms = 1000 * (cpu_seconds(roles["workers"]) - before) / floor["requests"]
        for n_candidates in (20, 200):
            bodies = score_bodies(n_candidates, 256, n_candidates)
            requests = [build_request("/v1/score", body) for body in bodies]
            run_load(port, requests, processes=CLIENT_PROCESSES, connections=2, rate=None, max_requests=2_000,
                     seconds=5.0)  # warm-up: item caches, connections  # fmt: skip
            saturation = _saturation(port, roles, requests, seconds, budget, repeats, REWARD_WAIT_SECONDS)
            target = 0.7 * saturation["rps"]
            paced = _median_run([_measure(port, roles, requests, target, seconds, budget) for _ in range(repeats)])
            lighter = {share: _measure(port, roles, requests, share * saturation["rps"], seconds, budget)
                       for share in LIGHTER_LOADS}  # fmt: skip
            bare = _bare_decide_cpu(config, bodies, 300 if quick else 2000)
            cold = _bare_decide_cpu(config, bodies, 100 if quick else 500, sweep_bytes=SWEEP_BYTES)
            rows.append((n_candidates, saturation, target, paced, (bare, cold), lighter))
            if n_candidates == 200:
                overload_requests, overload_rate = requests, OVERLOAD * saturation["rps"]
        overload = {
            budget_ms: _overload(port, roles, overload_requests, overload_rate, seconds, budget, config_path,
                                 {**document, "service": {**document["service"], "queue_budget_ms": budget_ms}})
            for budget_ms in (0, default_budget_ms)
        }  # fmt: skip
    finally:
        service.stop()
    return _report(rows, floor_ms, floor["rps"], repeats) + _overload_report(overload)


def _report(rows: list[tuple], floor_ms: float, floor_rps: float, repeats: int) -> str:
    lines = [
        "## Scoring service (gunicorn, Redis, loopback)",
        "",
        f"2 gunicorn workers x 2 threads (`InlineWorker`), features and event bus in one local redis-server, "
        f"{os.cpu_count()} cores shared with the load generator ({CLIENT_PROCESSES} client processes x "
        f"{CONNECTIONS} raw keep-alive sockets). Requests: a random user and context, candidates drawn from "
        "the 1,000-item sample catalog; no shedding (`service.queue_budget_ms` 0) except in the overload "
        "runs at the end. Saturation: closed loop, joining included (median of "
        f"{repeats} runs). At 70% of it (median of {repeats} runs), requests are scheduled evenly and sent on "
        "the first free connection: *response time* runs from the send (a paced closed-loop client's view), "
        "*latency* from the scheduled time (open loop, no coordinated omission). Service CPU: gunicorn "
        "master, workers and the joiner process, per request (Redis not counted), at 70% and at saturation. "
        "Policy in service: the CPU the workers' policy spent per decision. Bare decide: one "
        "`Policy.decide` on the same requests in a hot loop (the ratio is against it), and cold: "
        f"after {SWEEP_BYTES >> 20} MB of other memory written between decisions, as a busy machine leaves "
        "the caches. Inside the service the policy usually costs more than either: the other processes on the "
        "cores compete for the caches and memory bandwidth it needs; the last column compares the request "
        "with the policy measured there.",
        "",
        "| candidates | saturation req/s | at 70%: req/s | response time p50 / p99 ms | latency p50 / p99 ms "
        "| errors | service CPU/req ms (workers + joiner) | at saturation | policy in service ms "
        "| bare decide ms (hot / cold) | ratio | ratio to policy in service |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, saturation, _, paced, (bare, cold), _ in rows:
        ratio = paced["service_ms"] / (bare * 1000)
        lines.append(
            f"| {n} | {saturation['rps']:.0f} | {paced['rps']:.0f} | {paced['p50_sent_ms']:.2f} / "
            f"{paced['p99_sent_ms']:.2f} | {paced['p50_ms']:.2f} / {paced['p99_ms']:.2f} | {paced['errors']:.0f} "
            f"| {paced['service_ms']:.2f} ({paced['workers_ms']:.2f} + {paced['joiner_ms']:.2f}) "
            f"| {saturation['service_ms']:.2f} | {paced['policy_ms']:.2f} | {bare * 1000:.2f} / {cold * 1000:.2f} "
            f"| {ratio:.1f} "
            f"| {paced['service_ms'] / paced['policy_ms']:.1f} |"
        )
    lines += [
        "",
        "Lighter loads (one run each, same method):",
        "",
        "| candidates | share of saturation | req/s | response time p50 / p99 ms | latency p50 / p99 ms |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n, _, _, paced, _, lighter in rows:
        for share, run in [*sorted(lighter.items()), (0.7, paced)]:
            lines.append(f"| {n} | {share:.0%} | {run['rps']:.0f} | {run['p50_sent_ms']:.2f} / "
                         f"{run['p99_sent_ms']:.2f} | {run['p50_ms']:.2f} / {run['p99_ms']:.2f} |")  # fmt: skip
    lines += [
        "",
        f"Floor: a trivial request (`GET /healthz`, closed loop, {floor_rps:.0f} req/s) costs the workers "
        f"{floor_ms:.2f} ms CPU: HTTP parsing, gunicorn and Flask, before any work.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
