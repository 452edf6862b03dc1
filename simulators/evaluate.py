"""Evaluating target policies on a log: estimators, intervals and diagnostics in one call.

A synthetic log, whose exact policy values are known, and the uniform policy as the target (a log on disk
is read first: ``log = read_log("var/events").bandit``, see ``simulators.readers``):

>>> from simulators import EvaluationConfig, evaluate_policy
>>> from simulators.synthetic import EpsilonGreedyPolicy, SyntheticEnvironment, UniformPolicy
>>> from simulators.targets import UniformTarget
>>> env = SyntheticEnvironment(n_users=50, n_items=5, seed=0)
>>> log = env.generate_log(EpsilonGreedyPolicy(epsilon=0.2), 2000, seed=0).bandit
>>> target = UniformTarget().apply(log).dist
>>> result = evaluate_policy(log, target, ["ipw", "snipw", "dr"], config=EvaluationConfig(n_bootstrap=0))
>>> interval = result.estimate("dr").interval("normal")
>>> interval.low < env.policy_value(UniformPolicy().table(env)) < interval.high  # covers the exact value
True

The work is split in two so a log can be evaluated partition by partition (``simulators.dask_backend``):
``partition_stats`` turns one partition into mergeable statistics, ``finalize`` turns merged statistics
into results. ``evaluate_policy`` is the two on the whole log.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulators.data import ActionDist, LoggedBandit
from simulators.diagnostics import WeightStats
from simulators.errors import EstimatorError
from simulators.estimators import ALL_ESTIMATORS, Estimator, OPEInputs, make_estimator
from simulators.readers import read_log
from simulators.results import EstimateResult, Interval, LogSummary, PolicyEvaluation
from simulators.reward_model import RewardPredictions, fit_reward_model
from simulators.stats import Clusters, Terms, TermStats
from simulators.target_specs import parse_target
from simulators.targets import Target

INTERVAL_METHODS = ("normal", "bootstrap", "bernstein")

# A part of a log evaluated on its own: the rows themselves, or a path ``read_log`` understands.
Partition = LoggedBandit | str | Path


@dataclass(frozen=True)
class EvaluationConfig:
    """Settings of an evaluation.

    - ``alpha``: intervals are at level 1 - alpha (0 < alpha < 1).
    - ``n_bootstrap``: Poisson-bootstrap replicates for the percentile interval; 0 turns it off (and makes
      evaluation cost a few vectorized passes over the log).
    - ``seed``: seeds the bootstrap and the reward model's fold split.
    - ``reward_model``: base model for DM/DR ("logistic", "ridge", "hgb", None = by reward type, or a
      scikit-learn estimator); ``n_folds``: cross-fitting folds.
    - ``reward_range``: (low, high) bounds on rewards for the empirical Bernstein interval; None uses the
      observed range (widened to include the reward model's predictions).
    """

    alpha: float = 0.05
    n_bootstrap: int = 200
    seed: int = 0
    reward_model: Any = None
    n_folds: int = 3
    reward_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise EstimatorError(f"alpha must lie in (0, 1), got {self.alpha}")
        if not isinstance(self.n_bootstrap, int) or self.n_bootstrap < 0:
            raise EstimatorError(f"n_bootstrap must be a non-negative integer, got {self.n_bootstrap!r}")
        if self.reward_range is not None and not self.reward_range[0] <= self.reward_range[1]:
            raise EstimatorError(f"reward_range must be (low, high) with low <= high, got {self.reward_range}")


def resolve_estimators(estimators: Sequence[str | Estimator] | None) -> tuple[Estimator, ...]:
    """Estimator objects from names (``"ipw"``, ``"dr-os:lambda=10"``) or objects; None means all seven."""
    if estimators is None:
        estimators = ALL_ESTIMATORS
    out = tuple(make_estimator(e) if isinstance(e, str) else e for e in estimators)
    if not out:
        raise EstimatorError("no estimator selected")
    for estimator in out:
        if not isinstance(estimator, Estimator):
            raise EstimatorError(f"{estimator!r} is not an estimator")
    return out


def prepare_inputs(
    log: LoggedBandit,
    target: ActionDist,
    rewards: RewardPredictions | None = None,
    reward_range: tuple[float, float] | None = None,
) -> tuple[OPEInputs, int | None]:
    """The shared per-row arrays, and the number of rows with support violations (None if unknown).

    w_i = pi_e(a_i|x_i, k_i) / pscore_i; q_hat(x_i, pi_e) = sum_a pi_e(a|x_i, k_i) q_hat(x_i, a).
    """
    target.check_fits(log)
    n = log.n_rounds
    rows = np.arange(n)
    pi_e = target.at_positions(log.position)
    weight = pi_e[rows, log.action] / log.pscore
    q_factual = q_pi = None
    low, high = (float(log.reward.min()), float(log.reward.max())) if reward_range is None else reward_range
    if rewards is not None:
        q = rewards.q_hat
        if q.shape != (n, log.n_actions):
            raise EstimatorError(f"q_hat has shape {q.shape}; the log needs {(n, log.n_actions)}")
        q_factual = q[rows, log.action]
        q_pi = np.einsum("ij,ij->i", pi_e, q)
        if reward_range is None:
            low, high = min(low, float(q.min())), max(high, float(q.max()))
    violations = None
    if log.logging_dist is not None:
        uncovered = (pi_e > 0.0) & (log.logging_dist <= 0.0)
        violations = int(np.count_nonzero(uncovered.any(axis=1)))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(pi_e > 0.0, pi_e / log.logging_dist, 0.0)
        weight_bound = math.inf if violations else float(ratio.max())
    else:
        weight_bound = float(weight.max())
    inputs = OPEInputs(
        reward=log.reward,
        weight=weight,
        q_factual=q_factual,
        q_pi=q_pi,
        weight_bound=weight_bound,
        reward_low=low,
        reward_high=high,
    )
    return inputs, violations


@dataclass(frozen=True)
class PartitionStats:
    """Mergeable statistics of one partition (or a whole log) for one target policy."""

    target: str
    estimators: tuple[Estimator, ...]
    terms: tuple[TermStats | None, ...]  # None where an estimator could not run (note says why)
    notes: tuple[str, ...]
    weights: WeightStats
    weight_bound_known: bool
    reward_model: str | None

    def merge(self, other: PartitionStats) -> PartitionStats:
        terms = tuple(
            None if a is None or b is None else a.merge(b) for a, b in zip(self.terms, other.terms, strict=True)
        )
        notes = tuple(a or b for a, b in zip(self.notes, other.notes, strict=True))
        return PartitionStats(
            target=self.target,
            estimators=self.estimators,
            terms=terms,
            notes=notes,
            weights=self.weights.merge(other.weights),
            weight_bound_known=self.weight_bound_known and other.weight_bound_known,
            reward_model=self.reward_model,
        )


def partition_stats(
    log: LoggedBandit,
    target: ActionDist,
    estimators: Sequence[str | Estimator] | None = None,
    rewards: RewardPredictions | None = None,
    config: EvaluationConfig | None = None,
    partition: int = 0,
) -> PartitionStats:
    """Statistics of every estimator on ``log`` (one partition). ``partition`` seeds its bootstrap stream.

    When an estimator needs a reward model and ``rewards`` is None, one is fitted with ``config``'s
    settings (cross-fitted within this partition).
    """
    config = config or EvaluationConfig()
    chosen = resolve_estimators(estimators)
    if rewards is None and any(e.needs_reward_model for e in chosen):
        rewards = fit_reward_model(log, config.reward_model, n_folds=config.n_folds, random_state=config.seed)
    inputs, violations = prepare_inputs(log, target, rewards, config.reward_range)
    clusters = Clusters.from_round_ids(log.round_id)
    all_terms: list[Terms] = [estimator.terms(inputs) for estimator in chosen]
    stats = TermStats.from_many(
        all_terms,
        clusters,
        range_bounds=[estimator.row_range(inputs) for estimator in chosen],
        n_bootstrap=config.n_bootstrap,
        rng=np.random.default_rng([config.seed, partition]),
    )
    notes = ["" for _ in chosen]
    return PartitionStats(
        target=target.name,
        estimators=chosen,
        terms=tuple(stats),
        notes=tuple(notes),
        weights=WeightStats.from_weights(inputs.weight, violations),
        weight_bound_known=log.logging_dist is not None,
        reward_model=rewards.description if rewards is not None else None,
    )


def finalize(stats: PartitionStats, config: EvaluationConfig | None = None) -> PolicyEvaluation:
    """Point estimates, standard errors and intervals from (merged) statistics."""
    config = config or EvaluationConfig()
    level = 1.0 - config.alpha
    results = []
    for estimator, term_stats, note in zip(stats.estimators, stats.terms, stats.notes, strict=True):
        if term_stats is None:
            nan = math.nan
            results.append(EstimateResult(estimator.label, estimator.name, nan, nan, (), note))
            continue
        value = term_stats.value()
        bounds = term_stats.bounds  # every interval is clipped to the reward range (docs/offline-evaluation.md)
        intervals = [Interval("normal", level, *term_stats.normal_interval(config.alpha), clipped_to=bounds)]
        boot = term_stats.bootstrap_interval(config.alpha)
        if boot is not None:
            intervals.append(Interval("bootstrap", level, *boot, clipped_to=bounds))
        intervals.append(Interval("bernstein", level, *term_stats.bernstein_interval(config.alpha), clipped_to=bounds))
        if not math.isfinite(value):
            note = note or "undefined: the target gives zero weight to every logged action"
        results.append(
            EstimateResult(estimator.label, estimator.name, value, term_stats.standard_error(), tuple(intervals), note)
        )
    return PolicyEvaluation(
        target=stats.target,
        estimates=tuple(results),
        diagnostics=stats.weights.summary(),
        reward_model=stats.reward_model,
        weight_bound_known=stats.weight_bound_known,
    )


def evaluate_policy(
    log: LoggedBandit,
    target: ActionDist,
    estimators: Sequence[str | Estimator] | None = None,
    rewards: RewardPredictions | None = None,
    config: EvaluationConfig | None = None,
) -> PolicyEvaluation:
    """Estimate the value of ``target`` on ``log`` with each estimator (all seven by default).

    ``rewards``: reward-model predictions for DM and the DR family; fitted (cross-fitted) when needed
    and not given. Returns estimates with normal, bootstrap (if ``n_bootstrap`` > 0) and empirical
    Bernstein intervals, and the weight diagnostics.
    """
    config = config or EvaluationConfig()
    return finalize(partition_stats(log, target, estimators, rewards, config), config)


def summarize_log(log: LoggedBandit, alpha: float = 0.05) -> LogSummary:
    """The log's size and its on-policy mean reward with a normal interval over rounds."""
    stats = TermStats.from_terms(Terms(plain=log.reward), Clusters.from_round_ids(log.round_id), range_bound=0.0)
    level = 1.0 - alpha
    return LogSummary(
        source=log.source,
        n_rows=log.n_rounds,
        n_decisions=log.n_decisions,
        n_actions=log.n_actions,
        n_positions=log.n_positions,
        mean_reward=stats.value(),
        mean_reward_interval=Interval("normal", level, *stats.normal_interval(alpha)),
        has_logging_dist=log.logging_dist is not None,
    )


def evaluate_partitioned(
    partitions: Sequence[Partition],
    target: Target | str,
    estimators: Sequence[str | Estimator] | None = None,
    config: EvaluationConfig | None = None,
    *,
    map_function: Callable[..., Iterable[PartitionStats]] = map,
) -> PolicyEvaluation:
    """Evaluate ``target`` over a log split into ``partitions`` and merge the statistics.

    Each partition is a LoggedBandit or a path ``read_log`` understands; ``target`` a Target or SPEC. A
    reward model, when needed, is cross-fitted within each partition. Partition i draws its bootstrap
    replicates from the stream (seed, i), so the result does not depend on where partitions run:
    ``map_function`` may be the builtin ``map`` (in process) or a cluster's map (``simulators.dask_backend``).
    """
    config = config or EvaluationConfig()
    chosen = resolve_estimators(estimators)
    if not partitions:
        raise EstimatorError("no partitions to evaluate")
    jobs = [(i, part, target, chosen, config) for i, part in enumerate(partitions)]
    results = list(map_function(evaluate_one_partition, jobs))
    merged = results[0]
    for result in results[1:]:
        merged = merged.merge(result)
    return finalize(merged, config)


def evaluate_one_partition(
    job: tuple[int, Partition, Target | str, tuple[Estimator, ...], EvaluationConfig],
) -> PartitionStats:
    """Statistics of one partition: ``job`` = (index, LoggedBandit or path, target, estimators, config)."""
    index, part, target, chosen, config = job
    log = part if isinstance(part, LoggedBandit) else read_log(part).bandit
    target = parse_target(target) if isinstance(target, str) else target
    applied = target.apply(log)
    return partition_stats(applied.log, applied.dist, chosen, None, config, partition=index)
