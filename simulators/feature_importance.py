"""Feature importance by leave-one-out replays (as Personalizer's feature evaluation did).

For a setting (the configured one), each candidate key is left out and the setting replayed again on the
same rows: a namespace (``user``, ``context``, ``item``: VW's ``--ignore`` on the same converted file) or
one declared feature (``user.NAME``, ``item.NAME``: the log converted again without it). The importance
of the key is the drop in estimated value, V(all features) - V(without the key), computed per row on the
same rows (paired: the logged noise cancels) with a normal interval Bonferroni-corrected over the keys
tried. Keys are ranked by the drop; an interval that covers 0 says the data cannot tell the feature
helps. A self-normalized primary estimator (snipw, sndr) has no per-row difference, so its unnormalized
form (ipw, dr) measures the drops.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from features.config import FeatureGroup
from simulators.data import LoggedBandit
from simulators.errors import TargetSpecError
from simulators.estimators import make_estimator
from simulators.optimize import FeatureImportance, MapFunction, OptimizeConfig, RowEvaluator, replay_job
from simulators.replay import ReplaySetting, as_action_dist
from simulators.replay_log import NAMESPACE_KEYS, ReplayLog
from simulators.reward_model import RewardPredictions

_UNNORMALIZED = {"snipw": "ipw", "sndr": "dr"}


def candidate_keys(log: ReplayLog, per_feature: bool = True) -> list[str]:
    """The namespaces with features in ``log``, then (``per_feature``) each declared feature of groups
    with more than one feature (a one-feature group is its namespace)."""
    keys = [k for k in NAMESPACE_KEYS if k in log.namespaces]
    if per_feature:
        for role in ("user", "item"):
            names = [n for n in log.feature_names if n.startswith(f"{role}.")]
            if len(names) > 1 and role in log.namespaces:
                keys += names
    return keys


def rank_feature_importance(
    log: ReplayLog,
    source: LoggedBandit,
    setting: ReplaySetting,
    config: OptimizeConfig,
    workdir: str | Path,
    *,
    keys: Sequence[str] | None = None,
    user_group: FeatureGroup | None = None,
    item_group: FeatureGroup | None = None,
    rewards: RewardPredictions | None = None,
    map_function: MapFunction = map,
) -> list[FeatureImportance]:
    """Leave-one-out replays of ``setting`` over ``log`` (converted from ``source``), ranked by the drop.

    ``keys`` default to ``candidate_keys(log)``; per-feature keys reconvert ``source`` into ``workdir``
    (with the same feature groups). Raises TargetSpecError for an unknown key.
    """
    keys = list(candidate_keys(log) if keys is None else keys)
    if not keys:
        return []
    estimator = _UNNORMALIZED.get(config.primary, config.primary)
    fi_config = OptimizeConfig(
        estimators=tuple(dict.fromkeys((*config.estimators, estimator))),
        primary=estimator,
        alpha=config.alpha,
        n_bootstrap=0,
        reward_model=config.reward_model,
        n_folds=config.n_folds,
        seed=config.seed,
        time_bins=config.time_bins,
    )
    shared = RowEvaluator.build(log, fi_config, rewards)
    shared.m = len(keys)
    jobs, logs = [], []
    for key in keys:
        if key in NAMESPACE_KEYS:
            variant = ReplaySetting(setting.label, setting.config, setting.overrides, (*setting.ignore, key))
            jobs.append((str(log.path), log.counts, variant.vw_args()))
            logs.append(log)
        elif key in log.feature_names:
            path = Path(workdir) / f"without-{key}.vw"
            reduced = ReplayLog.build(
                source,
                path,
                user_group=user_group,
                item_group=item_group,
                position=int(log.bandit.position[0]),
                leave_out=(key,),
            )
            jobs.append((str(reduced.path), reduced.counts, setting.vw_args()))
            logs.append(reduced)
        else:
            raise TargetSpecError(f"cannot leave out {key!r}: choose from {', '.join(candidate_keys(log))}")
    full_probs = replay_job((str(log.path), log.counts, setting.vw_args()))
    primary = make_estimator(estimator)
    full_inputs = shared.inputs(as_action_dist(log, full_probs, setting.label))
    full_terms = primary.terms(full_inputs)
    rows = []
    for key, probs in zip(keys, map_function(replay_job, jobs), strict=True):
        inputs = shared.inputs(as_action_dist(log, probs, f"without {key}"))
        without = primary.terms(inputs)
        drop = shared.difference(
            full_terms, without.plain, max(primary.row_range(inputs), primary.row_range(full_inputs))
        )
        rows.append((key, float(without.plain.mean()), drop))
    rows.sort(key=lambda r: -r[2].value)
    return [FeatureImportance(key, value, drop, rank) for rank, (key, value, drop) in enumerate(rows, start=1)]
