"""One evaluation run: a log, one or more targets, the chosen estimators -> a report.

This is what ``recommender evaluate`` calls, and the easiest entry point from Python::

    from simulators.run import evaluate_log
    run = evaluate_log("var/events", ["uniform", "epsilon:0.05"], estimators=["ipw", "snipw", "dr"])
    print(run.report.to_json())
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulators.data import LoggedBandit
from simulators.estimators import Estimator
from simulators.evaluate import EvaluationConfig, evaluate_policy, resolve_estimators, summarize_log
from simulators.readers import LoadedLog, read_log
from simulators.results import EvaluationReport, PolicyEvaluation
from simulators.targets import AppliedTarget, Target, parse_target


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
    app_config: Any = None,
) -> EvaluationRun:
    """Read ``log`` (a path, a reader's result, or a LoggedBandit), evaluate each target, and report.

    Targets are SPEC strings (see ``simulators.targets``; ``app_config`` is what VW targets build on)
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
    fitted: dict[int, object] = {}
    for target in resolved:
        applied = target.apply(log)
        rewards = None
        if any(e.needs_reward_model for e in chosen):
            # Targets evaluated on the same rows share one reward model: it does not depend on the target.
            key = id(applied.log)
            if key not in fitted:
                from simulators.reward_model import fit_reward_model

                fitted[key] = fit_reward_model(
                    applied.log, config.reward_model, n_folds=config.n_folds, random_state=config.seed
                )
            rewards = fitted[key]
        evaluation = evaluate_policy(applied.log, applied.dist, chosen, rewards, config)  # type: ignore[arg-type]
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
