"""Typed settings of online experiments: the ``experiments`` section of configs/*.yaml.

    experiments:
      current:                       # the running experiment, or null (the default): no experiment
        name: bandit-vs-baseline     # also the default salt of the assignment hash
        control: baseline            # the arm every other arm is compared against
        arms:
          - {name: baseline, kind: baseline, share: 0.5}     # the first candidate as sent, probability 1
          - {name: bandit, kind: policy, share: 0.5}         # the policy as configured in ``policy``
          # - {name: eps05, kind: policy, share: ..., exploration: {algorithm: epsilon_greedy, epsilon: 0.05}}
          # - {name: v3, kind: pinned, share: ..., model_version: "<a version in the model store>"}
      alpha: 0.05                    # the always-valid sequences' level
      mixture_scale: 0.02            # their tau, in reward units: about the effect the experiment looks for
      min_events: 100                # per arm, before a stop or promote decision

Arm kinds: ``baseline`` (the storefront's order: the first candidate with probability 1), ``policy`` (the
configured policy, optionally with its own ``exploration`` setting applied to the same learned weights), and
``pinned`` (a fixed model version from the model store, never swapped). Shares are positive and sum to 1.
The whole section is hot-reloadable: a valid change applies within seconds, an invalid one is refused.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from recommender.settings.policy import Exploration

ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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
    """The configured policy; with ``exploration``, that exploration setting on the same learned weights."""

    kind: Literal["policy"] = "policy"
    exploration: Exploration | None = None


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


class ExperimentsConfig(_Strict):
    """The ``experiments`` section: the running experiment (or none) and the analysis settings."""

    current: Experiment | None = None
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    mixture_scale: float = Field(default=0.02, gt=0.0)
    min_events: int = Field(default=100, ge=2)


# All of it applies live (recommender.service.reload): experiments start, stop and change shares without
# a restart.
EXPERIMENTS_HOT_RELOADABLE: tuple[str, ...] = ("current", "alpha", "mixture_scale", "min_events")
