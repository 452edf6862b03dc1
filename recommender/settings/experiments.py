"""Typed settings of online experiments: the ``experiments`` section of configs/*.yaml.

    experiments:
      current:                       # the running experiment, or null (the default): no experiment
        name: bandit-vs-baseline     # also the default salt of the assignment hash
        control: baseline            # the arm every other arm is compared against
        started_at: 2024-05-01T09:00:00Z  # optional: the analysis reads the event log from then on
        arms:
          - {name: baseline, kind: baseline, share: 0.5}     # the first candidate as sent, probability 1
          - {name: bandit, kind: policy, share: 0.5}         # the policy as configured in ``policy``
          # - {name: eps05, kind: policy, share: ..., exploration: {algorithm: epsilon_greedy, epsilon: 0.05}}
          # - {name: slow, kind: policy, share: ..., learning: {learning_rate: 0.5}}   # its own learner
          # - {name: v3, kind: pinned, share: ..., model_version: "<a version in the model store>"}
      alpha: 0.05                    # the always-valid sequences' level
      mixture_scale: 0.02            # their tau, in reward units: about the effect the experiment looks for
      min_events: 100                # per arm, before a stop or promote decision

Arm kinds: ``baseline`` (the storefront's order: the first candidate with probability 1), ``policy`` (the
configured policy with any of its own ``exploration``, ``learning`` and ``interactions``), and ``pinned`` (a
fixed model version from the model store, never swapped). Shares are positive and sum to 1.

A ``policy`` arm whose settings change what the weights learn (``learning``, ``interactions``, or an
exploration VW cannot run on the configured policy's weights: another family, or a structural field such as
``bags``) is **separately learned**: its own learner and its own namespace of the model store
(``ModelStore.arm_store``). An arm with only an exploration VW can apply to the shared weights serves the
shared model under that exploration (``PolicyArm.learns_separately``).
The whole section is hot-reloadable: a valid change applies within seconds, an invalid one is refused.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from recommender.settings.policy import Exploration, LearningSettings, PolicyConfig

ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Experiment names name a folder of the model store (separately learned arms) and a metrics label.
EXPERIMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Arm(_Strict):
    name: str
    share: float = Field(gt=0.0, le=1.0)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not ARM_NAME.match(value):
            raise ValueError("must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
        return value


class BaselineArm(_Arm):
    """The storefront's own order: the first candidate as sent, with probability 1."""

    kind: Literal["baseline"] = "baseline"


class PolicyArm(_Arm):
    """The configured ``policy`` section with this arm's ``exploration``, ``learning`` and ``interactions``
    (each None: the configured one)."""

    kind: Literal["policy"] = "policy"
    exploration: Exploration | None = None
    learning: LearningSettings | None = None
    interactions: tuple[tuple[str, ...], ...] | None = None

    def policy_config(self, main: PolicyConfig) -> PolicyConfig:
        """``main`` with this arm's settings. Raises pydantic's ValidationError for an invalid combination
        (e.g. squarecb with cb_type ips); ``AppConfig`` checks every arm at load (``arm_policy_problem``)."""
        overrides = {
            name: value.model_dump(mode="json", by_alias=True) if isinstance(value, BaseModel) else value
            for name in ("exploration", "learning", "interactions")
            if (value := getattr(self, name)) is not None
        }
        if not overrides:
            return main
        return PolicyConfig.model_validate({**main.model_dump(mode="json", by_alias=True), **overrides})

    def learns_separately(self, main: PolicyConfig) -> bool:
        """True when the arm needs its own learner: its learning settings or interactions differ from
        ``main``'s, or VW cannot run its exploration on weights trained under ``main``'s
        (``ExplorationSettings.change_refusal``)."""
        config = self.policy_config(main)
        if config.learning != main.learning or config.interactions != main.interactions:
            return True
        return main.exploration.change_refusal(config.exploration, mode=main.mode) is not None


class PinnedArm(_Arm):
    """A fixed model version from the model store (never swapped while the experiment runs)."""

    kind: Literal["pinned"] = "pinned"
    model_version: str = Field(min_length=1)


Arm = Annotated[Union[BaselineArm, PolicyArm, PinnedArm], Field(discriminator="kind")]  # noqa: UP007


class Experiment(_Strict):
    """One experiment: its arms (at least two, distinct names, shares summing to 1) and its control arm."""

    name: str = Field(min_length=1, max_length=128)
    control: str
    arms: tuple[Arm, ...] = Field(min_length=2)
    salt: str | None = None  # None: the name
    # When the experiment started: its analysis reads the event log from then on (the hour partitions before
    # it are not opened). None: the whole log. A time without a zone is UTC.
    started_at: datetime | None = None

    @field_validator("started_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not EXPERIMENT_NAME.match(value):
            raise ValueError("must be 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Experiment:
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise ValueError("arm names must be distinct")
        if self.control not in names:
            raise ValueError(f"control {self.control!r} is not one of the arms {names}")
        total = math.fsum(arm.share for arm in self.arms)
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"arm shares must sum to 1, they sum to {total:g}")
        return self

    @property
    def assignment_salt(self) -> str:
        return self.salt if self.salt is not None else self.name

    def arm(self, name: str) -> BaselineArm | PolicyArm | PinnedArm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(name)

    @property
    def shares(self) -> dict[str, float]:
        return {arm.name: arm.share for arm in self.arms}

    def separately_learned(self, main: PolicyConfig) -> tuple[PolicyArm, ...]:
        """The ``policy`` arms that need their own learner under the configured ``main`` policy."""
        return tuple(a for a in self.arms if isinstance(a, PolicyArm) and a.learns_separately(main))


class ExperimentsConfig(_Strict):
    """The ``experiments`` section: the running experiment (or none) and the analysis settings."""

    current: Experiment | None = None
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    mixture_scale: float = Field(default=0.02, gt=0.0)
    min_events: int = Field(default=100, ge=2)

    def arm_policy_problem(self, main: PolicyConfig) -> str | None:
        """Why a ``policy`` arm's settings do not combine with the configured ``main`` policy (the first such
        arm, naming its key path), or None."""
        if self.current is None:
            return None
        for index, arm in enumerate(self.current.arms):
            if not isinstance(arm, PolicyArm):
                continue
            try:
                arm.policy_config(main)
            except ValidationError as exc:
                error = exc.errors()[0]
                key = ".".join(str(part) for part in error["loc"])
                return f"experiments.current.arms.{index}.{key}: {error['msg'].removeprefix('Value error, ')}"
        return None


# All of it applies live (recommender.service.reload): experiments start, stop and change shares without
# a restart.
EXPERIMENTS_HOT_RELOADABLE: tuple[str, ...] = ("current", "alpha", "mixture_scale", "min_events")
