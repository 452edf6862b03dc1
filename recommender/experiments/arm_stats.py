"""Per-arm sufficient statistics of the reward (count, sum, sum of squares) and the arm's mean with intervals.

``ArmStats`` values add up (``a + b``), so figures computed per log partition or per worker merge exactly.
Rewards are the slot-0 reward of each joined decision (one observation per decision).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

from recommender.experiments.sequential import normal_mixture_half_width


@dataclass(frozen=True)
class ArmStats:
    """Sufficient statistics of one arm's rewards: ``n`` observations, their sum and sum of squares."""

    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0

    @classmethod
    def of(cls, rewards: np.ndarray | list[float]) -> ArmStats:
        r = np.asarray(rewards, dtype=np.float64)
        return cls(n=int(r.size), total=float(r.sum()), total_sq=float(np.square(r).sum()))

    def __add__(self, other: ArmStats) -> ArmStats:
        return ArmStats(self.n + other.n, self.total + other.total, self.total_sq + other.total_sq)

    @property
    def mean(self) -> float:
        """The mean reward; NaN with no observation."""
        return self.total / self.n if self.n else math.nan

    @property
    def variance(self) -> float:
        """The unbiased sample variance of the rewards; NaN with fewer than two observations."""
        if self.n < 2:
            return math.nan
        return max(self.total_sq - self.total * self.total / self.n, 0.0) / (self.n - 1)


@dataclass(frozen=True)
class ArmSummary:
    """One arm's mean reward with a fixed-horizon normal interval and an always-valid one, at level 1 - alpha.

    ``interval``: mean +- z_{1-alpha/2} s / sqrt(n), valid for one look at a sample size fixed in advance.
    ``sequence``: the normal-mixture confidence sequence of ``recommender.experiments.sequential`` (valid at
    every look at once). Both are NaN with fewer than two observations.
    """

    arm: str
    n: int
    mean: float
    std: float
    interval: tuple[float, float]
    sequence: tuple[float, float]

    def as_dict(self) -> dict[str, object]:
        return {
            "arm": self.arm,
            "n": self.n,
            "mean": finite_or_none(self.mean),
            "std": finite_or_none(self.std),
            "interval": [finite_or_none(v) for v in self.interval],
            "sequence": [finite_or_none(v) for v in self.sequence],
        }


def finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def summarize_arm(arm: str, stats: ArmStats, *, alpha: float, mixture_scale: float) -> ArmSummary:
    """The ``ArmSummary`` of ``stats`` at level 1 - alpha; ``mixture_scale`` is the sequence's tau (reward units)."""
    if stats.n < 2:
        nan = (math.nan, math.nan)
        return ArmSummary(arm, stats.n, stats.mean, math.nan, nan, nan)
    std = math.sqrt(stats.variance)
    var_of_mean = stats.variance / stats.n
    z = float(scipy_stats.norm.ppf(1.0 - alpha / 2.0))
    half = z * math.sqrt(var_of_mean)
    seq_half = normal_mixture_half_width(var_of_mean, mixture_scale=mixture_scale, alpha=alpha)
    mean = stats.mean
    return ArmSummary(arm, stats.n, mean, std, (mean - half, mean + half), (mean - seq_half, mean + seq_half))
