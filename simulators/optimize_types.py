"""The typed inputs and results of a sweep of learning settings (``simulators.optimize``).

``OptimizeConfig`` (what a sweep computes), ``Difference`` (a corrected paired difference), ``PolicyResult``
(one policy's estimates, difference with the logged policy and learning curve), ``Recommendation``,
``FeatureImportance`` and ``OptimizeResult`` (everything a sweep of one slot produced); each has
``to_dict`` for the JSON document.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from simulators.errors import EstimatorError
from simulators.evaluate import EvaluationConfig
from simulators.replay import ReplaySetting
from simulators.results import PolicyEvaluation

# Below this effective sample size (the diagnostics' low-ESS threshold) a setting's estimate rests on too few
# rows' worth of data for its normal interval to be trusted: it is reported, flagged, never recommended.
MIN_REPLAY_ESS = 100.0

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
