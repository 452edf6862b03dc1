"""An experiment's analysis at one look: per-arm summaries, each arm against the control, the sample-ratio
check, and the decision (keep running, stop, promote).

Decision rule, at level 1 - alpha, every arm and the control having at least ``min_events`` observations:
- a sample-ratio mismatch: ``stop`` (the comparison cannot be trusted; fix assignment or logging first);
- some arm's always-valid difference sequence lies wholly above 0: ``promote`` the one with the highest mean;
- every arm's sequence lies wholly below 0: ``stop`` (the control stays);
- otherwise ``keep running``.
Only the always-valid sequence decides; the fixed-horizon test is reported for a run planned with
``fixed_horizon.sample_size`` and looked at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from recommender.experiments.arm_stats import ArmStats, ArmSummary, finite_or_none, summarize_arm
from recommender.experiments.fixed_horizon import FixedHorizonTest, welch_test
from recommender.experiments.sample_ratio import SampleRatioCheck, sample_ratio_check
from recommender.experiments.sequential import mixture_likelihood_ratio, normal_mixture_half_widths

KEEP_RUNNING = "keep running"
STOP = "stop"
PROMOTE = "promote"


def difference_sequence(
    control: tuple[np.ndarray, np.ndarray, np.ndarray],
    arm: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    alpha: float,
    mixture_scale: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized difference mean(arm) - mean(control) and its normal-mixture half-width.

    ``control`` and ``arm`` are (n, sum, sum of squares) arrays of one shape (e.g. simulations x looks).
    Returns (difference, half_width) of that shape; the half-width is infinite where a side has < 2 events.
    """
    (nc, sc, qc), (na, sa, qa) = control, arm
    nc, na = np.asarray(nc, dtype=np.float64), np.asarray(na, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_c, mean_a = sc / nc, sa / na
        var_c = np.maximum(qc - sc * mean_c, 0.0) / (nc - 1.0)
        var_a = np.maximum(qa - sa * mean_a, 0.0) / (na - 1.0)
        variance = np.where((nc >= 2) & (na >= 2), var_a / na + var_c / nc, np.nan)
    return mean_a - mean_c, normal_mixture_half_widths(variance, mixture_scale=mixture_scale, alpha=alpha)


@dataclass(frozen=True)
class ArmComparison:
    """An arm against the control: the difference of means, its always-valid sequence at this look, the mSPRT
    statistic (reject H0: no difference when >= 1/alpha), and the fixed-horizon Welch test."""

    arm: str
    control: str
    difference: float
    sequence: tuple[float, float]
    likelihood_ratio: float
    fixed_horizon: FixedHorizonTest

    @property
    def significant(self) -> bool:
        """The always-valid sequence excludes 0."""
        return self.sequence[0] > 0.0 or self.sequence[1] < 0.0

    def as_dict(self) -> dict[str, object]:
        fh = self.fixed_horizon
        return {
            "arm": self.arm,
            "control": self.control,
            "difference": finite_or_none(self.difference),
            "sequence": [finite_or_none(v) for v in self.sequence],
            "likelihood_ratio": finite_or_none(self.likelihood_ratio),
            "significant": self.significant,
            "fixed_horizon": {
                "interval": [finite_or_none(v) for v in fh.interval],
                "statistic": finite_or_none(fh.statistic),
                "p_value": finite_or_none(fh.p_value),
            },
        }


def compare(
    control_name: str, control: ArmStats, arm_name: str, arm: ArmStats, *, alpha: float, mixture_scale: float
) -> ArmComparison:
    """``ArmComparison`` of ``arm`` against ``control`` at level 1 - alpha."""
    diff, half = difference_sequence(
        (np.float64(control.n), np.float64(control.total), np.float64(control.total_sq)),
        (np.float64(arm.n), np.float64(arm.total), np.float64(arm.total_sq)),
        alpha=alpha,
        mixture_scale=mixture_scale,
    )
    d, h = float(diff), float(half)
    variance = arm.variance / arm.n + control.variance / control.n if arm.n >= 2 and control.n >= 2 else math.nan
    lr = mixture_likelihood_ratio(d, variance, mixture_scale=mixture_scale) if math.isfinite(d) else 1.0
    seq = (d - h, d + h) if math.isfinite(d) else (math.nan, math.nan)
    return ArmComparison(arm_name, control_name, d, seq, lr, welch_test(control, arm, alpha=alpha))


@dataclass(frozen=True)
class ExperimentAnalysis:
    """The whole analysis at one look. ``arms`` in configured order, the control first among ``comparisons``'
    reference; ``decision`` is one of KEEP_RUNNING, STOP, PROMOTE, with ``winner`` set for PROMOTE."""

    experiment: str
    control: str
    alpha: float
    summaries: tuple[ArmSummary, ...]
    comparisons: tuple[ArmComparison, ...]
    sample_ratio: SampleRatioCheck
    decision: str
    reason: str
    winner: str | None = None
    shares: Mapping[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "experiment": self.experiment,
            "control": self.control,
            "alpha": self.alpha,
            "arms": [s.as_dict() | {"share": self.shares.get(s.arm)} for s in self.summaries],
            "comparisons": [c.as_dict() for c in self.comparisons],
            "sample_ratio": {
                "statistic": self.sample_ratio.statistic,
                "p_value": self.sample_ratio.p_value,
                "mismatch": self.sample_ratio.mismatch,
            },
            "decision": self.decision,
            "reason": self.reason,
            "winner": self.winner,
        }


def analyze(
    experiment: str,
    stats: Mapping[str, ArmStats],
    shares: Mapping[str, float],
    control: str,
    *,
    alpha: float = 0.05,
    mixture_scale: float = 0.02,
    min_events: int = 100,
) -> ExperimentAnalysis:
    """The analysis of ``stats`` (per arm, every arm of ``shares`` present or counted as empty).

    ``shares`` map arm -> configured traffic share (summing to 1), in the experiment's order; ``control`` is
    one of them. ``alpha`` in (0, 1); ``mixture_scale`` the sequences' tau in reward units (see
    ``sequential``); ``min_events`` per arm before a stop or promote decision.
    """
    if control not in shares:
        raise ValueError(f"control arm {control!r} is not one of the arms {list(shares)}")
    names = list(shares)
    arm_stats = {name: stats.get(name, ArmStats()) for name in names}
    summaries = tuple(summarize_arm(n, arm_stats[n], alpha=alpha, mixture_scale=mixture_scale) for n in names)
    comparisons = tuple(
        compare(control, arm_stats[control], n, arm_stats[n], alpha=alpha, mixture_scale=mixture_scale)
        for n in names
        if n != control
    )
    srm = sample_ratio_check([arm_stats[n].n for n in names], [shares[n] for n in names])
    decision, reason, winner = _decide(arm_stats, comparisons, srm, min_events)
    return ExperimentAnalysis(
        experiment, control, alpha, summaries, comparisons, srm, decision, reason, winner, dict(shares)
    )


def _decide(
    stats: Mapping[str, ArmStats], comparisons: tuple[ArmComparison, ...], srm: SampleRatioCheck, min_events: int
) -> tuple[str, str, str | None]:
    if srm.mismatch:
        return STOP, f"sample ratio mismatch (chi-square p = {srm.p_value:.2g}): check assignment and logging", None
    short = [name for name, s in stats.items() if s.n < min_events]
    if short:
        return KEEP_RUNNING, f"fewer than {min_events} events in {', '.join(short)}", None
    better = [c for c in comparisons if c.sequence[0] > 0.0]
    if better:
        best = max(better, key=lambda c: c.difference)
        return PROMOTE, f"{best.arm} beats {best.control} (always-valid interval above 0)", best.arm
    if comparisons and all(c.sequence[1] < 0.0 for c in comparisons):
        return STOP, "every arm is worse than the control (always-valid intervals below 0)", None
    return KEEP_RUNNING, "no arm differs from the control yet", None
