"""Typed settings of the scoring service: the ``service`` section of configs/*.yaml (the HTTP server's bind
address, gunicorn workers and threads, request limits, API keys, the hot-reload period, load shedding).
Unknown keys are rejected, like everywhere else. The ``join`` and ``bus`` sections are in
``recommender.settings.events``.

Which settings a running service re-applies when the file changes is listed in ``HOT_RELOADABLE``;
every other change needs a restart and is logged as such.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


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


# Settings a running service applies on a config-file change (everything else needs a restart).
HOT_RELOADABLE: dict[str, tuple[str, ...]] = {
    "policy": ("exploration",),
    "service": ("api_keys", "protect_score", "redis_retry_seconds", "queue_budget_ms"),
    "join": ("aggregation", "default_reward", "reward_range"),
}
