"""``open_bus`` and ``bus_backend``: which bus a configuration names, and where its Redis is."""

from __future__ import annotations

import redis

from recommender.events.factory import bus_backend, open_bus
from recommender.events.memory_bus import MemoryEventBus
from recommender.events.redis_bus import RedisEventBus
from recommender.records import Decision, utc_now
from recommender.settings.app import AppConfig
from recommender.settings.loading import DEFAULT_CONFIG_PATH, load_document, parse_config


def config(features_backend: str = "memory", features_url: str | None = None, **bus: object) -> AppConfig:
    document = load_document(DEFAULT_CONFIG_PATH, env={})
    document["features"]["backend"] = features_backend
    if features_url is not None:
        document["features"]["redis"]["url"] = features_url
    document["join"].update(reward_wait_time=7.0, recovery_seconds=11.0)
    document["bus"].update(bus)
    return parse_config(document)


def test_auto_follows_the_feature_store_and_an_explicit_backend_wins():
    assert bus_backend(config("memory")) == "memory"
    assert bus_backend(config("redis")) == "redis"
    assert bus_backend(config("redis", backend="memory")) == "memory"
    assert bus_backend(config("memory", backend="redis")) == "redis"


def test_the_embedded_default_is_the_in_process_bus_with_the_join_settings():
    bus = open_bus(config("memory"))
    assert type(bus) is MemoryEventBus
    assert (bus.wait_seconds, bus.recovery_seconds) == (7.0, 11.0)


def test_the_redis_bus_uses_the_feature_stores_redis_unless_bus_redis_url_names_another(redis_server, unique_prefix):
    raw = redis.Redis.from_url(redis_server.url)
    decision = Decision(
        event_id="e1", timestamp=utc_now(), user_id="u", user_features={}, context={}, candidate_ids=("a",),
        candidate_features=({},), pmfs=((1.0,),), chosen=(0,), ranking=(0,), model_version="m",
    )  # fmt: skip
    elsewhere = "redis://127.0.0.1:1/0"  # nothing listens there
    for settings in (
        config("redis", redis_server.url, key_prefix=unique_prefix),
        config("memory", elsewhere, backend="redis", redis_url=redis_server.url, key_prefix=f"{unique_prefix}b",
               stream="ds", group="jg"),
    ):
        bus = open_bus(settings)
        try:
            assert type(bus) is RedisEventBus
            assert (bus.wait_seconds, bus.recovery_seconds) == (7.0, 11.0)
            bus.put_decision(decision)
            tag = f"{{{settings.bus.key_prefix}}}"
            assert raw.exists(f"{tag}:d:e1")  # on that server, under the bus's prefix...
            assert [p.event_id for p in bus.take_new("a", 10)] == ["e1"]
            groups = raw.xinfo_groups(f"{tag}:{settings.bus.stream}")  # ...in the stream and group it names
            assert [g["name"] for g in groups] == [settings.bus.group.encode()]
        finally:
            bus.close_connections()
    raw.close()
