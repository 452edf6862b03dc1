"""Mergeable sufficient statistics of an estimator's per-row terms, and the intervals computed from them.

Every estimator in ``simulators.estimators`` is written as

    V = (1/n) sum_i a_i  +  (sum_i b_i) / (sum_i d_i)

with per-row terms ``a`` (the plain mean part) and an optional self-normalized ratio part ``b / d``
(SNIPW: a = 0, b = w r, d = w; SNDR: a = q_hat(x, pi_e), b = w (r - q_hat), d = w). Rows of one decision
(positions of one page) share a context and are not independent, so statistics are kept per *round*
(cluster) c: u_c = sum over the round's rows of (a_i, 1, b_i, d_i). Everything below is a function of

- ``total`` = sum_c u_c                      (4,)
- ``moment`` = sum_c u_c u_c^T               (4, 4)
- ``boot`` = sum_c k_bc u_c, k_bc ~ Poisson(1) (B, 4)   Poisson bootstrap replicates

which add up across partitions. That is what lets the Dask backend evaluate a log partition by partition
and get the same numbers as one process.

Intervals, at level 1 - alpha, with C rounds, u_bar = total / C and f(u) = u0/u1 + u2/u3:

- normal (delta method over rounds): V +- z_{1-alpha/2} sqrt(g^T S g / C), g = grad f(u_bar),
  S = (moment - C u_bar u_bar^T) / (C - 1) the sample covariance of u_c.
- bootstrap percentile (Poisson bootstrap over rounds; Chamandy et al. 2012, "Estimating uncertainty
  for massive data streams"): the alpha/2 and 1 - alpha/2 quantiles of f(boot_b). It recomputes the
  self-normalization in every replicate, unlike OBP's bootstrap of the already-normalized round rewards.
- empirical Bernstein (Maurer and Pontil 2009, Theorem 4, two-sided by a union bound): for terms with
  range at most ``b``, V +- ( sqrt(2 s^2 ln(4/alpha) / C) + 7 b ln(4/alpha) / (3 (C - 1)) ), with s^2 the
  sample variance of the linearized round values. It holds in finite samples whatever the weight tail
  (given the range bound b, which is large when weights are), so it stays valid where the normal and
  bootstrap intervals under-cover. For the self-normalized estimators it is applied to the linearized
  terms, which is an approximation.

Clipping: when the terms carry ``bounds`` (low, high), a range the estimand is known to lie in (the
value of a policy lies in the reward range), every interval is intersected with it. Cutting off values
the estimand cannot take never lowers an interval's coverage and only narrows it; it matters most for
the empirical Bernstein interval, whose half-width grows with the weight bound (on a heavy-weight log
with 0/1 rewards it can be [-22.2, 22.2] before clipping, [0, 1] after). The point estimate is not
clipped. An interval lying wholly outside the bounds becomes the nearest bound, [high, high] or [low, low].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

# Bootstrap replicates are computed as (chunk x rounds) Poisson-count matrices times (rounds x 4);
# this caps one chunk's size in matrix entries to keep memory flat on large logs.
_BOOT_CHUNK_ENTRIES = 4_000_000


@dataclass(frozen=True)
class Terms:
    """Per-row terms of an estimator: V = mean(plain) + sum(ratio_num) / sum(ratio_den).

    ``plain`` (n,) float64; ``ratio_num`` and ``ratio_den`` (n,) float64 or both None. ``bounds``: the
    (low, high) range the estimand lies in, to which intervals are clipped; None clips nothing.
    """

    plain: np.ndarray
    ratio_num: np.ndarray | None = None
    ratio_den: np.ndarray | None = None
    bounds: tuple[float, float] | None = None

    @property
    def has_ratio(self) -> bool:
        return self.ratio_num is not None

    def matrix(self) -> np.ndarray:
        """(n, 4) rows (a_i, 1, b_i, d_i)."""
        n = self.plain.shape[0]
        out = np.zeros((n, 4), dtype=np.float64)
        out[:, 0] = self.plain
        out[:, 1] = 1.0
        if self.ratio_num is not None and self.ratio_den is not None:
            out[:, 2] = self.ratio_num
            out[:, 3] = self.ratio_den
        return out


@dataclass(frozen=True)
class Clusters:
    """Rows grouped by round: ``index`` (n,) dense round index in [0, count); ``count`` rounds;
    ``singletons`` True when every row is its own round (then no aggregation is needed)."""

    index: np.ndarray
    count: int
    singletons: bool

    @classmethod
    def from_round_ids(cls, round_id: np.ndarray) -> Clusters:
        n = round_id.shape[0]
        uniques, index = np.unique(round_id, return_inverse=True)
        return cls(index=index.astype(np.int64), count=int(uniques.shape[0]), singletons=uniques.shape[0] == n)

    def aggregate(self, rows: np.ndarray) -> np.ndarray:
        """Sum (n, m) row values per round: (count, m)."""
        if self.singletons:
            return rows  # the order of rounds does not matter to any statistic
        out = np.empty((self.count, rows.shape[1]), dtype=np.float64)
        for j in range(rows.shape[1]):
            out[:, j] = np.bincount(self.index, weights=rows[:, j], minlength=self.count)
        return out


@dataclass(frozen=True)
class TermStats:
    """Sufficient statistics of one estimator's terms over a set of rounds. Add two with ``merge``.

    ``range_bound`` is an upper bound on the spread (max - min) of a single row's term, used by the
    empirical Bernstein interval; ``max_round_rows`` the largest number of rows in one round; ``bounds``
    the range the intervals are clipped to (None: not clipped; see the module docstring).
    """

    total: np.ndarray
    moment: np.ndarray
    n_rows: int
    n_rounds: int
    max_round_rows: int
    has_ratio: bool
    range_bound: float
    boot: np.ndarray | None = None
    bounds: tuple[float, float] | None = None

    @classmethod
    def from_terms(
        cls,
        terms: Terms,
        clusters: Clusters,
        *,
        range_bound: float,
        n_bootstrap: int = 0,
        rng: np.random.Generator | None = None,
    ) -> TermStats:
        return cls.from_many([terms], clusters, range_bounds=[range_bound], n_bootstrap=n_bootstrap, rng=rng)[0]

    @classmethod
    def from_many(
        cls,
        many: list[Terms],
        clusters: Clusters,
        *,
        range_bounds: list[float],
        n_bootstrap: int = 0,
        rng: np.random.Generator | None = None,
    ) -> list[TermStats]:
        """Statistics of several estimators' terms on the same rows. Their bootstrap replicates share one
        set of Poisson counts (paired replicates, and one pass of random draws instead of one each)."""
        per_round = np.hstack([clusters.aggregate(terms.matrix()) for terms in many])
        boot = None
        if n_bootstrap > 0:
            if rng is None:
                raise ValueError("a random generator is needed for bootstrap replicates")
            boot = _poisson_bootstrap(per_round, n_bootstrap, rng)
        out = []
        for j, (terms, bound) in enumerate(zip(many, range_bounds, strict=True)):
            block = per_round[:, 4 * j : 4 * j + 4]
            out.append(
                cls(
                    total=block.sum(axis=0),
                    moment=block.T @ block,
                    n_rows=int(terms.plain.shape[0]),
                    n_rounds=int(block.shape[0]),
                    max_round_rows=int(block[:, 1].max()),
                    has_ratio=terms.has_ratio,
                    range_bound=float(bound),
                    boot=None if boot is None else boot[:, 4 * j : 4 * j + 4],
                    bounds=terms.bounds,
                )
            )
        return out

    def merge(self, other: TermStats) -> TermStats:
        if self.has_ratio != other.has_ratio:
            raise ValueError("cannot merge statistics of different estimators")
        if (self.boot is None) != (other.boot is None) or (
            self.boot is not None and other.boot is not None and self.boot.shape != other.boot.shape
        ):
            raise ValueError("cannot merge statistics with different bootstrap settings")
        return TermStats(
            total=self.total + other.total,
            moment=self.moment + other.moment,
            n_rows=self.n_rows + other.n_rows,
            n_rounds=self.n_rounds + other.n_rounds,
            max_round_rows=max(self.max_round_rows, other.max_round_rows),
            has_ratio=self.has_ratio,
            range_bound=max(self.range_bound, other.range_bound),
            boot=None if self.boot is None or other.boot is None else self.boot + other.boot,
            bounds=_union(self.bounds, other.bounds),
        )

    def value(self) -> float:
        return _value(self.total, self.has_ratio)

    def linearized_variance(self) -> float:
        """Sample variance of the per-round linearized values g^T u_c (0 with a single round)."""
        c = self.n_rounds
        if c < 2:
            return 0.0
        mean = self.total / c
        cov = (self.moment - c * np.outer(mean, mean)) / (c - 1)
        g = _gradient(mean, self.has_ratio)
        if not np.all(np.isfinite(g)):
            return math.nan
        return float(max(g @ cov @ g, 0.0))

    def standard_error(self) -> float:
        return math.sqrt(self.linearized_variance() / self.n_rounds) if self.n_rounds else math.nan

    def clip(self, low: float, high: float) -> tuple[float, float]:
        """(low, high) intersected with ``bounds`` (unchanged when there are none, or for NaN ends)."""
        if self.bounds is None:
            return low, high
        b_low, b_high = self.bounds
        return min(max(low, b_low), b_high), max(min(high, b_high), b_low)

    def normal_interval(self, alpha: float) -> tuple[float, float]:
        z = float(scipy_stats.norm.ppf(1.0 - alpha / 2.0))
        v, se = self.value(), self.standard_error()
        return self.clip(v - z * se, v + z * se)

    def bootstrap_interval(self, alpha: float) -> tuple[float, float] | None:
        if self.boot is None:
            return None
        values = np.array([_value(row, self.has_ratio) for row in self.boot])
        values = values[np.isfinite(values)]
        if values.size == 0:
            return math.nan, math.nan
        low, high = np.percentile(values, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
        return self.clip(float(low), float(high))

    def bernstein_interval(self, alpha: float) -> tuple[float, float]:
        c = self.n_rounds
        v = self.value()
        if c < 2 or not math.isfinite(self.range_bound):
            return self.clip(-math.inf, math.inf)
        # A round's linearized value is a sum over its rows scaled by rounds/rows, so its range is at most
        # the row range times (largest round size) / (mean round size).
        scale = self.max_round_rows * c / self.n_rows
        if self.has_ratio:
            # The ratio part is divided by mean(d); bound the inflation by the observed mean of d per row.
            mean_d = self.total[3] / self.n_rows
            scale *= max(1.0, 1.0 / mean_d) if mean_d > 0 else math.inf
        b = self.range_bound * scale
        log_term = math.log(4.0 / alpha)
        half = math.sqrt(2.0 * self.linearized_variance() * log_term / c) + 7.0 * b * log_term / (3.0 * (c - 1))
        return self.clip(v - half, v + half)


def _union(a: tuple[float, float] | None, b: tuple[float, float] | None) -> tuple[float, float] | None:
    """The smallest range holding both (partitions may see different observed reward ranges)."""
    if a is None or b is None:
        return None
    return min(a[0], b[0]), max(a[1], b[1])


def _value(total: np.ndarray, has_ratio: bool) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        plain = total[0] / total[1] if total[1] > 0 else math.nan
        if not has_ratio:
            return float(plain)
        ratio = total[2] / total[3] if total[3] != 0 else math.nan
        return float(plain + ratio)


def _gradient(mean: np.ndarray, has_ratio: bool) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.array([1.0 / mean[1], -mean[0] / mean[1] ** 2, 0.0, 0.0])
        if has_ratio:
            g[2] = 1.0 / mean[3]
            g[3] = -mean[2] / mean[3] ** 2
    return g


def _poisson_bootstrap(per_round: np.ndarray, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    c = per_round.shape[0]
    chunk = max(1, min(n_bootstrap, _BOOT_CHUNK_ENTRIES // max(c, 1)))
    out = np.empty((n_bootstrap, per_round.shape[1]), dtype=np.float64)
    for start in range(0, n_bootstrap, chunk):
        stop = min(start + chunk, n_bootstrap)
        counts = rng.poisson(1.0, size=(stop - start, c)).astype(np.float64)
        out[start:stop] = counts @ per_round
    return out
