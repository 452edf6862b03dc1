"""The feature store: feature-group schemas, encoding, the store interface and its backends.

This package imports nothing else of the project's (see docs/architecture in ../shared).

Public API (``from features import NAME``; each name is imported on first use, see ``_EXPORTS``): the
config types, the errors, ``open_store``, ``FeatureStore`` and its read results.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the package exports, for readers and type checkers; loaded by __getattr__
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

# Lazy, by name: any import of a submodule (``features.config`` for the settings, ``features.errors`` for the
# command line's error handling) runs this file first, and importing the store here would load pandas and
# pyarrow into every command: ``recommender --help`` took 0.7 s instead of 0.2 s, measured.
_EXPORTS = {
    "FeatureGroup": "features.config",
    "FeatureSpec": "features.config",
    "FeatureStoreConfig": "features.config",
    "FeatureType": "features.config",
    "RedisSettings": "features.config",
    "FeatureLoadError": "features.errors",
    "FeatureSchemaError": "features.errors",
    "FeatureStoreError": "features.errors",
    "FeatureStoreUnavailable": "features.errors",
    "UnsupportedRedisVersion": "features.errors",
    "open_store": "features.factory",
    "EntityRows": "features.store",
    "FeatureStore": "features.store",
    "UserItemFeatures": "features.store",
}

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


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'features' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
