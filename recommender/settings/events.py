"""Typed settings of the event path, sections of configs/*.yaml (unknown keys are rejected):

- ``join``: how rewards are joined to decisions (wait time, aggregation, default reward, valid range)
  and where joined events are written;
- ``bus``: where pending decisions and rewards live between the workers and the joiner (in-process for
  the embedded default, Redis Streams in production).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Aggregation = Literal["sum", "first", "last", "max"]

# The most shards a Redis event bus may have (bus.shards): a few per node of the largest cluster it would run on.
MAX_BUS_SHARDS = 256


class JoinConfig(_Strict):
    """The ``join`` section."""

    # A reward counts for a decision only if it arrives within this many seconds of the decision.
    reward_wait_time: float = Field(default=60.0, gt=0, le=7 * 86_400)
    # Several rewards for the same slot of one decision are combined this way (arrival order).
    aggregation: Aggregation = "sum"
    # The reward a slot gets when none arrived in time (marked reward_is_default in the log).
    default_reward: float = 0.0
    # Rewards outside [min, max] are refused with 400.
    reward_range: tuple[float, float] = (-1.0, 1.0)
    event_log_dir: str = "var/events"
    # Joined events are written in batches: at most this often, or sooner when this many are ready.
    flush_seconds: float = Field(default=1.0, gt=0, le=3600)
    flush_max_events: int = Field(default=1000, ge=1, le=1_000_000)
    # How long a pending decision outlives its wait time in Redis, so that a joiner that was down can
    # still join it when it comes back; also the idle time after which another joiner takes over the
    # decisions a dead joiner had claimed.
    recovery_seconds: float = Field(default=300.0, ge=5, le=7 * 86_400)
    # Embedded default only (in-process bus): the service learns what it joins; `recommender serve` runs the
    # trainer as a process beside its one worker, an app built with `create_app` alone as a thread (both follow
    # the event log and publish versions the model follower swaps in). With Redis the trainer is its own
    # process (`recommender train`), so every worker serves the same published model.
    learn_in_process: bool = True

    @model_validator(mode="after")
    def _range_is_ordered(self) -> JoinConfig:
        low, high = self.reward_range
        if not low < high:
            raise ValueError(f"reward_range must be [min, max] with min < max, got {list(self.reward_range)}")
        if not low <= self.default_reward <= high:
            raise ValueError(f"default_reward {self.default_reward} is outside reward_range {list(self.reward_range)}")
        return self


class BusConfig(_Strict):
    """The ``bus`` section: where pending decisions and rewards wait for the joiner."""

    # auto: Redis when the feature store is on Redis, in-process otherwise.
    backend: Literal["auto", "memory", "redis"] = "auto"
    # None: the feature store's Redis (features.redis.url). May come from RECOMMENDER_BUS_REDIS_URL.
    redis_url: str | None = None
    # Every bus key starts with a hash tag made of key_prefix ("{rb}" with one shard, "{rb:N.s}" for shard s
    # of N): the bus's Lua scripts touch several keys of one event, which Redis Cluster allows only in one slot.
    key_prefix: str = Field(default="rb", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    # Shards (hash tags) the pending decisions are spread over, by a hash of the event id; each has its own
    # stream, read by every joiner. 1 keeps the single tag of buses older than shards. Changing it takes
    # effect once the bus is drained (docs/service.md, "Changing bus.shards").
    shards: int = Field(default=1, ge=1, le=MAX_BUS_SHARDS)
    # Redis Cluster (redis-py's cluster client: redis_url names any node, each shard goes to its tag's node).
    # None: the feature store's features.redis.cluster when the bus uses its Redis (redis_url null), else false.
    cluster: bool | None = None
    stream: str = Field(default="decisions", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    group: str = Field(default="joiner", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    # Budget of a bus write on the /v1/score and /v1/reward paths.
    timeout_ms: float = Field(default=50.0, gt=0, le=60_000)
