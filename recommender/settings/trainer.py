"""The ``trainer`` section of configs/*.yaml: how the learning loop learns and publishes (docs/learning.md).

- ``mode``: ``online`` (serve the model, explore, learn), ``apprentice`` (serve a fixed baseline, learn from
  what it earns, report how often the model agrees with it) or ``logging_only`` (serve the model frozen:
  decisions are logged, nothing is learned). Re-read while running by the serving workers and the trainer.
- ``model_update_interval``: seconds between published model versions.
- ``retention``: which published versions the trainer keeps after each publish (the others are deleted).

Everything here is validated at load with unknown keys refused, like every other section.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

LearningMode = Literal["online", "apprentice", "logging_only"]


class RetentionConfig(BaseModel):
    """``trainer.retention``: the model store keeps the union of these; the rest is pruned after a publish
    (``ModelStore.prune``). The current version and the rollback targets are never pruned."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The newest versions, by publication time. At the default 30 s interval, 50 is the last 25 minutes.
    keep_last: int = Field(default=50, ge=1, le=100_000)
    # Rollback targets: the versions that were current before the current one, most recent first.
    keep_previous_currents: int = Field(default=5, ge=0, le=1000)
    # Versions kept whatever their age (e.g. a known good model, a baseline for an experiment).
    pinned: tuple[str, ...] = ()


class TrainerConfig(BaseModel):
    """The ``trainer`` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: LearningMode = "online"
    # Apprentice mode serves this baseline: ``first`` is the first candidate the storefront sends (its own
    # top pick), so apprentice mode shows exactly what the storefront would have shown without us.
    apprentice_baseline: Literal["first"] = "first"
    # Seconds between published versions: each publish costs a model file write per trainer and a model
    # load per serving worker, so seconds is for demos and tests, minutes to hours for production.
    model_update_interval: float = Field(default=30.0, ge=1.0, le=86_400.0)
    # How often the trainer looks for new files in the event log (the in-process trainer is also woken by
    # the joiner after each batch).
    poll_seconds: float = Field(default=1.0, gt=0, le=60.0)
    # An hour partition of the event log is sealed this long after the hour ends: the checkpoint then keeps
    # only the partition's name, not its file names. Must exceed join.reward_wait_time +
    # join.recovery_seconds (no joiner writes into a partition later than that); checked by the trainer.
    seal_after_seconds: float = Field(default=86_400.0, ge=60.0, le=30 * 86_400.0)
    # A learned file's name leaves the checkpoint this long after its joiner named it (the partition's mark
    # then covers it; recommender.learning.checkpoint): the checkpoint in every version's metadata holds the
    # names of this many seconds of files at most. A joiner renames a file into place within seconds of
    # naming it; the margin covers a paused joiner and clock differences between hosts sharing the log.
    mark_after_seconds: float = Field(default=300.0, ge=10.0, le=86_400.0)
    # The apprentice agreement rate shown in /metrics and /v1/admin/settings is over this many most recent
    # decisions per worker (the counters behind it are cumulative).
    agreement_window: int = Field(default=1000, ge=10, le=1_000_000)
    retention: RetentionConfig = RetentionConfig()


# Settings a running serving worker applies on a config-file change (see recommender.service.reload).
# Everything but seal_after_seconds, which the trainer checks against the join settings once at start.
TRAINER_HOT_RELOADABLE: tuple[str, ...] = (
    "mode",
    "apprentice_baseline",
    "model_update_interval",
    "poll_seconds",
    "agreement_window",
    "retention",
)
