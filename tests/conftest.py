"""Shared fixtures: real redis-server processes started by the test harness (see redis_harness.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.redis_harness import RedisServer, start_cluster


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the whole session. Tests isolate themselves by key prefix."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[list[RedisServer]]:
    """A real three-node Redis Cluster for the whole session."""
    servers = start_cluster(nodes=3)
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"
