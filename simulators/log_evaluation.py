"""Evaluating a log: read it, apply one or more targets, run the chosen estimators, and report.

``evaluate_log`` is what ``recommender evaluate`` calls, and the easiest entry point from Python. The log
may be a path (``evaluate_log("var/events", ...)``) or, as here, a LoggedBandit already in memory:

>>> from simulators import evaluate_log
>>> from simulators.synthetic import EpsilonGreedyPolicy, SyntheticEnvironment
>>> env = SyntheticEnvironment(n_users=50, n_items=5, seed=0)
>>> log = env.generate_log(EpsilonGreedyPolicy(epsilon=0.2), 2000, seed=0).bandit
>>> run = evaluate_log(log, ["uniform", "epsilon:0.05"], estimators=["ipw", "snipw", "dr"])
>>> [(evaluation.target, [estimate.estimator for estimate in evaluation.estimates])
...  for evaluation in run.report.evaluations]
[('uniform', ['ipw', 'snipw', 'dr']), ('epsilon:0.05', ['ipw', 'snipw', 'dr'])]
>>> document = run.report.to_json()  # the JSON document of ``recommender evaluate --json``
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recommender.settings.app import AppConfig
from simulators.data import LoggedBandit
from simulators.estimators import Estimator
from simulators.evaluate import EvaluationConfig, evaluate_policy, resolve_estimators, summarize_log
from simulators.readers import LoadedLog, read_log
from simulators.results import EvaluationReport, PolicyEvaluation
from simulators.reward_model import RewardPredictions, fit_reward_model
from simulators.target_specs import parse_target
from simulators.targets import AppliedTarget, Target


@dataclass(frozen=True, eq=False)
class TargetRun:
    """One target's evaluation, with the applied distribution kept for plots."""

    applied: AppliedTarget
    evaluation: PolicyEvaluation

    @property
    def weights(self) -> np.ndarray:
        log = self.applied.log
        pi_e = self.applied.dist.at_positions(log.position)
        return pi_e[np.arange(log.n_rounds), log.action] / log.pscore


@dataclass(frozen=True, eq=False)
class EvaluationRun:
    """The report (typed, JSON-able) and, for the HTML report, the log and each target's run."""

    report: EvaluationReport
    log: LoggedBandit
    runs: tuple[TargetRun, ...]


def evaluate_log(
    log: str | Path | LoadedLog | LoggedBandit,
    targets: Sequence[str | Target],
    estimators: Sequence[str | Estimator] | None = None,
    config: EvaluationConfig | None = None,
    *,
    format: str = "auto",
    strict: bool = False,
    app_config: AppConfig | None = None,
) -> EvaluationRun:
    """Read ``log`` (a path, a reader's result, or a LoggedBandit), evaluate each target, and report.

    Targets are SPEC strings (see ``simulators.target_specs``; ``app_config`` is what VW targets build on)
    or Target objects. A reward model, when an
    estimator needs one, is fitted once per target's evaluation rows (cross-fitted, ``config.n_folds``).
    """
    config = config or EvaluationConfig()
    chosen = resolve_estimators(estimators)
    read_report = None
    if isinstance(log, str | Path):
        log = read_log(log, format, strict=strict)
    if isinstance(log, LoadedLog):
        read_report = log.report
        log = log.bandit
    resolved = [parse_target(t, app_config) if isinstance(t, str) else t for t in targets]
    runs = []
    fitted: dict[int, RewardPredictions] = {}
    for target in resolved:
        applied = target.apply(log)
        rewards = None
        if any(e.needs_reward_model for e in chosen):
            # Targets evaluated on the same rows share one reward model: it does not depend on the target.
            key = id(applied.log)
            if key not in fitted:
                fitted[key] = fit_reward_model(
                    applied.log, config.reward_model, n_folds=config.n_folds, random_state=config.seed
                )
            rewards = fitted[key]
        evaluation = evaluate_policy(applied.log, applied.dist, chosen, rewards, config)
        runs.append(TargetRun(applied=applied, evaluation=evaluation))
    settings = {
        "alpha": config.alpha,
        "n_bootstrap": config.n_bootstrap,
        "seed": config.seed,
        "n_folds": config.n_folds,
        "reward_model": (
            config.reward_model if isinstance(config.reward_model, str | None) else repr(config.reward_model)
        ),
        "estimators": [e.label for e in chosen],
        "targets": [t.name for t in resolved],
    }
    report = EvaluationReport(
        log=summarize_log(log, config.alpha),
        evaluations=tuple(r.evaluation for r in runs),
        read_report=read_report,
        settings=settings,
    )
    return EvaluationRun(report=report, log=log, runs=tuple(runs))
