"""The classical fixed-horizon comparison (Welch's two-sample test) and the sample-size plan for it.

Valid for ONE look at a sample size fixed in advance. Looking repeatedly and stopping at the first p < alpha
inflates the false-positive rate far beyond alpha (the tests show it on A/A simulations); use
``recommender.experiments.sequential`` for an experiment watched while it runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats as scipy_stats

from recommender.experiments.arm_stats import ArmStats


@dataclass(frozen=True)
class FixedHorizonTest:
    """Welch's test of arm - control: the difference, its (1 - alpha) interval, the t statistic and p-value."""

    difference: float
    interval: tuple[float, float]
    statistic: float
    p_value: float


def welch_test(control: ArmStats, arm: ArmStats, *, alpha: float = 0.05) -> FixedHorizonTest:
    """Welch's unequal-variance t test of mean(arm) - mean(control) = 0 (scipy's ``ttest_ind_from_stats``).

    Needs at least two observations per side; with zero variance on both sides the p-value is NaN.
    """
    if control.n < 2 or arm.n < 2:
        nan = math.nan
        return FixedHorizonTest(arm.mean - control.mean, (nan, nan), nan, nan)
    result = scipy_stats.ttest_ind_from_stats(
        arm.mean,
        math.sqrt(arm.variance),
        arm.n,
        control.mean,
        math.sqrt(control.variance),
        control.n,
        equal_var=False,
    )
    diff = arm.mean - control.mean
    se = math.sqrt(arm.variance / arm.n + control.variance / control.n)
    # Welch-Satterthwaite degrees of freedom for the interval, as scipy uses for the test.
    va, vc = arm.variance / arm.n, control.variance / control.n
    dof = (va + vc) ** 2 / (va * va / (arm.n - 1) + vc * vc / (control.n - 1)) if va + vc > 0 else math.inf
    t = float(scipy_stats.t.ppf(1.0 - alpha / 2.0, dof)) if math.isfinite(dof) else math.nan
    return FixedHorizonTest(diff, (diff - t * se, diff + t * se), float(result.statistic), float(result.pvalue))


@dataclass(frozen=True)
class SampleSizePlan:
    """Events needed for a fixed-horizon test: per arm (``per_arm``, in order) and in total."""

    per_arm: tuple[int, ...]
    total: int


def sample_size(
    *,
    baseline_mean: float,
    minimum_effect: float,
    alpha: float = 0.05,
    power: float = 0.8,
    shares: tuple[float, float] = (0.5, 0.5),
    baseline_std: float | None = None,
    arm_std: float | None = None,
) -> SampleSizePlan:
    """Events for a two-sided z test at level ``alpha`` to detect ``minimum_effect`` with probability ``power``.

    Total N = (z_{1-alpha/2} + z_{power})^2 (s_c^2 / share_c + s_a^2 / share_a) / MDE^2, rounded up so that
    each arm gets ceil(N share). ``shares`` = (control, arm) traffic shares. Standard deviations default to
    Bernoulli rewards: s_c^2 = p (1 - p) with p = ``baseline_mean`` and s_a^2 = (p + MDE)(1 - p - MDE).
    """
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError("alpha and power must be in (0, 1)")
    if minimum_effect == 0.0 or not math.isfinite(minimum_effect):
        raise ValueError("minimum_effect must be a non-zero finite number")
    if len(shares) != 2 or min(shares) <= 0.0:
        raise ValueError("shares must be two positive traffic shares (control, arm)")
    if baseline_std is None or arm_std is None:
        p, q = baseline_mean, baseline_mean + minimum_effect
        if not (0.0 <= p <= 1.0 and 0.0 <= q <= 1.0):
            raise ValueError("Bernoulli defaults need baseline_mean and baseline_mean + minimum_effect in [0, 1]")
        baseline_std = math.sqrt(p * (1.0 - p)) if baseline_std is None else baseline_std
        arm_std = math.sqrt(q * (1.0 - q)) if arm_std is None else arm_std
    z = float(scipy_stats.norm.ppf(1.0 - alpha / 2.0) + scipy_stats.norm.ppf(power))
    share_c, share_a = shares
    total = z * z * (baseline_std**2 / share_c + arm_std**2 / share_a) / minimum_effect**2
    per_arm = (math.ceil(total * share_c - 1e-9), math.ceil(total * share_a - 1e-9))
    return SampleSizePlan(per_arm=per_arm, total=sum(per_arm))
