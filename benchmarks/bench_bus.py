"""The Redis event bus alone: decisions/s put (with one reward each) and joined, on 1 and 2 shards, on one
redis-server and on a 3-node Redis Cluster (redis-py's cluster client), at 20 and 200 candidates.

One process plays a serving worker (``put_decision`` then ``add_reward`` per decision, one thread: one worker
core's share of the bus work) and then a joiner (``Joiner.run_once`` over the same decisions once their windows
have closed: close, Parquet write, commit). Besides wall-clock rates, it reads the CPU each side spent:
``time.process_time`` of this process, and each Redis node's own (``INFO cpu``), so that the figures say what
one worker core, one joiner and one shard (a Redis process, single-threaded) can carry. Repetitions alternate
the set-ups, so that the machine's noise falls on all of them; medians over repetitions.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

import redis
from redis.cluster import RedisCluster

from recommender.events.joiner import Joiner
from recommender.events.redis_bus import RedisEventBus
from recommender.records import Decision, Reward
from recommender.settings.events import JoinConfig
from tests.redis_harness import RedisServer, start_cluster

WAIT = 0.5  # seconds of reward window: short, so that the joiner's pass follows the puts at once
SETTINGS = JoinConfig(reward_wait_time=WAIT, recovery_seconds=30, flush_seconds=0.01, flush_max_events=100_000)
CATALOG = [MappingProxyType({"price": 1.0 + i % 97, "brand": f"brand-{i % 40}", "category": f"cat-{i % 12}",
                             "rating": (i % 50) / 10}) for i in range(1000)]  # fmt: skip


@dataclass(frozen=True)
class Setup:
    name: str
    shards: int
    cluster: bool


SETUPS = (Setup("redis-server", 1, False), Setup("redis-server", 2, False), Setup("cluster, 3 nodes", 1, True),
          Setup("cluster, 3 nodes", 2, True))  # fmt: skip


def decisions(count: int, candidates: int, offset: int) -> list[Decision]:
    """``count`` decisions over ``candidates`` rows of the catalog (as the feature store hands them out)."""
    made = []
    for i in range(count):
        start = (offset + i * 7) % (len(CATALOG) - candidates)
        rows = tuple(CATALOG[start : start + candidates])
        made.append(Decision(
            event_id=f"b-{uuid.uuid4().hex}", timestamp=datetime.now(UTC), user_id=f"user-{i % 5000}",
            user_features={"segment": "vip", "tenure": 3.0}, context={"device": "web"},
            candidate_ids=tuple(f"item-{start + j}" for j in range(candidates)), candidate_features=rows,
            pmfs=((1.0 / candidates,) * candidates,), chosen=(0,), ranking=tuple(range(candidates)),
            model_version="m1", exploration={"epsilon": 0.1},
        ))  # fmt: skip
    return made


def redis_cpu(urls: list[str]) -> float:
    """CPU seconds the Redis servers at ``urls`` have used (user + system), summed."""
    total = 0.0
    for url in urls:
        client = redis.Redis.from_url(url)
        info = client.info("cpu")
        client.close()
        total += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return total


@dataclass
class Run:
    put_per_s: float
    put_cpu_us: float  # this process's CPU per decision put + its reward
    joined_per_s: float
    join_cpu_us: float
    redis_cpu_us: float  # every node's CPU per decision, put to joined
    nodes_used: int


def measure(setup: Setup, url: str, node_urls: list[str], candidates: int, count: int) -> Run:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    bus = RedisEventBus(url, wait_seconds=WAIT, recovery_seconds=SETTINGS.recovery_seconds, key_prefix=prefix,
                        shards=setup.shards, cluster=setup.cluster, timeout_ms=5000)  # fmt: skip
    joiner_bus = RedisEventBus(url, wait_seconds=WAIT, recovery_seconds=SETTINGS.recovery_seconds,
                               key_prefix=prefix, shards=setup.shards, cluster=setup.cluster)  # fmt: skip
    log_dir = Path(tempfile.mkdtemp(prefix="bench-bus-"))
    try:
        warm = decisions(50, candidates, 0)  # connections, the shard count record, the rows of the catalog
        for made in warm:
            bus.put_decision(made)
        joiner = Joiner(joiner_bus, log_dir, lambda: SETTINGS, consumer="bench")
        time.sleep(WAIT + 0.05)
        joiner.run_once(flush=True)
        work = decisions(count, candidates, 0)
        redis_before, cpu_before, started = redis_cpu(node_urls), time.process_time(), time.perf_counter()
        for made in work:
            bus.put_decision(made)
            bus.add_reward(Reward(made.event_id, 1.0, datetime.now(UTC)))
        put_wall, put_cpu = time.perf_counter() - started, time.process_time() - cpu_before
        time.sleep(max(0.0, work[-1].timestamp.timestamp() + WAIT + 0.05 - time.time()))
        cpu_before, started, joined = time.process_time(), time.perf_counter(), 0
        while joined < count:
            joined += joiner.run_once(flush=True)
        join_wall, join_cpu = time.perf_counter() - started, time.process_time() - cpu_before
        redis_used = redis_cpu(node_urls) - redis_before
        nodes_used = 1
        if setup.cluster:
            cluster = RedisCluster.from_url(url)
            nodes_used = len({cluster.get_node_from_key(tag).name for tag in bus.shard_tags})
            cluster.close()
        return Run(count / put_wall, put_cpu / count * 1e6, count / join_wall, join_cpu / count * 1e6,
                   redis_used / count * 1e6, nodes_used)  # fmt: skip
    finally:
        bus.close_connections()
        joiner_bus.close_connections()
        shutil.rmtree(log_dir, ignore_errors=True)


def median_of(runs: list[Run], field: Callable[[Run], float]) -> float:
    return statistics.median(map(field, runs))


def run(quick: bool = False) -> str:
    count, repetitions = (200, 1) if quick else (2000, 3)
    server = RedisServer().start()
    nodes = start_cluster(nodes=3)
    try:
        targets = {False: (server.url, [server.url]), True: (nodes[0].url, [n.url for n in nodes])}
        results: dict[tuple[int, Setup], list[Run]] = {}
        for _ in range(repetitions):
            for candidates in (20, 200):
                for setup in SETUPS:
                    url, node_urls = targets[setup.cluster]
                    results.setdefault((candidates, setup), []).append(
                        measure(setup, url, node_urls, candidates, count))
    finally:
        server.stop()
        for node in nodes:
            node.stop()
    lines = [
        "## Event bus alone (`bench_bus`)",
        "",
        f"One process puts {count} decisions, each with one reward (`put_decision` + `add_reward`, one thread), "
        "then one joiner joins them (`Joiner.run_once`: close, Parquet write, commit). Medians of "
        f"{repetitions} repetitions, set-ups interleaved. CPU per decision: this process's (`time.process_time`) "
        "and all Redis nodes' together (`INFO cpu`, from the first put to the last commit).",
        "",
        "| candidates | Redis | shards | nodes used | put + reward /s | worker CPU us/decision | joined /s "
        "| joiner CPU us/decision | Redis CPU us/decision |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (candidates, setup), runs in results.items():
        lines.append(
            f"| {candidates} | {setup.name} | {setup.shards} | {runs[0].nodes_used} "
            f"| {median_of(runs, lambda r: r.put_per_s):,.0f} | {median_of(runs, lambda r: r.put_cpu_us):,.0f} "
            f"| {median_of(runs, lambda r: r.joined_per_s):,.0f} | {median_of(runs, lambda r: r.join_cpu_us):,.0f} "
            f"| {median_of(runs, lambda r: r.redis_cpu_us):,.0f} |"
        )
    lines += [
        "",
        "Reading it for sizing (docs/service.md, \"Sizing\"): a shard is one Redis process's core, so it carries "
        "about 1e6 / (Redis CPU us per decision) decisions/s; a worker core spends the worker CPU column on the "
        "bus per request on top of scoring; a joiner carries 1e6 / (joiner CPU us per decision).",
    ]
    return "\n".join(lines)
