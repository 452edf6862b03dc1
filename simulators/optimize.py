"""``optimize``: which learning settings should we run? A sweep of replays, compared with the logged policy.

All policies are evaluated on the same rows (one slot of the log, see ``simulators.replay_log``):

- ``logged``: the online policy that wrote the log (its on-policy mean reward);
- ``baseline``: the first candidate as sent; ``uniform``: every candidate equally likely;
- each learning setting (the configured one, listed ones, a search space's), replayed by
  ``simulators.replay`` (counterfactual progressive validation).

Per policy: every estimator's estimate with its intervals and the weight diagnostics (``PolicyEvaluation``),
the primary estimator's value over the log's time (learning curves), and the paired difference with the
logged policy: per row, the policy's estimator term minus the row's reward (the logged policy's on-policy
term), so the noise the two share cancels. The difference's normal interval is corrected for the number of
policies compared by **Bonferroni** (each at level 1 - alpha / m): the intervals then hold simultaneously
with probability >= 1 - alpha whatever the dependence between settings (replays on the same rows are strongly
dependent), which is what a recommendation read off a ranked table needs. Holm's step-down procedure rejects
more often but gives no simultaneous intervals, which the report shows.

Recommendation: among the settings whose corrected lower bound of the difference is above 0 and whose
weights' effective sample size is at least ``MIN_REPLAY_ESS``, the one with the highest estimate; if there
is none, nothing beat the logged policy and nothing is recommended.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as scipy_stats
from tqdm import tqdm

from simulators.data import ActionDist, LoggedBandit
from simulators.diagnostics import WeightStats
from simulators.errors import EstimatorError, TargetSpecError
from simulators.estimators import Estimator, OPEInputs
from simulators.evaluate import EvaluationConfig, finalize, partition_stats, prepare_inputs, resolve_estimators
from simulators.replay import (
    ReplaySetting,
    as_action_dist,
    chunk_means,
    first_candidate,
    replay_probs,
    time_bins,
    uniform,
)
from simulators.replay_log import ReplayLog
from simulators.results import EstimateResult, Interval, PolicyEvaluation
from simulators.reward_model import RewardPredictions, fit_reward_model
from simulators.stats import Clusters, Terms, TermStats

# Below this effective sample size (the diagnostics' low-ESS threshold) a setting's estimate rests on too few
# rows' worth of data for its normal interval to be trusted: it is reported, flagged, never recommended.
MIN_REPLAY_ESS = 100.0

# (data path, candidate counts, VW arguments) -> (n, k) pmfs; the builtin map or a cluster's.
ReplayJob = tuple[str, np.ndarray, list[str]]
MapFunction = Callable[[Callable[[ReplayJob], np.ndarray], Sequence[ReplayJob]], Iterable[np.ndarray]]


def replay_job(job: ReplayJob) -> np.ndarray:
    """One replay task: ``job`` = (converted log's path, candidate counts, VW arguments) -> (n, k) pmfs."""
    return replay_probs(*job)


def json_number(value: float) -> float | None:
    """JSON has no NaN or infinity: write them as null."""
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class OptimizeConfig:
    """Settings of a sweep.

    - ``estimators``: estimator names (``simulators.estimators``); ``primary`` ranks and recommends.
    - ``alpha``: the family-wise error level of the corrected difference intervals (and 1 - level of the
      per-policy intervals).
    - ``n_bootstrap``, ``reward_model``, ``n_folds``, ``seed``: as ``EvaluationConfig`` (the reward model for
      DR is fitted once, cross-fitted, and shared by every policy).
    - ``time_bins``: chunks of the log's time for the estimate-over-time curves.
    """

    estimators: tuple[str, ...] = ("ipw", "snipw", "dr")
    primary: str = "dr"
    alpha: float = 0.05
    n_bootstrap: int = 0
    reward_model: Any = None
    n_folds: int = 3
    seed: int = 0
    time_bins: int = 20

    def __post_init__(self) -> None:
        if self.primary not in self.estimators:
            raise EstimatorError(f"the primary estimator {self.primary!r} is not among {list(self.estimators)}")
        if self.time_bins < 1:
            raise EstimatorError(f"time_bins must be >= 1, got {self.time_bins}")
        self.evaluation()  # validates alpha and n_bootstrap

    def evaluation(self) -> EvaluationConfig:
        return EvaluationConfig(
            alpha=self.alpha,
            n_bootstrap=self.n_bootstrap,
            seed=self.seed,
            reward_model=self.reward_model,
            n_folds=self.n_folds,
        )


@dataclass(frozen=True)
class Difference:
    """A paired difference (policy - reference) of one estimator on the same rows, with a normal interval
    at ``level`` (already corrected: ``correction`` names how, over ``m`` comparisons)."""

    estimator: str
    value: float
    std_error: float
    low: float
    high: float
    level: float
    correction: str
    m: int

    @property
    def significant(self) -> bool:
        return self.low > 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimator": self.estimator,
            "value": json_number(self.value),
            "std_error": json_number(self.std_error),
            "low": json_number(self.low),
            "high": json_number(self.high),
            "level": self.level,
            "correction": self.correction,
            "comparisons": self.m,
        }


@dataclass(frozen=True)
class PolicyResult:
    """One policy of the sweep: ``kind`` is logged, baseline, uniform, configured, listed or search."""

    name: str
    kind: str
    evaluation: PolicyEvaluation
    difference: Difference | None
    timeline: tuple[float, ...]
    setting: ReplaySetting | None = None

    def value(self, estimator: str) -> float:
        return self.evaluation.estimate(estimator).value

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "overrides": dict(self.setting.overrides) if self.setting else None,
            "vw_args": self.setting.vw_args() if self.setting else None,
            "evaluation": self.evaluation.to_dict(),
            "difference_vs_logged": self.difference.to_dict() if self.difference else None,
            "timeline": [json_number(v) for v in self.timeline],
        }


@dataclass(frozen=True)
class Recommendation:
    """The recommended setting (None: nothing beat the logged policy) and why, in words."""

    policy: PolicyResult | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"setting": self.policy.name if self.policy else None, "reason": self.reason}


@dataclass(frozen=True)
class FeatureImportance:
    """One left-out key of a feature-importance ranking (``simulators.feature_importance``): ``value`` the
    setting's estimate without it, ``drop`` = V(all) - V(without)."""

    left_out: str
    value: float
    drop: Difference
    rank: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "left_out": self.left_out,
            "value_without": json_number(self.value),
            "rank": self.rank,
            "drop": self.drop.to_dict(),
        }


@dataclass(frozen=True)
class OptimizeResult:
    """Everything a sweep produced. ``policies`` are in report order: logged, baselines, then settings by
    descending primary estimate. ``feature_importance`` is filled by ``simulators.feature_importance``."""

    source: str
    n_rows: int
    position: int
    config: OptimizeConfig
    policies: tuple[PolicyResult, ...]
    recommendation: Recommendation
    timeline_ends: tuple[str, ...]
    notes: tuple[str, ...] = ()
    feature_importance: tuple[FeatureImportance, ...] = ()
    base: ReplaySetting | None = None

    def policy(self, name: str) -> PolicyResult:
        for result in self.policies:
            if result.name == name:
                return result
        raise KeyError(f"no policy {name!r} in this sweep")

    @property
    def settings(self) -> tuple[PolicyResult, ...]:
        return tuple(p for p in self.policies if p.setting is not None and p.kind != "logged")

    @property
    def recommended(self) -> PolicyResult | None:
        return self.recommendation.policy

    def with_feature_importance(self, rows: Sequence[FeatureImportance]) -> OptimizeResult:
        return OptimizeResult(
            self.source,
            self.n_rows,
            self.position,
            self.config,
            self.policies,
            self.recommendation,
            self.timeline_ends,
            self.notes,
            tuple(rows),
            self.base,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "log": {"source": self.source, "rows": self.n_rows, "position": self.position},
            "settings": {
                "estimators": list(self.config.estimators),
                "primary": self.config.primary,
                "alpha": self.config.alpha,
                "correction": "bonferroni",
            },
            "policies": [p.to_dict() for p in self.policies],
            "recommendation": self.recommendation.to_dict(),
            "timeline_ends": list(self.timeline_ends),
            "feature_importance": [f.to_dict() for f in self.feature_importance],
            "notes": list(self.notes),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


@dataclass
class RowEvaluator:
    """Evaluates policies on one ReplayLog's rows, reusing what they share: the estimators, the reward model
    (fitted once), the round clusters, the time chunks, and ``m``, the number of comparisons the paired
    differences are Bonferroni-corrected for."""

    log: ReplayLog
    config: OptimizeConfig
    estimators: tuple[Estimator, ...]
    rewards: RewardPredictions | None
    clusters: Clusters
    chunks: list[np.ndarray]
    m: int = 1
    notes: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, log: ReplayLog, config: OptimizeConfig, rewards: RewardPredictions | None = None) -> RowEvaluator:
        estimators = resolve_estimators(config.estimators)
        bandit = log.bandit
        if rewards is None and any(e.needs_reward_model for e in estimators):
            rewards = fit_reward_model(bandit, config.reward_model, n_folds=config.n_folds, random_state=config.seed)
        return cls(
            log,
            config,
            estimators,
            rewards,
            Clusters.from_round_ids(bandit.round_id),
            time_bins(bandit.n_rounds, config.time_bins),
        )

    def primary(self) -> Estimator:
        return self.estimators[self.config.estimators.index(self.config.primary)]

    def inputs(self, dist: ActionDist) -> OPEInputs:
        return prepare_inputs(self.log.bandit, dist, self.rewards)[0]

    def evaluate(self, dist: ActionDist) -> PolicyEvaluation:
        stats = partition_stats(self.log.bandit, dist, self.estimators, self.rewards, self.config.evaluation())
        return finalize(stats, self.config.evaluation())

    def difference(self, terms: Terms, reference: np.ndarray, range_bound: float) -> Difference:
        """The paired difference of ``terms`` minus the per-row ``reference`` terms, Bonferroni-corrected."""
        diff = Terms(plain=terms.plain - reference, ratio_num=terms.ratio_num, ratio_den=terms.ratio_den)
        stats = TermStats.from_terms(diff, self.clusters, range_bound=range_bound)
        alpha = self.config.alpha / self.m
        z = float(scipy_stats.norm.ppf(1.0 - alpha / 2.0))
        value, se = stats.value(), stats.standard_error()
        return Difference(
            self.config.primary, value, se, value - z * se, value + z * se, 1.0 - alpha, "bonferroni", self.m
        )

    def timeline(self, terms: Terms) -> tuple[float, ...]:
        if terms.ratio_num is None or terms.ratio_den is None:
            return tuple(chunk_means(terms.plain, self.chunks))
        out = []
        for chunk in self.chunks:
            den = float(np.sum(terms.ratio_den[chunk]))
            ratio = float(np.sum(terms.ratio_num[chunk])) / den if den else math.nan
            out.append(float(np.mean(terms.plain[chunk])) + ratio)
        return tuple(out)

    def result(self, name: str, kind: str, dist: ActionDist, setting: ReplaySetting | None) -> PolicyResult:
        primary = self.primary()
        inputs = self.inputs(dist)
        terms = primary.terms(inputs)
        difference = self.difference(terms, self.log.bandit.reward, primary.row_range(inputs))
        return PolicyResult(name, kind, self.evaluate(dist), difference, self.timeline(terms), setting)

    def logged(self) -> PolicyResult:
        """The logging policy: its on-policy mean reward, for every estimator (w = 1 on every row)."""
        bandit = self.log.bandit
        level = 1.0 - self.config.alpha
        stats = TermStats.from_terms(Terms(plain=bandit.reward), self.clusters, range_bound=0.0)
        low, high = stats.normal_interval(self.config.alpha)
        estimates = tuple(
            EstimateResult(
                e.label,
                e.name,
                stats.value(),
                stats.standard_error(),
                (Interval("normal", level, low, high),),
                "on-policy mean of the log",
            )
            for e in self.estimators
        )
        evaluation = PolicyEvaluation("logged", estimates, WeightStats.from_weights(np.ones(bandit.n_rounds)).summary())
        return PolicyResult("logged", "logged", evaluation, None, tuple(chunk_means(bandit.reward, self.chunks)))


def run_sweep(
    log: ReplayLog,
    settings: Sequence[tuple[str, ReplaySetting]],
    config: OptimizeConfig | None = None,
    *,
    map_function: MapFunction = map,
    progress: bool = False,
    rewards: RewardPredictions | None = None,
) -> OptimizeResult:
    """Replay every setting (``(kind, setting)`` pairs; kind: configured, listed or search) over ``log`` and
    compare them, with the logged policy, the baseline and uniform, on the same rows.

    ``map_function`` runs the replays (the builtin ``map`` in process; ``simulators.dask_backend`` passes a
    cluster's); the results do not depend on it. Raises TargetSpecError when a label repeats.
    """
    config = config or OptimizeConfig()
    labels = [s.label for _, s in settings]
    if len(set(labels)) != len(labels):
        raise TargetSpecError(f"setting labels repeat: {sorted({x for x in labels if labels.count(x) > 1})}")
    shared = RowEvaluator.build(log, config, rewards)
    shared.m = len(settings) + 2  # every policy compared with the logged one: the settings, baseline, uniform
    jobs: list[ReplayJob] = [(str(log.path), log.counts, s.vw_args()) for _, s in settings]
    pmfs = list(
        tqdm(
            map_function(replay_job, jobs),
            total=len(jobs),
            desc="replaying settings",
            unit="setting",
            disable=None if progress else True,
        )
    )
    replayed = [
        shared.result(s.label, kind, as_action_dist(log, p, s.label), s)
        for (kind, s), p in zip(settings, pmfs, strict=True)
    ]
    replayed.sort(key=lambda r: -_ranking_value(r, config.primary))
    fixed = [
        shared.result("baseline", "baseline", first_candidate(log), None),
        shared.result("uniform", "uniform", uniform(log), None),
    ]
    policies = (shared.logged(), *fixed, *replayed)
    bandit = log.bandit
    ends = _bin_ends(bandit, shared.chunks)
    notes = list(shared.notes)
    small = [r.name for r in replayed if _low_ess(r)]
    if small:
        notes.append(
            f"effective sample size below {MIN_REPLAY_ESS:g} for {', '.join(small)}: their estimates rest on "
            "few rows (the setting rarely agrees with the logged actions) and are not recommended"
        )
    base = next((s for kind, s in settings if kind == "configured"), None)
    return OptimizeResult(
        bandit.source,
        bandit.n_rounds,
        int(bandit.position[0]),
        config,
        policies,
        recommend(replayed, config),
        ends,
        tuple(notes),
        (),
        base,
    )


def _ranking_value(result: PolicyResult, estimator: str) -> float:
    value = result.value(estimator)
    return value if math.isfinite(value) else -math.inf


def _low_ess(result: PolicyResult) -> bool:
    return not result.evaluation.diagnostics.ess >= MIN_REPLAY_ESS


def recommend(settings: Sequence[PolicyResult], config: OptimizeConfig) -> Recommendation:
    """The best setting whose corrected lower bound beats the logged policy, or None (see the module docstring)."""
    beating = [r for r in settings if r.difference is not None and r.difference.significant and not _low_ess(r)]
    if not beating:
        best = max(settings, key=lambda r: _ranking_value(r, config.primary), default=None)
        detail = ""
        if best is not None and best.difference is not None:
            d = best.difference
            detail = (
                f" The best estimate, {best.name}, differs by {d.value:+.4g} with a {d.level:.4g} interval "
                f"[{d.low:.4g}, {d.high:.4g}] that does not lie above 0."
            )
        return Recommendation(
            None,
            "Nothing beat the logged policy: no setting's lower bound of the difference "
            f"({config.primary}, Bonferroni over the policies compared) is above 0.{detail}",
        )
    best = max(beating, key=lambda r: _ranking_value(r, config.primary))
    d = best.difference
    assert d is not None
    return Recommendation(
        best,
        f"{best.name} beats the logged policy by {d.value:+.4g} ({config.primary}); its {d.level:.4g} interval "
        f"[{d.low:.4g}, {d.high:.4g}], Bonferroni-corrected over {d.m} comparisons, lies above 0"
        + (f"; {len(beating) - 1} other setting(s) also beat it, with lower estimates." if len(beating) > 1 else "."),
    )


def _bin_ends(bandit: LoggedBandit, chunks: list[np.ndarray]) -> tuple[str, ...]:
    if bandit.timestamp is None:
        return tuple(f"row {int(c[-1]) + 1}" for c in chunks)
    return tuple(str(bandit.timestamp[int(c[-1])].astype("datetime64[s]")) for c in chunks)


def write_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename, so an
    interrupted run (Ctrl-C) leaves either the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def settings_from(
    base: ReplaySetting | None, listed: Sequence[ReplaySetting], search: Sequence[ReplaySetting]
) -> list[tuple[str, ReplaySetting]]:
    """(kind, setting) pairs: the configured one, listed ones, then the search's; a setting that runs the
    same VW arguments as an earlier one is left out (its first label stays)."""
    out: list[tuple[str, ReplaySetting]] = []
    seen: set[tuple[str, ...]] = set()
    for kind, group in (("configured", [base] if base else []), ("listed", listed), ("search", search)):
        for setting in group:
            key = tuple(setting.vw_args())
            if key not in seen:
                seen.add(key)
                out.append((kind, setting))
    if not out:
        raise TargetSpecError("no setting to replay")
    return out
