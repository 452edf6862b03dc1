"""Typed results of an evaluation, and their JSON form.

- ``Interval``: one confidence interval (method, level, low, high, and the range it was clipped to).
- ``EstimateResult``: one estimator's estimate of one target policy, with its standard error and intervals.
- ``PolicyEvaluation``: all estimates of one target policy and its weight diagnostics.
- ``EvaluationReport``: everything a run produced: the log summary, what the reader excluded, and the
  evaluations. ``to_dict`` / ``to_json`` give the machine-readable form the CLI writes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from simulators.diagnostics import WeightDiagnostics
from simulators.readers.bad_rows import ReadReport


def _num(value: float) -> float | None:
    """JSON has no NaN or infinity: write them as null."""
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval at ``level`` (e.g. 0.95) by ``method``
    (``normal``, ``bootstrap`` or ``bernstein``). ``clipped_to``: the (low, high) range the interval was
    intersected with (the reward range, where the policy's value lies; see ``simulators.stats``), or None
    when its maker did not record one; the JSON form has the key only when it is recorded."""

    method: str
    level: float
    low: float
    high: float
    clipped_to: tuple[float, float] | None = None

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def width(self) -> float:
        return self.high - self.low

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "level": self.level,
            "low": _num(self.low),
            "high": _num(self.high),
        }
        if self.clipped_to is not None:
            out["clipped_to"] = [_num(self.clipped_to[0]), _num(self.clipped_to[1])]
        return out


@dataclass(frozen=True)
class EstimateResult:
    """One estimate: ``estimator`` (short name with parameters), ``name`` (paper name), ``value``,
    ``std_error`` (delta method over rounds) and ``intervals``. ``note`` explains a NaN value."""

    estimator: str
    name: str
    value: float
    std_error: float
    intervals: tuple[Interval, ...]
    note: str = ""

    def interval(self, method: str) -> Interval:
        for interval in self.intervals:
            if interval.method == method:
                return interval
        raise KeyError(f"no {method} interval for {self.estimator}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimator": self.estimator,
            "name": self.name,
            "value": _num(self.value),
            "std_error": _num(self.std_error),
            "intervals": [i.to_dict() for i in self.intervals],
            "note": self.note,
        }


@dataclass(frozen=True)
class PolicyEvaluation:
    """The estimates of one target policy (``target`` names it) and its weight ``diagnostics``.
    ``low_ess``: the weights' effective sample size is below ``MIN_TRUSTED_ESS``, so the importance-weighted
    estimates are not to be trusted (see ``simulators.diagnostics``)."""

    target: str
    estimates: tuple[EstimateResult, ...]
    diagnostics: WeightDiagnostics
    reward_model: str | None = None
    weight_bound_known: bool = True

    def estimate(self, estimator: str) -> EstimateResult:
        for result in self.estimates:
            if result.estimator == estimator or result.estimator.split("(")[0] == estimator:
                return result
        raise KeyError(f"no {estimator} estimate for {self.target}")

    @property
    def low_ess(self) -> bool:
        return self.diagnostics.low_ess

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "low_ess": self.low_ess,
            "estimates": [e.to_dict() for e in self.estimates],
            "diagnostics": {k: (_num(v) if isinstance(v, float) else v) for k, v in self.diagnostics.to_dict().items()},
            "reward_model": self.reward_model,
            "weight_bound_known": self.weight_bound_known,
        }


@dataclass(frozen=True)
class LogSummary:
    """What was evaluated: the log's source and size, and its on-policy mean reward (the logged policy's
    value, with a normal interval over rounds)."""

    source: str
    n_rows: int
    n_decisions: int
    n_actions: int
    n_positions: int
    mean_reward: float
    mean_reward_interval: Interval
    has_logging_dist: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "n_rows": self.n_rows,
            "n_decisions": self.n_decisions,
            "n_actions": self.n_actions,
            "n_positions": self.n_positions,
            "mean_reward": _num(self.mean_reward),
            "mean_reward_interval": self.mean_reward_interval.to_dict(),
            "has_logging_dist": self.has_logging_dist,
        }


@dataclass(frozen=True)
class EvaluationReport:
    """A whole run: the log, what its reader excluded, one evaluation per target, and the settings."""

    log: LogSummary
    evaluations: tuple[PolicyEvaluation, ...]
    read_report: ReadReport | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "log": self.log.to_dict(),
            "read_report": self.read_report.to_dict() if self.read_report else None,
            "settings": self.settings,
            "evaluations": [e.to_dict() for e in self.evaluations],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)
