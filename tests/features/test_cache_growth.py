"""A process's feature caches do not grow with the users it has seen: a request reads one user, mostly a
new one, so user rows are neither kept decoded nor kept encoded (the catalog's rows are)."""

from __future__ import annotations

import gc
import random
import tracemalloc

import pytest

from features import open_store
from features.sample_catalog import load_sample_catalog
from recommender.settings.loading import DEFAULT_CONFIG_PATH, load_config

ITEMS = [f"item-{i:04d}" for i in range(1, 1001)]


@pytest.fixture(params=["memory", "redis"])
def store(request, unique_prefix):
    features = load_config(DEFAULT_CONFIG_PATH).features
    if request.param == "redis":
        url = request.getfixturevalue("redis_server").url
        features = features.model_copy(update={"backend": "redis", "redis": features.redis.model_copy(
            update={"url": url, "key_prefix": unique_prefix, "timeout_ms": 5000})})  # fmt: skip
    store = open_store(features)
    load_sample_catalog(store, n_users=5000)
    yield store
    store.close()


def test_reading_many_users_does_not_grow_the_process(store):
    rng = random.Random(3)
    for _ in range(300):  # the catalog: every item read, its rows cached
        store.read_user_items(None, rng.sample(ITEMS, 20))
    for item in ITEMS:
        store.read_user_items(None, [item])
    users = [f"user-{i:05d}" for i in range(1, 5001)]
    candidates = [rng.sample(ITEMS, 20) for _ in users]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for user, ids in zip(users, candidates, strict=True):  # 5,000 distinct users, one per request
        assert not store.read_user_items(user, ids).user_missing
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    # Kept per user, decoded (~0.5 KB) and encoded rows would be ~2.5 MB or more for 5,000 users.
    assert grown < 100_000, grown
    again = store.read_user_items(users[0], ITEMS[:3])  # a user's row is still read right
    assert again.user == store.read("users", [users[0]]).rows[0] and not again.user_missing
