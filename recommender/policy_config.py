"""Typed settings of the policy section (``policy`` in configs/*.yaml).

Placeholder shape; the policy module owns and extends it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EpsilonGreedy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    epsilon: float = Field(default=0.1, ge=0.0, le=1.0)


class PolicyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    exploration: EpsilonGreedy = EpsilonGreedy()
