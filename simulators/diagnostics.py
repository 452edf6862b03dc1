"""Importance-weight diagnostics: how much a log can say about a target policy.

For weights w_i = pi_e(a_i|x_i) / pi_b(a_i|x_i), i = 1..n:

- effective sample size ESS = (sum_i w_i)^2 / sum_i w_i^2 (Kong 1992): n when all weights are equal,
  1 when one row carries all the mass. ``ess_ratio`` = ESS / n.
- ``low_ess``: ESS < ``MIN_TRUSTED_ESS`` (100). The estimate then rests on fewer than about a hundred
  rows' worth of data: the normal and bootstrap intervals, which rely on a central limit over the
  weighted rows, under-cover, and the estimate should not be trusted whatever its interval says. The
  threshold is absolute, not a share of n: what the variance depends on is how many rows effectively
  count, so a 10-million-row log with ESS 5,000 (0.05%) is fine and a 150-row log with ESS 90 is not.
- ``mean_weight`` E_n[w] should be close to 1 when the target's support is covered (it is an unbiased
  estimate of 1); far from 1 signals wrong propensities or a support mismatch.
- ``max_weight`` and ``top1_share``: the share of the total weight carried by the largest 1% of weights
  (ceil(n / 100) of them). A large share means a handful of rows decide the estimate.
- ``zero_share``: the share of rows whose weight is 0 (the target never shows the logged action).
- ``support_violations``: rows where the target puts mass on a candidate the logging policy gave
  probability 0 (only known when the log records full logging distributions; None otherwise).
  Importance-weighted estimators are biased on such rows.

The statistics merge across partitions (``WeightStats.merge``) so the Dask backend reports the same
figures; ``top1_share`` is exact as long as 1% of the merged rows fits in ``TOP_KEEP`` kept weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Each partition keeps its largest weights for the top-1% share. Exact for logs up to 100 x TOP_KEEP rows.
TOP_KEEP = 100_000
# Below this effective sample size an estimate is flagged as not to be trusted (see the module docstring).
MIN_TRUSTED_ESS = 100.0


@dataclass(frozen=True)
class WeightDiagnostics:
    """Summary of the importance weights of a (log, target) pair. See the module docstring."""

    n_rows: int
    ess: float
    ess_ratio: float
    mean_weight: float
    max_weight: float
    top1_share: float
    zero_share: float
    support_violations: int | None

    @property
    def low_ess(self) -> bool:
        """True when ESS < MIN_TRUSTED_ESS: too few effective rows to trust the estimate (NaN ESS too)."""
        return not self.ess >= MIN_TRUSTED_ESS

    def to_dict(self) -> dict[str, float | int | bool | None]:
        return {
            "n_rows": self.n_rows,
            "ess": self.ess,
            "ess_ratio": self.ess_ratio,
            "low_ess": self.low_ess,
            "mean_weight": self.mean_weight,
            "max_weight": self.max_weight,
            "top1_share": self.top1_share,
            "zero_share": self.zero_share,
            "support_violations": self.support_violations,
        }


@dataclass(frozen=True)
class WeightStats:
    """Mergeable sums behind ``WeightDiagnostics``."""

    n: int
    total: float
    total_sq: float
    n_zero: int
    top: np.ndarray  # largest weights, descending, at most TOP_KEEP
    support_violations: int | None

    @classmethod
    def from_weights(cls, weight: np.ndarray, support_violations: int | None = None) -> WeightStats:
        keep = min(weight.shape[0], TOP_KEEP)
        top = np.partition(weight, weight.shape[0] - keep)[weight.shape[0] - keep :] if keep else weight[:0]
        return cls(
            n=int(weight.shape[0]),
            total=float(weight.sum()),
            # Not np.dot: a multi-threaded BLAS sums in an order set by its thread count, so the same weights
            # gave a different last digit in a process with one BLAS thread (a Dask worker) than in another.
            total_sq=float(np.sum(weight * weight)),
            n_zero=int(np.count_nonzero(weight == 0.0)),
            top=np.sort(top)[::-1],
            support_violations=support_violations,
        )

    def merge(self, other: WeightStats) -> WeightStats:
        top = np.sort(np.concatenate([self.top, other.top]))[::-1][:TOP_KEEP]
        if self.support_violations is None or other.support_violations is None:
            violations = None
        else:
            violations = self.support_violations + other.support_violations
        return WeightStats(
            n=self.n + other.n,
            total=self.total + other.total,
            total_sq=self.total_sq + other.total_sq,
            n_zero=self.n_zero + other.n_zero,
            top=top,
            support_violations=violations,
        )

    def summary(self) -> WeightDiagnostics:
        n = self.n
        ess = self.total**2 / self.total_sq if self.total_sq > 0 else 0.0
        m = math.ceil(n / 100)
        top1 = float(self.top[:m].sum()) / self.total if self.total > 0 else math.nan
        return WeightDiagnostics(
            n_rows=n,
            ess=float(ess),
            ess_ratio=float(ess / n) if n else math.nan,
            mean_weight=self.total / n if n else math.nan,
            max_weight=float(self.top[0]) if self.top.size else math.nan,
            top1_share=top1,
            zero_share=self.n_zero / n if n else math.nan,
            support_violations=self.support_violations,
        )


def weight_diagnostics(weight: np.ndarray, support_violations: int | None = None) -> WeightDiagnostics:
    """Diagnostics of a vector of importance weights (n,), n >= 1."""
    return WeightStats.from_weights(np.asarray(weight, dtype=np.float64), support_violations).summary()
