"""Feature importance by leave-one-out replays (as Personalizer's feature evaluation did).

For a setting (the configured one), each candidate key is left out and the setting replayed again on the
same rows: a namespace (``user``, ``context``, ``item``: VW's ``--ignore`` on the same converted file),
one declared feature (``user.NAME``, ``item.NAME``), or a JSON namespace of the context or the actions, or a
group within one (Personalizer's schema-free features, named as they appear in the JSON: ``context.user``,
``action.product``, ``context.user.geo``; ``simulators.json_namespaces``): the log converted again without
it. VW's ``--ignore`` keys namespaces by their first letter only, so anything but our own three namespaces is
left out when the examples are written, never with ``--ignore``. The importance
of the key is the drop in estimated value, V(all features) - V(without the key), computed per row on the
same rows (paired: the logged noise cancels) with a normal interval Bonferroni-corrected over the keys
tried. Keys are ranked by the drop; an interval that covers 0 says the data cannot tell the feature
helps. A self-normalized primary estimator (snipw, sndr) has no per-row difference, so its unnormalized
form (ipw, dr) measures the drops.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

from features.config import FeatureGroup
from simulators.data import LoggedBandit
from simulators.errors import TargetSpecError
from simulators.json_namespaces import ranked_by_default
from simulators.optimize import FeatureImportance, MapFunction, OptimizeConfig
from simulators.replay import ReplaySetting
from simulators.replay_log import NAMESPACE_KEYS, ReplayLog
from simulators.replay_tasks import RowEvaluator, TermsJob, load_terms, prepare_caches, terms_task
from simulators.reward_model import RewardPredictions

_UNNORMALIZED = {"snipw": "ipw", "sndr": "dr"}


def candidate_keys(log: ReplayLog, per_feature: bool = True) -> list[str]:
    """The namespaces with features in ``log``, then (``per_feature``) each declared feature of groups
    with more than one feature (a one-feature group is its namespace), then the log's JSON namespaces and
    the groups of those with at least two (``simulators.json_namespaces.ranked_by_default``)."""
    keys = [k for k in NAMESPACE_KEYS if k in log.namespaces]
    if per_feature:
        for role in ("user", "item"):
            names = [n for n in log.feature_names if n.startswith(f"{role}.")]
            if len(names) > 1 and role in log.namespaces:
                keys += names
    json_keys = ranked_by_default(log.json_keys)
    return keys + (json_keys if per_feature else [k for k in json_keys if k.count(".") == 1])


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

    ``keys`` default to ``candidate_keys(log)``; declared-feature and JSON keys reconvert ``source`` into
    ``workdir`` (with the same feature groups). Raises TargetSpecError for a key the log does not have, naming it
    and the keys it has, before any replay runs.
    """
    keys = list(candidate_keys(log) if keys is None else keys)
    if not keys:
        return []
    known = (*NAMESPACE_KEYS, *log.feature_names, *log.json_keys)
    unknown = [key for key in keys if key not in known]
    if unknown:
        listed = ", ".join(known)
        raise TargetSpecError(f"cannot leave out {unknown[0]!r}: the log has no such key; choose from {listed}")
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
    variants: list[tuple[str, list[str], tuple[Path, ...]]] = [("all", setting.vw_args(), log.paths)]
    for key in keys:
        if key in NAMESPACE_KEYS:
            variant = ReplaySetting(setting.label, setting.config, setting.overrides, (*setting.ignore, key))
            variants.append((key, variant.vw_args(), log.paths))
        else:  # a declared feature or a JSON key: written without it
            reduced = ReplayLog.build(
                source,
                Path(workdir) / f"without-{key}",
                user_group=user_group,
                item_group=item_group,
                position=log.position,
                leave_out=(key,),
                rows_per_partition=log.rows_per_partition,
                map_function=map_function,
            )
            variants.append((key, setting.vw_args(), reduced.paths))
    saved = shared.save(workdir)
    prepare_caches(map_function, [(paths, args) for _, args, paths in variants])
    run = uuid.uuid4().hex
    jobs = [
        TermsJob(str(saved), name, tuple(args), tuple(map(str, paths)), str(Path(workdir) / f"terms-{run}-{i}.npz"))
        for i, (name, args, paths) in enumerate(variants)
    ]
    try:
        outputs = list(map_function(terms_task, jobs))
        terms = [load_terms(path) for path, _ in outputs]
    finally:
        saved.unlink(missing_ok=True)
        for job in jobs:
            Path(job.out).unlink(missing_ok=True)
    full_terms, full_range = terms[0], outputs[0][1]
    rows = []
    for key, without, (_, without_range) in zip(keys, terms[1:], outputs[1:], strict=True):
        drop = shared.difference(full_terms, without.plain, max(without_range, full_range))
        rows.append((key, float(without.plain.mean()), drop))
    rows.sort(key=lambda r: -r[2].value)
    return [FeatureImportance(key, value, drop, rank) for rank, (key, value, drop) in enumerate(rows, start=1)]
