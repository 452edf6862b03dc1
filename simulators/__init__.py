"""Offline replay and counterfactual (off-policy) evaluation.

Public API (``from simulators import NAME``; each name is imported on first use, see ``_EXPORTS``):

- logs: ``read_log`` (our event log, OBD layout, VW DSJSON), ``LoggedBandit``, ``ActionDist``
- targets: ``parse_target`` (``simulators.target_specs``) and the Target classes in ``simulators.targets`` /
  ``simulators.vw_targets``
- estimators: ``InverseProbabilityWeighting`` ... ``DoublyRobustWithShrinkage``, ``make_estimator``
- evaluation: ``evaluate_policy``, ``evaluate_log``, ``EvaluationConfig``, ``fit_reward_model``
- synthetic environments: ``SyntheticEnvironment`` and policies in ``simulators.synthetic``
- replay of learning settings: ``ReplayLog`` (a log converted once into VW's input), ``ReplaySetting`` and
  ``make_setting``; sweeps: ``optimize_log``, ``run_sweep``, ``OptimizeConfig``, ``OptimizeResult``,
  ``SearchSpace``/``load_search_space``, ``rank_feature_importance``; their reports: ``format_optimize_table``,
  ``render_optimize_html``, ``config_snippet`` (the YAML for configs/)
- reports: ``format_table`` (text), ``render_html`` (HTML); partitions and replays on Dask: ``simulators.dask_backend``

See docs/offline-evaluation.md.
"""

from __future__ import annotations

import importlib
from typing import Any

# Lazy, by name: the command line imports ``simulators.cli`` (and so this package) to register its commands,
# and importing these modules here would make ``recommender --help`` take 2.2 s instead of 0.6 s (loading
# VW, scikit-learn, scipy and matplotlib), measured.
_EXPORTS = {
    "read_log": "simulators.readers",
    "LoggedBandit": "simulators.data",
    "ActionDist": "simulators.data",
    "parse_target": "simulators.target_specs",
    "make_estimator": "simulators.estimators",
    "InverseProbabilityWeighting": "simulators.estimators",
    "SelfNormalizedInverseProbabilityWeighting": "simulators.estimators",
    "DirectMethod": "simulators.estimators",
    "DoublyRobust": "simulators.estimators",
    "SelfNormalizedDoublyRobust": "simulators.estimators",
    "SwitchDoublyRobust": "simulators.estimators",
    "DoublyRobustWithShrinkage": "simulators.estimators",
    "EvaluationConfig": "simulators.evaluate",
    "evaluate_policy": "simulators.evaluate",
    "evaluate_log": "simulators.log_evaluation",
    "fit_reward_model": "simulators.reward_model",
    "RewardPredictions": "simulators.reward_model",
    "SyntheticEnvironment": "simulators.synthetic",
    "format_table": "simulators.text_report",
    "render_html": "simulators.html_report",
    "ReplayLog": "simulators.replay_log",
    "ReplaySetting": "simulators.replay",
    "make_setting": "simulators.replay",
    "OptimizeConfig": "simulators.optimize",
    "OptimizeResult": "simulators.optimize",
    "run_sweep": "simulators.optimize",
    "optimize_log": "simulators.log_optimization",
    "SearchSpace": "simulators.search_space",
    "load_search_space": "simulators.search_space",
    "rank_feature_importance": "simulators.feature_importance",
    "format_optimize_table": "simulators.optimize_report",
    "config_snippet": "simulators.optimize_report",
    "render_optimize_html": "simulators.optimize_html",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'simulators' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
