"""The feature store: feature-group schemas, encoding, the store interface and its backends.

This package imports nothing else of the project's (see docs/architecture in ../shared).
"""

from features.config import FeatureGroup, FeatureSpec, FeatureStoreConfig, FeatureType, RedisSettings
from features.errors import (
    FeatureLoadError,
    FeatureSchemaError,
    FeatureStoreError,
    FeatureStoreUnavailable,
)
from features.store import EntityRows, FeatureStore, UserItemFeatures, open_store

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
    "UserItemFeatures",
    "open_store",
]
