"""Fixtures shared by the tests of the running service (service, events, learning): the session's sample
catalog in the real redis-server, and ``serve`` (the real app over HTTP, stopped after the test)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from features import open_store
from features.sample_catalog import load_sample_catalog
from recommender.settings.loading import DEFAULT_CONFIG_PATH, load_config
from tests.recommender.served_app import CATALOG_PREFIX, ServedApp, write_config
from tests.redis_harness import RedisServer


@pytest.fixture(scope="session")
def catalog_redis(redis_server: RedisServer) -> RedisServer:
    """The session redis-server with the sample catalog loaded under CATALOG_PREFIX."""
    config = load_config(DEFAULT_CONFIG_PATH)
    features = config.features.model_copy(
        update={"backend": "redis", "redis": config.features.redis.model_copy(
            update={"url": redis_server.url, "key_prefix": CATALOG_PREFIX, "timeout_ms": 5000})}
    )  # fmt: skip
    store = open_store(features)
    load_sample_catalog(store)
    store.close()
    return redis_server


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ServedApp]]:
    """``serve(document)`` writes the config file, starts the app on it, and stops it after the test."""
    started: list[ServedApp] = []

    def start(document: dict[str, Any], **kwargs: Any) -> ServedApp:
        path = tmp_path / f"config-{len(started)}.yaml"
        app = ServedApp(write_config(path, document), config_path=path, **kwargs)
        started.append(app)
        return app

    yield start
    for app in started:
        app.stop()
