"""The feature store: feature-group schemas, encoding, the store interface and its backends.

This package imports nothing else of the project's (see docs/architecture in ../shared).
"""

from features.config import FeatureGroup, FeatureSpec, FeatureStoreConfig, FeatureType, RedisSettings
from features.errors import (
    FeatureLoadError,
    FeatureSchemaError,
    FeatureStoreError,
    FeatureStoreUnavailable,
    UnsupportedRedisVersion,
)
from features.factory import open_store
from features.store import EntityRows, FeatureStore, UserItemFeatures

__all__ = [
    "EntityRows",
    "FeatureGroup",
    "FeatureLoadError",
    "FeatureSchemaError",
    "FeatureSpec",
    "FeatureStore",
    "FeatureStoreConfig",
    "FeatureStoreError",
    "FeatureStoreUnavailable",
    "FeatureType",
    "RedisSettings",
    "UnsupportedRedisVersion",
    "UserItemFeatures",
    "open_store",
]
