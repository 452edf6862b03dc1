"""Feature fetch latency: 1 user + 200 items from Redis on loopback, against a bare MGET of the same keys.

Both paths run interleaved in the same process against the same server, so machine noise hits both
alike; the ratio of medians is the figure of merit (target <= 1.5). The bare MGET is the physical floor:
one round trip returning the raw bytes, no decoding.

Second section of the same run: ``features.redis_store.DirectCommands`` (single commands sent on a connection of
its own, past redis-py's client layer) against redis-py's public client (``Redis.mget``, ``Script.__call__``,
hiredis parser) for the request path's commands: the few-key MGET of a read served from the row cache, the
203-key MGET of a read without it, and a small ``EVALSHA`` (the event bus's decision script is one). Both
alternate in rounds of the same commands against the same server; CPU is the calling thread's
(``time.thread_time``), the figure that matters on 2 shared cores, and wall time the round trip's.
"""

from __future__ import annotations

import random
import statistics
import time

import numpy as np
import redis

from features import open_store
from features.redis_store import DirectCommands
from features.sample_catalog import load_sample_catalog
from recommender.settings.loading import load_config
from tests.redis_harness import RedisServer

N_ITEMS = 200
# Rounds of the DirectCommands / public client comparison, and commands per round (timed as one batch).
ROUNDS, PER_ROUND = 40, 50
SCRIPT = "return #KEYS + #ARGV"


def _batch(call, args: list[list[str]]) -> tuple[float, float]:
    """(CPU µs, wall µs) per call of ``call(*a)`` over ``args``."""
    cpu, wall = time.thread_time(), time.perf_counter()
    for a in args:
        call(*a)
    return (time.thread_time() - cpu) * 1e6 / len(args), (time.perf_counter() - wall) * 1e6 / len(args)


def direct_vs_client(url: str, small: list[str], large: list[str], rounds: int = ROUNDS) -> list[tuple]:
    """Per command (name, DirectCommands CPU µs, client CPU µs, DirectCommands wall µs, client wall µs): medians
    over ``rounds`` interleaved rounds (which goes first alternates)."""
    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    direct = DirectCommands(client)
    script = client.register_script(SCRIPT)
    script(keys=["k"], args=[1])  # loaded once, for both
    cases = {
        f"MGET {len(small)} keys (row cache)": (lambda *k: direct.execute("MGET", *k), lambda *k: client.mget(k),
                                                 [small] * PER_ROUND),
        f"MGET {len(large)} keys (no row cache)": (lambda *k: direct.execute("MGET", *k), lambda *k: client.mget(k),
                                                    [large] * PER_ROUND),
        "EVALSHA, 2 keys 4 args": (lambda *a: direct.run_script(script, a[:2], a[2:]),
                                   lambda *a: script(keys=a[:2], args=a[2:]),
                                   [["{b}:a", "{b}:b", "x", "1", "2.5", "y"]] * PER_ROUND),
    }  # fmt: skip
    rows = []
    for name, (ours, theirs, args) in cases.items():
        samples: dict[str, list[tuple[float, float]]] = {"direct": [], "client": []}
        for _ in range(5):  # warm-up: connections, parser buffers
            _batch(ours, args), _batch(theirs, args)
        for i in range(rounds):
            order = [("direct", ours), ("client", theirs)]
            for label, call in order if i % 2 == 0 else order[::-1]:
                samples[label].append(_batch(call, args))
        med = {label: (statistics.median(c for c, _ in v), statistics.median(w for _, w in v))
               for label, v in samples.items()}  # fmt: skip
        rows.append((name, med["direct"][0], med["client"][0], med["direct"][1], med["client"][1]))
    direct.close()
    client.close()
    return rows


def _percentiles(samples_us: list[float]) -> tuple[float, float]:
    return statistics.median(samples_us), float(np.percentile(samples_us, 99))


def run(quick: bool = False) -> str:
    fetches = 300 if quick else 5000
    server = RedisServer().start()
    try:
        base = load_config()
        features = base.features.model_copy(
            update={"backend": "redis", "redis": base.features.redis.model_copy(update={"url": server.url})}
        )
        store = open_store(features)
        load_sample_catalog(store)
        # The same read without the row cache (row_cache_size 0; also what Redis Cluster reads do).
        uncached = open_store(features.model_copy(
            update={"redis": features.redis.model_copy(update={"row_cache_size": 0})}
        ))  # fmt: skip
        bare = redis.Redis.from_url(server.url)
        rng = random.Random(0)
        requests = [
            (f"user-{rng.randint(1, 10_000):05d}", [f"item-{i:04d}" for i in rng.sample(range(1, 1001), N_ITEMS)])
            for _ in range(fetches)
        ]
        # The exact keys our read sends (live pointers + rows), so the baseline fetches the same bytes.
        store.read_user_items(*requests[0])  # learn live versions
        item_v, user_v = store.live_version("items"), store.live_version("users")
        ours, floor, plain = [], [], []
        for user, items in requests[:200]:  # warm-up: connections, decode and row caches
            store.read_user_items(user, items)
            uncached.read_user_items(user, items)
        for user, items in requests:
            keys = [store.meta_key("items", "live"), store.meta_key("users", "live"),
                    *store.row_keys("items", item_v, items), *store.row_keys("users", user_v, [user])]
            start = time.perf_counter()
            bare.mget(keys)
            floor.append((time.perf_counter() - start) * 1e6)
            start = time.perf_counter()
            found = store.read_user_items(user, items)
            ours.append((time.perf_counter() - start) * 1e6)
            assert not found.missing_items
            start = time.perf_counter()
            uncached.read_user_items(user, items)
            plain.append((time.perf_counter() - start) * 1e6)
        small = [store.meta_key("items", "live"), store.meta_key("users", "live"), *keys[-2:]]
        comparison = direct_vs_client(server.url, small, keys, ROUNDS // 4 if quick else ROUNDS)
        store.close()
        uncached.close()
        bare.close()
    finally:
        server.stop()
    ours_p50, ours_p99 = _percentiles(ours)
    floor_p50, floor_p99 = _percentiles(floor)
    plain_p50, plain_p99 = _percentiles(plain)
    ratio = plain_p50 / floor_p50
    verdict = "meets" if ratio <= 1.5 else "misses"
    return f"""## Feature store: 1 user + {N_ITEMS} items from Redis (loopback)

{fetches} fetches of random users and {N_ITEMS} random items of the sample catalog, interleaved with a bare
`MGET` of the same {N_ITEMS + 3} keys (live pointers + rows) on a second connection: the physical floor.
Ours = `FeatureStore.read_user_items` (one MGET, decode through the cache, defaults, missing report),
without the row cache (`row_cache_size: 0`, as on Redis Cluster: it fetches the same keys as the floor)
and with it (the default on a single server: the MGET names the live pointers, the change tokens and
the rows not cached).

| path | p50 (µs) | p99 (µs) |
|---|---:|---:|
| bare MGET (floor) | {floor_p50:.0f} | {floor_p99:.0f} |
| read_user_items, no row cache | {plain_p50:.0f} | {plain_p99:.0f} |
| read_user_items, row cache | {ours_p50:.0f} | {ours_p99:.0f} |

Ratio of medians ours without the row cache / floor: **{ratio:.2f}** (target <= 1.5: {verdict}); with
the row cache, {ours_p50 / floor_p50:.2f}.

DirectCommands against redis-py's public client (redis-py {redis.__version__}, hiredis parser), per command,
medians of {ROUNDS // 4 if quick else ROUNDS} interleaved rounds of {PER_ROUND}:

| command | DirectCommands CPU µs | client CPU µs | CPU saved | DirectCommands wall µs | client wall µs |
|---|---:|---:|---:|---:|---:|
""" + "\n".join(f"| {name} | {dc:.0f} | {cc:.0f} | {(cc - dc) / cc:.0%} | {dw:.0f} | {cw:.0f} |"
                for name, dc, cc, dw, cw in comparison) + "\n"
