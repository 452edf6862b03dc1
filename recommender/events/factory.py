"""Opening the event bus the configuration names: ``open_bus(config)``, and ``bus_backend(config)``."""

from __future__ import annotations

from recommender.events.bus import Completion, EventBus
from recommender.events.memory_bus import MemoryEventBus
from recommender.settings.app import AppConfig


def bus_backend(config: AppConfig) -> str:
    """``memory`` or ``redis``: ``bus.backend``, where ``auto`` follows the feature store's backend."""
    backend = config.bus.backend
    return config.features.backend if backend == "auto" else backend


def open_bus(config: AppConfig) -> EventBus:
    """The bus the configuration names; Redis at ``bus.redis_url`` or else the feature store's URL, a Redis
    Cluster when ``bus.cluster`` says so (or, unset, when the feature store's Redis is one), ``bus.shards``
    shards."""
    join = config.join
    # Decisions whose joined reward is final close early (bus.py, "Early close"): aggregation first or max.
    completion = Completion.for_join(join.aggregation, join.reward_range)
    if bus_backend(config) == "memory":
        return MemoryEventBus(join.reward_wait_time, join.recovery_seconds, completion)
    # Imported only when chosen: the embedded default never loads redis-py, which saves about 100 ms of
    # start-up (``import recommender.events.factory``: 708 ms against 815 ms with this import at the top,
    # medians of 21 interleaved runs; ``import redis`` alone is 115 ms).
    from recommender.events.redis_bus import RedisEventBus

    settings = config.bus
    # The bus on the feature store's Redis follows its cluster setting unless bus.cluster says otherwise.
    cluster = settings.cluster if settings.cluster is not None else (
        settings.redis_url is None and config.features.redis.cluster)  # fmt: skip
    return RedisEventBus(
        settings.redis_url or config.features.redis.url,
        wait_seconds=join.reward_wait_time,
        recovery_seconds=join.recovery_seconds,
        key_prefix=settings.key_prefix,
        stream=settings.stream,
        group=settings.group,
        timeout_ms=settings.timeout_ms,
        completion=completion,
        shards=settings.shards,
        cluster=cluster,
    )
