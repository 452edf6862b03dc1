"""Feast definitions of the sample catalog: the ``user`` and ``item`` entities and their feature views.

Copied by benchmarks/bench_feast.py into the Feast repositories it builds under var/ and read there by
``feast apply`` (in the Feast virtualenv: this module imports only Feast). The Parquet offline sources sit
in ``data/`` beside the copy. The schemas mirror the ``users`` and ``items`` groups of configs/default.yaml:
categorical -> String, tags -> Array(String), numeric -> Float64, vector -> Array(Float64).
"""

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Float64, String

DATA = Path(__file__).resolve().parent / "data"
# The catalog does not expire: a TTL far beyond the benchmark's lifetime.
NO_EXPIRY = timedelta(days=3650)

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING)

users = FeatureView(
    name="users",
    entities=[user],
    ttl=NO_EXPIRY,
    schema=[
        Field(name="segment", dtype=String),
        Field(name="skin_type", dtype=String),
        Field(name="preferred_categories", dtype=Array(String)),
        Field(name="embedding", dtype=Array(Float64)),
    ],
    source=FileSource(path=str(DATA / "users.parquet"), timestamp_field="event_timestamp"),
    online=True,
)

items = FeatureView(
    name="items",
    entities=[item],
    ttl=NO_EXPIRY,
    schema=[
        Field(name="brand", dtype=String),
        Field(name="category", dtype=String),
        Field(name="price_band", dtype=String),
        Field(name="shade_family", dtype=String),
        Field(name="skin_types", dtype=Array(String)),
        Field(name="price", dtype=Float64),
        Field(name="embedding", dtype=Array(Float64)),
    ],
    source=FileSource(path=str(DATA / "items.parquet"), timestamp_field="event_timestamp"),
    online=True,
)
