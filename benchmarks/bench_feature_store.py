"""Feature fetch latency: 1 user + 200 items from Redis on loopback, against a bare MGET of the same keys.

Both paths run interleaved in the same process against the same server, so machine noise hits both
alike; the ratio of medians is the figure of merit (target <= 1.5). The bare MGET is the physical floor:
one round trip returning the raw bytes, no decoding.
"""

from __future__ import annotations

import random
import statistics
import time

import numpy as np
import redis

from features import open_store
from features.sample_catalog import load_sample_catalog
from recommender.settings.loading import load_config
from tests.redis_harness import RedisServer

N_ITEMS = 200


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
"""
