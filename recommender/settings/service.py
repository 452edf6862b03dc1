"""Typed settings of the scoring service, the reward join and the event bus.

Sections of configs/*.yaml owned here (unknown keys are rejected, like everywhere else):

- ``service``: the HTTP server (bind address, gunicorn workers and threads), request limits, API keys,
  the hot-reload period;
- ``join``: how rewards are joined to decisions (wait time, aggregation, default reward, valid range)
  and where joined events are written;
- ``bus``: where pending decisions and rewards live between the workers and the joiner (in-process for
  the embedded default, Redis Streams in production).

Which settings a running service re-applies when the file changes is listed in ``HOT_RELOADABLE``;
every other change needs a restart and is logged as such.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceConfig(_Strict):
    """The ``service`` section."""

    # Loopback by default: exposing the service is a deliberate deployment decision.
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    # gunicorn worker processes; each holds its own VW workspace. Forced to 1 when the feature store or
    # the event bus is in-process, because in-process state cannot be shared between processes.
    workers: int = Field(default=2, ge=1, le=256)
    # Threads per worker (gunicorn gthread pool; InlineWorker serves complete requests of kept-alive
    # connections on the event loop and leaves new connections and slow requests to the pool). A VW
    # workspace is locked per predict, so threads mostly overlap I/O rather than model arithmetic.
    threads: int = Field(default=4, ge=1, le=256)
    max_candidates: int = Field(default=500, ge=1, le=10_000)
    # 500 candidates with a few inline features each fit well within 1 MiB.
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    # Keys accepted on /v1/reward, activation and admin endpoints (and /v1/score when protect_score).
    # Also from RECOMMENDER_API_KEYS (comma-separated). Empty: those endpoints are open (a warning is
    # logged at start), which is right for the embedded default on loopback and wrong anywhere else.
    api_keys: tuple[SecretStr, ...] = ()
    protect_score: bool = False
    # How often each worker checks the config file (and the model store) for changes. Ops are promised
    # that a valid edit applies within 5 seconds.
    config_reload_seconds: float = Field(default=1.0, gt=0, le=5.0)
    # After a Redis failure the service stops calling Redis on the request path for this long (it serves
    # degraded decisions at once instead of paying the timeout on every request), then tries again.
    redis_retry_seconds: float = Field(default=1.0, gt=0, le=60.0)
    # Decisions that could not be written to the bus while Redis was down are kept in memory, up to this
    # many per worker, and written when Redis returns. Beyond it the oldest are dropped and counted.
    decision_buffer_size: int = Field(default=10_000, ge=0, le=10_000_000)
    # Overload: a /v1/score request that waited in its connection's receive buffer longer than this before
    # a worker took it up gets a uniform decision (the baseline in apprentice mode; degraded, logged as such)
    # instead of the policy's, which costs a fraction of the CPU, so that a backlog drains instead of
    # growing. 0: never.
    queue_budget_ms: float = Field(default=50.0, ge=0, le=60_000)
    # gunicorn: seconds a worker may take on one request before it is restarted, and for graceful stop.
    timeout_seconds: int = Field(default=30, ge=1, le=3600)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        # RECOMMENDER_API_KEYS arrives as one string "key1,key2".
        if isinstance(value, str):
            return tuple(key.strip() for key in value.split(",") if key.strip())
        return value

    @field_validator("api_keys")
    @classmethod
    def _keys_are_long_enough(cls, keys: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for i, key in enumerate(keys):
            # The message must not echo the key.
            if len(key.get_secret_value()) < 16:
                raise ValueError(f"api key #{i + 1} is shorter than 16 characters")
        return keys


Aggregation = Literal["sum", "first", "last", "max"]


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
    # Embedded default only (in-process bus): this process also runs the trainer (a thread following the
    # event log and publishing versions the config watcher swaps in). With Redis the trainer is its own
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
    # Every bus key starts with "{key_prefix}" (one hash tag: the bus's Lua scripts touch several keys,
    # which Redis Cluster allows only within one slot).
    key_prefix: str = Field(default="rb", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    stream: str = Field(default="decisions", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    group: str = Field(default="joiner", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    # Budget of a bus write on the /v1/score and /v1/reward paths.
    timeout_ms: float = Field(default=50.0, gt=0, le=60_000)


# Settings a running service applies on a config-file change (everything else needs a restart).
HOT_RELOADABLE: dict[str, tuple[str, ...]] = {
    "policy": ("exploration",),
    "service": ("api_keys", "protect_score", "redis_retry_seconds", "queue_budget_ms"),
    "join": ("aggregation", "default_reward", "reward_range"),
}
