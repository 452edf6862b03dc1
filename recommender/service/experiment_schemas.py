"""The body of ``GET /v1/admin/experiments`` as pydantic models, for /openapi.json (the route returns
``ExperimentAnalysis.as_dict()`` of ``recommender.experiments.analysis``; tests check the two agree).

Intervals are ``[low, high]``; a figure that does not exist yet (fewer than two observations) is null.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Interval = list[float | None]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExperimentArmFigures(_Body):
    arm: str
    share: float | None = Field(description="the configured traffic share")
    n: int = Field(description="joined decisions of the arm in the event log")
    mean: float | None = Field(description="mean slot-0 reward (the default reward where none came)")
    std: float | None
    interval: Interval = Field(description="fixed-horizon normal interval of the mean (one planned look)")
    sequence: Interval = Field(description="always-valid interval of the mean (valid at every look)")


class FixedHorizonFigures(_Body):
    interval: Interval
    statistic: float | None = Field(description="Welch's t")
    p_value: float | None


class ExperimentComparisonFigures(_Body):
    arm: str
    control: str
    difference: float | None = Field(description="mean(arm) - mean(control)")
    sequence: Interval = Field(description="the difference's always-valid confidence sequence at this look")
    likelihood_ratio: float | None = Field(description="mixture SPRT statistic; >= 1/alpha rejects no difference")
    significant: bool = Field(description="the sequence excludes 0")
    fixed_horizon: FixedHorizonFigures


class SampleRatioFigures(_Body):
    statistic: float
    p_value: float
    mismatch: bool = Field(description="chi-square p < 0.001: assignment or logging is broken")


class ExperimentStatus(_Body):
    """The running experiment analysed from the event log, or ``status: none``."""

    status: Literal["none", "running"]
    experiment: str | None
    error: str | None = Field(default=None, description="present when the event log cannot be read yet")
    control: str | None = None
    alpha: float | None = None
    arms: list[ExperimentArmFigures] | None = None
    comparisons: list[ExperimentComparisonFigures] | None = None
    sample_ratio: SampleRatioFigures | None = None
    decision: Literal["keep running", "stop", "promote"] | None = None
    reason: str | None = None
    winner: str | None = Field(default=None, description="the arm to promote, with decision promote")
