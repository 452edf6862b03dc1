"""Sample-ratio mismatch: are the arms' observed counts compatible with their configured traffic shares?

A mismatch (a chi-square goodness-of-fit p-value below ``threshold``, 0.001 by default as is customary, so
that a check run at every look rarely raises a false alarm) means assignment or logging is broken for some
arm (a crash path, a bot filter, lost rewards): the experiment's comparison cannot be trusted until fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class SampleRatioCheck:
    """Pearson's chi-square of observed vs expected counts, its p-value, and ``mismatch`` = p < threshold."""

    statistic: float
    p_value: float
    mismatch: bool


def sample_ratio_check(
    counts: list[int] | tuple[int, ...], shares: list[float] | tuple[float, ...], *, threshold: float = SRM_THRESHOLD
) -> SampleRatioCheck:
    """Chi-square test of ``counts`` (per arm) against ``shares`` (per arm, summing to 1), k - 1 degrees of freedom.

    With no observation at all there is nothing to test: p = 1, no mismatch.
    """
    observed = np.asarray(counts, dtype=np.float64)
    expected_share = np.asarray(shares, dtype=np.float64)
    if observed.shape != expected_share.shape or observed.size < 2:
        raise ValueError("need one count per arm and one share per arm, at least two arms")
    if not np.isclose(expected_share.sum(), 1.0) or np.any(expected_share <= 0.0):
        raise ValueError("shares must be positive and sum to 1")
    n = observed.sum()
    if n == 0:
        return SampleRatioCheck(0.0, 1.0, False)
    result = scipy_stats.chisquare(observed, n * expected_share)
    p = float(result.pvalue)
    return SampleRatioCheck(float(result.statistic), p, p < threshold)
