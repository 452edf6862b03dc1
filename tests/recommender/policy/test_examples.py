"""Building VW examples from feature rows: encoding per type, escaping, schema, and text == example API."""

from __future__ import annotations

import random
from types import MappingProxyType

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from features.config import FeatureGroup, FeatureSpec, FeatureType
from recommender.errors import ExampleError
from recommender.policy.examples import (
    CONTEXT_NS,
    ITEM_NS,
    USER_NS,
    ExampleBuilder,
    cost_from_reward,
    escape_token,
    feature_schema,
    schema_hash,
)
from recommender.policy.item_cache import ItemCache
from recommender.policy.vw import VWModel, cb_text, ccb_text
from recommender.settings.policy import PolicyConfig

USERS = FeatureGroup(
    entity="user",
    key="user_id",
    features={
        "segment": FeatureSpec(type=FeatureType.CATEGORICAL, default="unknown"),
        "age": FeatureSpec(type=FeatureType.NUMERIC),
        "likes": FeatureSpec(type=FeatureType.TAGS),
        "embedding": FeatureSpec(type=FeatureType.VECTOR, dim=3),
    },
)
ITEMS = FeatureGroup(
    entity="item",
    key="item_id",
    features={
        "brand": FeatureSpec(type=FeatureType.CATEGORICAL),
        "price": FeatureSpec(type=FeatureType.NUMERIC),
        "skin_types": FeatureSpec(type=FeatureType.TAGS),
        "embedding": FeatureSpec(type=FeatureType.VECTOR, dim=2),
    },
)
BUILDER = ExampleBuilder(USERS, ITEMS)


def namespace(features, name):
    return dict(features)[name]


def test_each_feature_type_maps_to_vw_features() -> None:
    shared = BUILDER.shared(
        {"segment": "vip", "age": 31, "likes": ["lips", "eyes", "lips"], "embedding": [0.5, 0.0, -2.0]},
        {"device": "mobile", "hour": 13, "weekend": True, "tags": ["sale"], "scores": [1.5, 2.5], "none": None},
    )
    assert namespace(shared, USER_NS) == (
        ("segment=vip", 1.0),
        ("age", 31.0),
        ("likes=lips", 1.0),  # tags: one feature per distinct tag, in order
        ("likes=eyes", 1.0),
        ("embedding[0]", 0.5),  # vector: one feature per dimension (zeros dropped, as VW does)
        ("embedding[2]", -2.0),
    )
    # Context: types inferred from the values, names sorted, None skipped.
    assert namespace(shared, CONTEXT_NS) == (
        ("device=mobile", 1.0),
        ("hour", 13.0),
        ("scores[0]", 1.5),
        ("scores[1]", 2.5),
        ("tags=sale", 1.0),
        ("weekend=true", 1.0),
    )
    item = BUILDER.item({"brand": "acme", "price": 12.5, "skin_types": ("dry",), "embedding": np.array([1.0, 2.0])})
    assert item == (
        (
            ITEM_NS,
            (
                ("brand=acme", 1.0),
                ("price", 12.5),
                ("skin_types=dry", 1.0),
                ("embedding[0]", 1.0),
                ("embedding[1]", 2.0),
            ),
        ),
    )


def test_missing_features_take_defaults_and_undeclared_keys_are_ignored() -> None:
    shared = BUILDER.shared({"age": None, "unknown_key": "x"}, {})
    assert namespace(shared, USER_NS) == (("segment=unknown", 1.0),)
    assert BUILDER.item({}) == ((ITEM_NS, ()),)


def test_names_and_values_are_escaped_for_the_text_format() -> None:
    shared = BUILDER.shared({"segment": "a b|c:d\te%"}, {"free text": "x y", "we|ird:": 1.0})
    tokens = [t for _, feats in shared for t, _ in feats]
    assert "segment=a%20b%7Cc%3Ad%09e%25" in tokens
    assert "free%20text=x%20y" in tokens and "we%7Cird%3A" in tokens
    for token in tokens:
        assert not any(c in token for c in "|: \t\n")


@given(st.text(), st.text())
def test_escaping_is_safe_and_injective(a: str, b: str) -> None:
    ea, eb = escape_token(a), escape_token(b)
    assert not any(c in ea for c in "|:") and not any(c.isspace() for c in ea)
    assert (ea == eb) == (a == b)


@pytest.mark.parametrize(
    ("user", "item", "context", "message"),
    [
        ({"age": "old"}, {}, {}, r"user feature 'age': expected a number, got str"),
        ({"age": float("inf")}, {}, {}, r"user feature 'age': inf is not a finite number"),
        ({"age": True}, {}, {}, r"user feature 'age': expected a number, got bool"),
        ({"segment": 3.5}, {}, {}, r"user feature 'segment': expected a string, got float"),
        ({"likes": "lips"}, {}, {}, r"user feature 'likes': expected a list, got str"),
        ({"likes": ["ok", 3]}, {}, {}, r"user feature 'likes'\[1\]: expected a string tag, got int"),
        ({"embedding": [1.0, 2.0]}, {}, {}, r"user feature 'embedding': expected a vector of 3 numbers, got 2"),
        ({"embedding": [1.0, float("nan"), 2.0]}, {}, {}, r"'embedding'\[1\]: nan is not a finite number"),
        ({}, {"price": [1.0]}, {}, r"item feature 'price': expected a number, got list"),
        # A mapping is a namespace object (schema-free features); a bad value inside is named by its path.
        ({}, {}, {"x": {"a": [1.0, "a"]}}, r"context feature 'x.a'\[1\]: expected a number, got str"),
        ({}, {}, {"": 1.0}, r"context feature names must be non-empty strings"),
        ({}, {}, {"v": [1.0, "a"]}, r"context feature 'v'\[1\]: expected a number, got str"),
        ("not a mapping", {}, {}, r"user features must be a mapping"),
    ],
)
def test_invalid_values_are_refused_naming_the_feature(user, item, context, message) -> None:
    with pytest.raises(ExampleError, match=message):
        BUILDER.shared(user, context)
        BUILDER.item(item)


def test_cost_is_minus_reward() -> None:
    assert cost_from_reward(1.0) == -1.0
    assert cost_from_reward(0) == 0.0
    assert cost_from_reward(-2.5) == 2.5


def test_schema_hash_tracks_what_the_weights_depend_on() -> None:
    base = schema_hash(feature_schema(USERS, ITEMS))
    assert base == BUILDER.schema_hash == schema_hash(feature_schema(USERS, ITEMS))
    retyped = ITEMS.model_copy(
        update={"features": {**ITEMS.features, "price": FeatureSpec(type=FeatureType.CATEGORICAL)}}
    )
    assert schema_hash(feature_schema(USERS, retyped)) != base
    resized = USERS.model_copy(
        update={"features": {**USERS.features, "embedding": FeatureSpec(type=FeatureType.VECTOR, dim=4)}}
    )
    assert schema_hash(feature_schema(resized, ITEMS)) != base
    # Storage settings do not change the examples, so they do not change the schema.
    assert schema_hash(feature_schema(USERS.model_copy(update={"ttl_seconds": 60}), ITEMS)) == base


def _random_rows(rng: random.Random, n: int) -> list[dict]:
    return [
        {
            "brand": rng.choice(["acme", "b|rand", "x y", "naïve"]),
            "price": rng.uniform(0, 100),
            "skin_types": rng.sample(["dry", "oily", "mixed:1"], 2),
            "embedding": [rng.gauss(0, 1), rng.gauss(0, 1)],
        }
        for _ in range(n)
    ]


@pytest.mark.parametrize("mode", ["cb", "ccb"])
def test_example_api_and_vw_text_parser_give_the_same_predictions(mode: str) -> None:
    """The cached example-API path must score exactly like VW parsing the equivalent text."""
    rng = random.Random(0)
    config = PolicyConfig.model_validate({"mode": mode, "exploration": {"algorithm": "softmax", "lambda": 2.0}})
    model = VWModel(config.vw_args())
    rows = _random_rows(rng, 12)
    items = [BUILDER.item(r) for r in rows]
    for _ in range(300):  # some learning so the weights are not all zero
        shared = BUILDER.shared({"segment": rng.choice("abc"), "age": rng.uniform(18, 70)}, {"hour": rng.randrange(24)})
        if mode == "cb":
            model.learn_cb(shared, items, rng.randrange(12), -rng.random(), 1 / 12)
        else:
            model.learn_ccb(
                shared,
                items,
                [BUILDER.slot(0), BUILDER.slot(1)],
                [(rng.randrange(6), -1.0, 1 / 12), (6 + rng.randrange(6), 0.0, 1 / 11)],
            )
    actions = [model.action(item) for item in items]
    for i in range(50):
        shared = BUILDER.shared({"segment": rng.choice("abc"), "likes": ["x y"]}, {"device": "mo|bile"})
        if mode == "cb":
            ours = model.predict_cb(shared, actions)
            text = np.array(model.predict_text(cb_text(shared, items)))
            np.testing.assert_allclose(ours, text / text.sum(), atol=1e-6)
        else:
            slots, seeds = [BUILDER.slot(0), BUILDER.slot(1)], [f"s{i}-0", f"s{i}-1"]
            ours = model.predict_ccb(shared, actions, slots, seeds)
            text = model.predict_text(ccb_text(shared, items, slots, seeds=seeds))
            assert [s[0][0] for s in ours] == [s[0][0] for s in text]
            for a, b in zip(ours, text, strict=True):
                np.testing.assert_allclose(sorted(p for _, p in a), sorted(p for _, p in b), atol=1e-6)
    model.close()


def test_a_read_only_row_is_encoded_once_per_object_and_schema() -> None:
    row = MappingProxyType({"brand": "acme", "price": 2.5, "skin_types": ["dry"], " ": {"j": {"shade": "red"}}})
    first = BUILDER.item(row)
    assert BUILDER.item(row) is first  # remembered by the row object
    assert ExampleBuilder(USERS, ITEMS).item(row) is first  # by any builder of the same schema (a model swap)
    assert BUILDER.item(dict(row)) == first  # a mutable row: encoded every time, to the same features
    brands_only = FeatureGroup(entity="item", key="item_id", features={"brand": ITEMS.features["brand"]})
    assert dict(ExampleBuilder(USERS, brands_only).item(row))[ITEM_NS] == (("brand=acme", 1.0),)  # its own schema


def test_text_format_lines() -> None:
    shared = BUILDER.shared({"segment": "vip"}, {})
    items = [BUILDER.item({"brand": "a", "price": 2.0}), BUILDER.item({})]
    assert cb_text(shared, items, label=(0, -1.0, 0.5)) == [
        "shared |User segment=vip",
        "0:-1.0:0.5 |Item brand=a price:2.0",
        "|",  # an item without features still needs its line (an empty line ends the example)
    ]
    assert ccb_text(shared, items, [BUILDER.slot(0)], seeds=["abc-0"])[-1] == "ccb slot 'seed=abc-0|Slot slot=0"


def test_item_cache_validates_content_and_evicts_least_recently_used() -> None:
    cache: ItemCache[str] = ItemCache(2)
    row = {"brand": "a", "skin_types": ["dry"]}
    cache.put("i1", row, "example-1")
    assert cache.get("i1", {"brand": "a", "skin_types": ["dry"]}) == "example-1"
    row["skin_types"].append("oily")  # mutated in place by the caller: must not look cached
    assert cache.get("i1", row) is None
    cache.put("i1", row, "example-1b")
    cache.put("i2", {}, "example-2")
    cache.get("i1", row)  # i1 is now the most recently used
    cache.put("i3", {}, "example-3")
    assert len(cache) == 2 and cache.get("i2", {}) is None and cache.get("i1", row) == "example-1b"
    assert cache.get("i9", np.array([1])) is None  # unknown key
    cache.put("np", {"v": np.array([1.0, 2.0])}, "x")
    assert cache.get("np", {"v": np.array([1.0, 2.0])}) is None  # numpy rows never compare equal: rebuilt


def test_item_cache_get_many_is_get_item_by_item() -> None:
    cache: ItemCache[str] = ItemCache(3)
    read_only = {key: MappingProxyType({"brand": key}) for key in ("i1", "i2", "i3")}
    for key, row in read_only.items():
        cache.put(key, row, f"example-{key}")
    # The fast path: every key cached from these very read-only rows. It marks them used, in order.
    assert cache.get_many(["i2", "i1"], [read_only["i2"], read_only["i1"]]) == ["example-i2", "example-i1"]
    cache.put("i4", {}, "example-i4")  # evicts the least recently used: i3
    assert cache.get("i3", read_only["i3"]) is None and len(cache) == 3
    # The item-by-item path: an equal copy, a changed row and an unknown key in one call.
    hits, misses = cache.hits, cache.misses
    assert cache.get_many(["i1", "i2", "i9"], [{"brand": "i1"}, {"brand": "other"}, {}]) == ["example-i1", None, None]
    assert (cache.hits - hits, cache.misses - misses) == (1, 2)
    with pytest.raises(ValueError, match="2 keys but 1 rows"):
        cache.get_many(["i1", "i2"], [read_only["i1"]])
