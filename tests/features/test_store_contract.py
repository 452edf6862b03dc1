"""The feature-store contract: every backend (in-process, Redis, Redis Cluster) must pass all of it."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest
import redis

from features import (
    FeatureLoadError,
    FeatureSchemaError,
    FeatureStoreConfig,
    FeatureStoreError,
    FeatureStoreUnavailable,
    open_store,
)
from features.redis_store import redact_url
from features.sample_catalog import items_frame, users_frame

GROUPS = {
    "users": {
        "entity": "user",
        "key": "user_id",
        "features": {
            "segment": {"type": "categorical", "default": "unknown"},
            "skin_type": {"type": "categorical", "default": "unknown"},
            "preferred_categories": {"type": "tags"},
            "embedding": {"type": "vector", "dim": 8},
        },
    },
    "items": {
        "entity": "item",
        "key": "item_id",
        "shard_by": "group",
        "features": {
            "brand": {"type": "categorical"},
            "category": {"type": "categorical"},
            "price_band": {"type": "categorical"},
            "shade_family": {"type": "categorical", "nullable": True, "default": "none"},
            "skin_types": {"type": "tags"},
            "price": {"type": "numeric"},
            "embedding": {"type": "vector", "dim": 8},
        },
    },
    "short_lived": {
        "entity": "session",
        "key": "session_id",
        "ttl_seconds": 1,
        "features": {"clicks": {"type": "numeric"}},
    },
}

ITEM = {
    "brand": "Solis",
    "category": "serum",
    "price_band": "mid",
    "shade_family": None,
    "skin_types": ["dry", "normal"],
    "price": 19.5,
    "embedding": [0.1] * 8,
}


def make_config(backend: str, url: str = "", prefix: str = "fs", cluster: bool = False, chunk: int = 1000):
    return FeatureStoreConfig.model_validate(
        {
            "backend": backend,
            "redis": {"url": url or "redis://127.0.0.1:6379/0", "key_prefix": prefix, "cluster": cluster,
                      "write_chunk_size": chunk},
            "groups": GROUPS,
            "sample_catalog": False,
        }
    )


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
def backend(request, unique_prefix):
    """A factory of stores of one backend kind, each test in its own key namespace."""
    kind = request.param
    stores = []

    def factory(**options):
        if kind == "memory":
            config = make_config("memory", **options)
        elif kind == "redis":
            server = request.getfixturevalue("redis_server")
            config = make_config("redis", server.url, unique_prefix, **options)
        else:
            nodes = request.getfixturevalue("redis_cluster")
            config = make_config("redis", nodes[0].url, unique_prefix, cluster=True, **options)
        store = open_store(config)
        stores.append(store)
        return store

    factory.kind = kind
    yield factory
    for store in stores:
        store.close()


def items_with_marker(marker: str, n: int = 300) -> pd.DataFrame:
    frame = items_frame(n)
    frame["brand"] = marker
    return frame


def test_empty_store_returns_defaults_and_reports_missing(backend):
    store = backend()
    found = store.read_user_items("user-1", ["a", "b"])
    assert found.user_missing and found.missing_items == ("a", "b")
    assert dict(found.user)["segment"] == "unknown"
    assert dict(found.items[0]) == {
        "brand": "", "category": "", "price_band": "", "shade_family": "none", "skin_types": [], "price": 0.0,
        "embedding": [0.0] * 8,
    }


def test_upsert_then_read_in_request_order(backend):
    store = backend()
    store.upsert("items", "sku-2", ITEM)
    store.upsert("items", "sku-1", {**ITEM, "brand": "Perle", "embedding": np.arange(8.0)})
    store.upsert("users", "u1", {"segment": "vip", "skin_type": "dry", "preferred_categories": ["serum"],
                                 "embedding": [0.5] * 8})
    found = store.read_user_items("u1", ["sku-1", "missing", "sku-2"])
    assert not found.user_missing and found.user["segment"] == "vip"
    assert [row["brand"] for row in found.items] == ["Perle", "", "Solis"]
    assert found.items[0]["embedding"] == list(np.arange(8.0))
    assert found.items[2]["shade_family"] == "none"  # nullable: null became the default
    assert found.missing_items == ("missing",)


def test_read_user_items_without_user_gives_user_defaults(backend):
    store = backend()
    store.upsert("items", "sku-1", ITEM)
    found = store.read_user_items(None, ["sku-1"])
    assert found.user_missing and found.user["skin_type"] == "unknown" and not found.missing_items


def test_rows_are_read_only(backend):
    store = backend()
    store.upsert("items", "sku-1", ITEM)
    row = store.read("items", ["sku-1"]).rows[0]
    with pytest.raises(TypeError):
        row["brand"] = "x"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({**ITEM, "colour": "red"}, r"unknown features \['colour'\]"),
        ({**ITEM, "price": "cheap"}, r"feature 'price': expected a number, got str"),
        ({**ITEM, "price": float("nan")}, r"feature 'price': null/NaN is not allowed"),
        ({**ITEM, "price": True}, r"feature 'price': expected a number, got bool"),
        ({**ITEM, "brand": 3}, r"feature 'brand': expected a string"),
        ({**ITEM, "skin_types": "dry"}, r"feature 'skin_types': expected a list"),
        ({**ITEM, "skin_types": ["dry", 1]}, r"feature 'skin_types': every tag must be a string"),
        ({**ITEM, "embedding": [0.1] * 7}, r"feature 'embedding': expected a vector of length 8"),
        ({**ITEM, "embedding": [0.1] * 7 + [float("inf")]}, r"feature 'embedding': vector has a NaN or infinite"),
        ({k: v for k, v in ITEM.items() if k != "brand"}, r"feature 'brand': null/NaN is not allowed"),
    ],
)
def test_upsert_refuses_invalid_rows_and_writes_nothing(backend, values, message):
    store = backend()
    with pytest.raises(FeatureSchemaError, match=message):
        store.upsert("items", "sku-1", values)
    assert store.read("items", ["sku-1"]).missing == ("sku-1",)


def test_unknown_group_and_bad_entity_id(backend):
    store = backend()
    with pytest.raises(FeatureStoreError, match=r"unknown feature group 'nope'"):
        store.read("nope", ["a"])
    with pytest.raises(FeatureSchemaError, match=r"entity id must be a non-empty string"):
        store.upsert("items", "", ITEM)


def test_delete(backend):
    store = backend()
    store.upsert("items", "sku-1", ITEM)
    assert store.delete("items", "sku-1") is True
    assert store.delete("items", "sku-1") is False
    assert store.read("items", ["sku-1"]).missing == ("sku-1",)


def test_batch_load_switches_live_version_and_drops_the_old_one(backend):
    store = backend(chunk=128)
    first = store.load_frame("items", items_with_marker("first"))
    second = store.load_frame("items", items_with_marker("second"))
    assert second.previous_version == first.version and second.rows == 300
    assert store.live_version("items") == second.version
    assert store.versions("items") == [second.version]
    rows = store.read("items", ["item-0001", "item-0300"]).rows
    assert {row["brand"] for row in rows} == {"second"}


def test_load_beside_live_then_activate_and_drop(backend):
    store = backend()
    live = store.load_frame("items", items_with_marker("live")).version
    staged = store.load_frame("items", items_with_marker("staged"), activate=False)
    assert not staged.activated and store.live_version("items") == live
    assert store.read("items", ["item-0001"]).rows[0]["brand"] == "live"
    store.activate("items", staged.version)
    assert store.read("items", ["item-0001"]).rows[0]["brand"] == "staged"
    with pytest.raises(FeatureStoreError, match="refusing to drop live version"):
        store.drop_version("items", staged.version)
    store.drop_version("items", live)
    assert store.versions("items") == [staged.version]
    with pytest.raises(FeatureStoreError, match="has no version 'v999'"):
        store.activate("items", "v999")


def test_failed_load_reports_progress_and_leaves_live_version_untouched(backend):
    store = backend(chunk=100)
    live = store.load_frame("items", items_with_marker("live")).version
    bad = items_with_marker("bad")
    bad.loc[250, "price"] = float("nan")
    with pytest.raises(FeatureLoadError, match=r"failed after 200 of 300 rows.*column 'price', row 250") as info:
        store.load_frame("items", bad)
    assert info.value.rows_written == 200
    assert store.live_version("items") == live
    assert store.versions("items") == [live]
    assert store.read("items", ["item-0001"]).rows[0]["brand"] == "live"


# Structural problems are found before anything is written (FeatureSchemaError); value problems while
# encoding their chunk (FeatureLoadError, wrapping the schema error, saying how far the load got).
@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (lambda f: f.drop(columns=["price"]), FeatureSchemaError, r"missing columns \['price'\]"),
        (lambda f: f.assign(colour="red"), FeatureSchemaError, r"unknown columns \['colour'\]"),
        (lambda f: f.assign(item_id=["dup"] * 3 + list(f.item_id[3:])), FeatureSchemaError,
         r"duplicate entity id 'dup'.*rows \[0, 1, 2\]"),
        (lambda f: f.assign(item_id=[None] + list(f.item_id[1:])), FeatureSchemaError,
         r"column 'item_id' is null at rows \[0\]"),
        (lambda f: f.assign(item_id=[7] + list(f.item_id[1:])), FeatureSchemaError,
         r"column 'item_id' must hold non-empty strings; row 0"),
        (lambda f: f.assign(price=["x"] + list(f.price[1:])), FeatureLoadError,
         r"after 0 of 10 rows.*column 'price', row 0 \(item_id='item-0001'\): expected a number"),
        (lambda f: f.assign(embedding=[[1.0]] + list(f.embedding[1:])), FeatureLoadError,
         r"column 'embedding', row 0.*length 8"),
    ],
)
def test_malformed_frames_name_column_and_row(backend, mutate, error, message):
    store = backend()
    with pytest.raises(error, match=message):
        store.load_frame("items", mutate(items_frame(10)))
    assert store.live_version("items") is None


def test_parquet_load(backend, tmp_path):
    store = backend()
    users_frame(500).to_parquet(tmp_path / "users.parquet", index=False)
    report = store.load_parquet("users", tmp_path / "users.parquet")
    assert report.rows == 500
    assert store.read("users", ["user-00500"]).missing == ()
    with pytest.raises(FeatureSchemaError, match="does not exist"):
        store.load_parquet("users", tmp_path / "nope.parquet")


def test_ttl_expires_entities(backend):
    store = backend()
    store.upsert("short_lived", "s1", {"clicks": 3})
    assert store.read("short_lived", ["s1"]).missing == ()
    time.sleep(1.3)
    assert store.read("short_lived", ["s1"]).missing == ("s1",)


def test_reader_never_sees_a_mixture_of_versions_during_switches(backend):
    store = backend(chunk=50)
    store.load_frame("items", items_with_marker("a"))
    ids = [f"item-{i:04d}" for i in range(1, 301)]
    mixtures, reads, stop = [], [0], threading.Event()

    def reader():
        while not stop.is_set():
            brands = {row["brand"] for row in store.read("items", ids).rows}
            reads[0] += 1
            if len(brands) != 1:
                mixtures.append(brands)

    thread = threading.Thread(target=reader)
    thread.start()
    for marker in ["b", "c", "d", "e"]:
        store.load_frame("items", items_with_marker(marker))
    stop.set()
    thread.join()
    assert reads[0] > 0 and mixtures == []


def test_single_server_read_is_one_round_trip(redis_server, unique_prefix):
    store = open_store(make_config("redis", redis_server.url, unique_prefix))
    store.load_frame("items", items_frame(200))
    store.upsert("users", "u1", {"segment": "vip", "skin_type": "dry", "preferred_categories": [],
                                 "embedding": [0.0] * 8})
    store.read_user_items("u1", ["item-0001"])  # learns the live versions
    probe = redis.Redis.from_url(redis_server.url)
    before = probe.info("commandstats")
    found = store.read_user_items("u1", [f"item-{i:04d}" for i in range(1, 201)])
    after = probe.info("commandstats")
    assert len(found.items) == 200 and not found.missing_items
    calls = {name: after[name]["calls"] - before.get(name, {"calls": 0})["calls"] for name in after}
    calls.pop("cmdstat_info")
    assert {name: n for name, n in calls.items() if n} == {"cmdstat_mget": 1}


def test_unreachable_redis_is_a_typed_error_with_password_redacted(unique_prefix):
    config = make_config("redis", "redis://admin:s3cret@127.0.0.1:1/0", unique_prefix)
    store = open_store(config)
    with pytest.raises(FeatureStoreUnavailable, match=r"redis://admin:\*\*\*@127.0.0.1:1/0") as info:
        store.read("items", ["a"])
    assert "s3cret" not in str(info.value)
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


# ----- the Redis row cache (single server): what one process caches, another's writes invalidate ----------
def _item(price: float) -> dict:
    return {**ITEM, "price": price}


def test_cached_rows_are_read_with_a_few_key_lookups(redis_server, unique_prefix):
    store = open_store(make_config("redis", redis_server.url, unique_prefix))
    store.load_frame("items", items_frame(200))
    ids = [f"item-{i:04d}" for i in range(1, 201)]
    first = store.read("items", ids)
    probe = redis.Redis.from_url(redis_server.url)
    hits_before = probe.info("stats")["keyspace_hits"]
    second = store.read("items", ids)
    lookups = probe.info("stats")["keyspace_hits"] - hits_before
    assert second.rows == first.rows and not second.missing
    assert lookups <= 2, lookups  # the live pointer and the change token, not 200 rows
    store.close()


@pytest.mark.parametrize("writer_cache", [100_000, 0])
def test_another_process_writes_are_seen_at_once(redis_server, unique_prefix, writer_cache):
    config = make_config("redis", redis_server.url, unique_prefix)
    reader = open_store(config)
    writer_redis = config.redis.model_copy(update={"row_cache_size": writer_cache})
    writer = open_store(config.model_copy(update={"redis": writer_redis}))
    writer.upsert("items", "a", _item(1.0))
    writer.upsert("items", "b", _item(2.0))
    assert [row["price"] for row in reader.read("items", ["a", "b"]).rows] == [1.0, 2.0]
    writer.upsert("items", "a", _item(1.5))
    assert [row["price"] for row in reader.read("items", ["a", "b"]).rows] == [1.5, 2.0]
    assert writer.delete("items", "b")
    assert reader.read("items", ["a", "b"]).missing == ("b",)
    writer.load_frame("items", items_with_marker("fresh", 5))
    found = reader.read("items", ["a", "item-0001"])
    assert found.missing == ("a",) and found.rows[1]["brand"] == "fresh"
    reader.close()
    writer.close()


def test_a_cached_reader_never_goes_back_in_time(redis_server, unique_prefix):
    """A writer raises one item's price 1..N while another store reads it with its cache: the prices seen
    never decrease, and the last read after the writer stops sees N."""
    config = make_config("redis", redis_server.url, unique_prefix)
    writer, reader = open_store(config), open_store(config)
    ids = [f"item-{i:04d}" for i in range(1, 51)]
    writer.load_frame("items", items_frame(50))
    writer.upsert("items", "item-0007", _item(0.0))
    seen, stop = [], threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.append(reader.read("items", ids).rows[6]["price"])

    thread = threading.Thread(target=read)
    thread.start()
    for price in range(1, 201):
        writer.upsert("items", "item-0007", _item(float(price)))
    stop.set()
    thread.join()
    assert len(seen) > 10 and seen == sorted(seen)
    assert reader.read("items", ids).rows[6]["price"] == 200.0
    writer.close()
    reader.close()
