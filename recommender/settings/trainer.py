"""The ``trainer`` section of configs/*.yaml: how the learning loop learns and publishes (docs/learning.md).

- ``mode``: ``online`` (serve the model, explore, learn), ``apprentice`` (serve a fixed baseline, learn from
  what it earns, report how often the model agrees with it) or ``logging_only`` (serve the model frozen:
  decisions are logged, nothing is learned). Re-read while running by the serving workers and the trainer.
- ``model_update_interval``: seconds between published model versions.

Everything here is validated at load with unknown keys refused, like every other section.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

LearningMode = Literal["online", "apprentice", "logging_only"]


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
    # The apprentice agreement rate shown in /metrics and /v1/admin/settings is over this many most recent
    # decisions per worker (the counters behind it are cumulative).
    agreement_window: int = Field(default=1000, ge=10, le=1_000_000)


# Settings a running serving worker applies on a config-file change (see recommender.service.reload).
# Everything but seal_after_seconds, which the trainer checks against the join settings once at start.
TRAINER_HOT_RELOADABLE: tuple[str, ...] = (
    "mode",
    "apprentice_baseline",
    "model_update_interval",
    "poll_seconds",
    "agreement_window",
)
