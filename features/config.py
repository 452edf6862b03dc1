"""Typed configuration of the feature store: feature groups, their features, and the backend.

Feature groups are declared in YAML (``configs/*.yaml``, section ``features``) and validated here.
Unknown keys are rejected everywhere (``extra="forbid"``).
"""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureType(enum.StrEnum):
    """The four kinds of feature value.

    - ``numeric``: a finite float.
    - ``categorical``: one string (a brand, a segment).
    - ``tags``: a list of strings (skin-type tags, preferred categories); order is kept.
    - ``vector``: a dense list of ``dim`` finite floats (an embedding).
    """

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    TAGS = "tags"
    VECTOR = "vector"


class FeatureSpec(_Strict):
    """One typed feature of a group, with the value used when an entity lacks it."""

    type: FeatureType
    dim: int | None = Field(default=None, ge=1, le=4096, description="length, for vector features only")
    default: Any = None
    # When False (the default) a batch load refuses a null/NaN in this feature's column, naming the row;
    # when True a null becomes the default value.
    nullable: bool = False

    @model_validator(mode="after")
    def _check_dim_and_default(self) -> FeatureSpec:
        if self.type is FeatureType.VECTOR and self.dim is None:
            raise ValueError("a vector feature needs 'dim'")
        if self.type is not FeatureType.VECTOR and self.dim is not None:
            raise ValueError(f"'dim' applies only to vector features, not {self.type.value}")
        return self

    def default_value(self) -> Any:
        """The value a missing entity or a missing feature gets: ``default`` or the type's zero."""
        if self.default is not None:
            return self.default
        return {
            FeatureType.NUMERIC: 0.0,
            FeatureType.CATEGORICAL: "",
            FeatureType.TAGS: [],
            FeatureType.VECTOR: [0.0] * (self.dim or 0),
        }[self.type]


class FeatureGroup(_Strict):
    """A named set of features of one entity type, stored and versioned together.

    ``shard_by`` chooses the Redis Cluster hash tag (see docs/feature-store.md): ``group`` puts the whole
    group version in one slot (one MGET for any number of entities: right for a catalog read 200 at a
    time), ``entity`` spreads entities over the cluster (right for millions of users read one at a time).
    """

    entity: str = Field(min_length=1, description="entity type: user, item, or any other")
    key: str = Field(min_length=1, description="column holding the entity id in batch loads")
    features: dict[str, FeatureSpec] = Field(min_length=1)
    ttl_seconds: int | None = Field(default=None, ge=1)
    shard_by: Literal["group", "entity"] = "entity"

    @field_validator("features")
    @classmethod
    def _names_are_safe(cls, features: dict[str, FeatureSpec]) -> dict[str, FeatureSpec]:
        for name in features:
            if not name.replace("_", "").isalnum():
                raise ValueError(f"feature name {name!r} must be letters, digits and '_'")
        return features


class RedisSettings(_Strict):
    """Where the Redis backend connects. ``url`` may come from ``RECOMMENDER_REDIS_URL``."""

    url: str = "redis://127.0.0.1:6379/0"
    cluster: bool = False
    key_prefix: str = Field(default="fs", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    # A feature read sits on the /v1/score hot path: a slow Redis must not make the storefront wait,
    # so reads give up after this budget and the caller degrades to default features.
    timeout_ms: float = Field(default=50.0, gt=0, le=60_000)
    # Batch loads write this many entities per pipelined round trip.
    write_chunk_size: int = Field(default=1000, ge=1, le=100_000)
    # Rows per group each process keeps between reads (single server, groups without a TTL; 0: off).
    # Valid until the group's next write: every read checks the group's change token in the same MGET.
    row_cache_size: int = Field(default=100_000, ge=0)


class FeatureStoreConfig(_Strict):
    """The ``features`` section: backend choice, Redis settings and the feature groups."""

    backend: Literal["memory", "redis"] = "memory"
    redis: RedisSettings = RedisSettings()
    groups: dict[str, FeatureGroup] = Field(min_length=1)
    user_group: str = "users"
    item_group: str = "items"
    # Entries kept in the per-process cache of decoded values (keyed by the encoded bytes, so a changed
    # value is a new key and can never be served stale).
    decode_cache_size: int = Field(default=100_000, ge=0)
    # The in-process store starts empty with every process; the embedded default starts with the sample
    # beauty catalog loaded so that a new user's service has something to rank. Ignored for Redis.
    sample_catalog: bool = True

    @field_validator("groups")
    @classmethod
    def _group_names_are_safe(cls, groups: dict[str, FeatureGroup]) -> dict[str, FeatureGroup]:
        for name in groups:
            # Group names become part of Redis keys and glob patterns.
            if not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"group name {name!r} must be letters, digits, '_' and '-'")
        return groups

    @model_validator(mode="after")
    def _user_and_item_groups_exist(self) -> FeatureStoreConfig:
        for role in ("user_group", "item_group"):
            name = getattr(self, role)
            if name not in self.groups:
                raise ValueError(f"{role} {name!r} is not among the declared groups {sorted(self.groups)}")
        return self
