"""A group with no live version (nothing loaded, or Redis restarted empty) reads as defaults, and the read
says so: the service must be able to tell "this user is unknown" from "the catalog is gone"."""

from __future__ import annotations

import logging

import pytest
import redis

from features import FeatureStoreUnavailable, open_store
from tests.features.test_store_contract import ITEM, backend, make_config  # noqa: F401 - the fixture
from tests.redis_harness import RedisServer

USER = {"segment": "vip", "skin_type": "dry", "preferred_categories": ["serum"], "embedding": [0.0] * 8}


def wipe(store, kind: str, prefix: str, request) -> None:
    """What a Redis restarted without its data leaves: no key of the store's namespace."""
    if kind == "memory":
        store._live.clear()
        return
    server = request.getfixturevalue("redis_cluster")[0] if kind == "redis-cluster" else None
    if server is None:
        client = redis.Redis.from_url(request.getfixturevalue("redis_server").url)
        keys = list(client.scan_iter(match=f"*{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()
        return
    cluster = redis.RedisCluster.from_url(server.url)
    for key in list(cluster.scan_iter(match=f"*{prefix}*")):
        cluster.delete(key)
    cluster.close()


def test_a_group_with_no_live_version_is_reported_unloaded(backend, unique_prefix, request, caplog):  # noqa: F811
    store = backend()
    assert store.unloaded_groups() == ["users", "items", "short_lived"]
    store.upsert("items", "sku-1", ITEM)
    store.upsert("users", "u1", USER)
    assert store.unloaded_groups() == ["short_lived"]
    read = store.read_user_items("u1", ["sku-1", "sku-2"])
    assert read.unloaded == () and read.missing_items == ("sku-2",)
    assert store.read("items", ["sku-1"]).loaded

    caplog.set_level(logging.INFO, logger="features.store")
    caplog.clear()
    wipe(store, backend.kind, unique_prefix, request)
    for _ in range(5):
        read = store.read_user_items("u1", ["sku-1", "sku-2"])
        assert read.unloaded == ("items", "users")
        assert read.user_missing and read.missing_items == ("sku-1", "sku-2")
        assert read.items[0] == read.items[1]  # the group's defaults
        assert store.read_user_items(None, ["sku-1"]).unloaded == ("items",)
    assert not store.read("items", ["sku-1"]).loaded
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "no live version" in r.getMessage()]
    assert sorted(r.getMessage().split("'")[1] for r in warnings) == ["items", "users"]  # once each, not per read
    assert set(store.unloaded_groups()) == {"users", "items", "short_lived"}

    store.upsert("items", "sku-1", ITEM)
    assert store.read_user_items(None, ["sku-1"]).unloaded == ()
    assert any("'items' has a live version again" in r.getMessage() for r in caplog.records)


def test_the_unloaded_check_is_bounded_by_the_read_budget_and_raises_unavailable(unique_prefix):
    server = RedisServer().start()
    config = make_config("redis", server.url, unique_prefix)
    store = open_store(config.model_copy(update={"redis": config.redis.model_copy(update={"timeout_ms": 100})}))
    try:
        store.upsert("items", "sku-1", ITEM)
        assert "items" not in store.unloaded_groups()
        server.stop()
        with pytest.raises(FeatureStoreUnavailable, match="reading the live versions"):
            store.unloaded_groups()
    finally:
        store.close()
        server.stop()
