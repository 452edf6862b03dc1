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

Where the work happens: each setting is one task (``simulators.replay_tasks.setting_task``) that replays it
*and* estimates it (every estimator, the paired difference, the learning curve) where it runs; this process
fits the reward model once, evaluates the two fixed policies, ranks and recommends.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from simulators.data import LoggedBandit
from simulators.errors import TargetSpecError
from simulators.optimize_types import (
    MIN_REPLAY_ESS,
    Difference,
    FeatureImportance,
    OptimizeConfig,
    OptimizeResult,
    PolicyResult,
    Recommendation,
    json_number,
)
from simulators.replay import ReplaySetting, first_candidate, uniform
from simulators.replay_log import ReplayLog
from simulators.replay_tasks import RowEvaluator, SettingJob, prepare_caches, setting_task
from simulators.reward_model import RewardPredictions

__all__ = [
    "MIN_REPLAY_ESS",
    "Difference",
    "FeatureImportance",
    "MapFunction",
    "OptimizeConfig",
    "OptimizeResult",
    "PolicyResult",
    "Recommendation",
    "RowEvaluator",
    "json_number",
    "recommend",
    "run_sweep",
    "settings_from",
    "write_atomically",
]

# The builtin map, or a cluster's (``simulators.dask_backend.replay_map``): (task, jobs) -> results in order.
MapFunction = Callable[[Callable[[Any], Any], Sequence[Any]], Iterable[Any]]


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

    ``map_function`` runs the per-setting tasks, each a replay and its estimation
    (``simulators.replay_tasks.setting_task``: the builtin ``map`` in process; ``simulators.dask_backend``
    passes a cluster's); the results do not depend on it. Raises TargetSpecError when a label repeats.
    """
    config = config or OptimizeConfig()
    labels = [s.label for _, s in settings]
    if len(set(labels)) != len(labels):
        raise TargetSpecError(f"setting labels repeat: {sorted({x for x in labels if labels.count(x) > 1})}")
    shared = RowEvaluator.build(log, config, rewards)
    shared.m = len(settings) + 2  # every policy compared with the logged one: the settings, baseline, uniform
    saved = shared.save(log.directory)
    try:
        prepare_caches(map_function, [(log.paths, s.vw_args()) for _, s in settings])
        # Longest first (VW's work grows with the weight vectors a setting trains): a cluster's workers
        # take tasks in this order, so the slowest setting does not start last and leave a worker idle.
        order = sorted(range(len(settings)), key=lambda i: -settings[i][1].config.exploration.ensemble_size())
        jobs = [SettingJob(str(saved), settings[i][0], settings[i][1]) for i in order]
        done = list(
            tqdm(
                map_function(setting_task, jobs),
                total=len(jobs),
                desc=f"replaying settings (slot {log.position})",
                unit="setting",
                disable=None if progress else True,
            )
        )
        replayed = [done[order.index(i)] for i in range(len(settings))]
    finally:
        saved.unlink(missing_ok=True)
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
