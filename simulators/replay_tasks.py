"""Per-setting tasks of a sweep: a setting's replay *and* its estimation, on whichever worker runs it.

A sweep (``simulators.optimize.run_sweep``) builds one ``RowEvaluator`` for a slot's rows (the estimators,
the reward model fitted once, the round clusters, the time chunks, the number of comparisons) and saves it
next to the converted log (``RowEvaluator.save``). A task then carries paths and the setting only:

- ``setting_task`` replays the setting over the partition files and evaluates the pmfs on the worker: every
  estimator's estimate and intervals, the paired difference with the logged policy, the learning curve. It
  returns the setting's ``PolicyResult`` (a few hundred numbers), so neither the log nor the (n, K) pmfs
  travel, and the client only ranks and recommends.
- ``terms_task`` replays a setting and writes its primary estimator's per-row terms to a file, returning
  the path (feature importance pairs the terms of two replays row by row).

``prepare_caches`` builds the VW caches the replays read (``simulators.replay_cache``), as tasks, before
the settings fan out. A worker reads the saved evaluator once (``load_evaluator`` caches it per process by
path and mtime). The task functions are the same in process (the builtin ``map``) and on a cluster, and a
replay is deterministic in (files, arguments), so the results are identical wherever the tasks run.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import pickle
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats as scipy_stats

from simulators.data import ActionDist
from simulators.diagnostics import WeightStats
from simulators.estimators import Estimator, OPEInputs
from simulators.evaluate import finalize, partition_stats, prepare_inputs, resolve_estimators
from simulators.optimize_types import Difference, OptimizeConfig, PolicyResult
from simulators.replay import ReplaySetting, as_action_dist, chunk_means, replay_probs, time_bins
from simulators.replay_cache import CacheJob, cache_jobs, cache_task
from simulators.replay_log import ReplayLog
from simulators.results import EstimateResult, Interval, PolicyEvaluation
from simulators.reward_model import RewardPredictions, fit_reward_model
from simulators.stats import Clusters, Terms, TermStats


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

    def save(self, directory: str | Path) -> Path:
        """Write this evaluator to a new file in ``directory`` (next to the converted log, where workers read
        it) and return its path. The raw decisions are left out: estimation needs the arrays only."""
        bandit = dataclasses.replace(self.log.bandit, decisions=None)
        portable = dataclasses.replace(self, log=dataclasses.replace(self.log, bandit=bandit), notes=[])
        path = Path(directory) / f"evaluator-{uuid.uuid4().hex}.pkl"
        with path.open("wb") as handle:
            pickle.dump(portable, handle, protocol=pickle.HIGHEST_PROTOCOL)
        return path

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


def load_evaluator(path: str | Path) -> RowEvaluator:
    """The evaluator saved at ``path`` (``RowEvaluator.save``), read once per process."""
    stat = os.stat(path)
    return _load_evaluator(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _load_evaluator(path: str, mtime_ns: int, size: int) -> RowEvaluator:
    with open(path, "rb") as handle:
        return pickle.load(handle)  # our own file, written by RowEvaluator.save for this sweep


@dataclass(frozen=True)
class SettingJob:
    """One setting of a sweep: ``evaluator`` the saved RowEvaluator's path, ``kind`` (configured, listed,
    search) and the setting."""

    evaluator: str
    kind: str
    setting: ReplaySetting


def setting_task(job: SettingJob) -> PolicyResult:
    """Replay ``job.setting`` over the evaluator's partition files and evaluate it there (module docstring)."""
    shared = load_evaluator(job.evaluator)
    log, setting = shared.log, job.setting
    probs = replay_probs(log.paths, log.counts, setting.vw_args())
    return shared.result(setting.label, job.kind, as_action_dist(log, probs, setting.label), setting)


@dataclass(frozen=True)
class TermsJob:
    """A replay whose primary per-row terms are wanted: VW ``args`` over the partition files ``paths`` (the
    evaluator's rows, possibly converted without a feature), the terms written to ``out`` (.npz)."""

    evaluator: str
    name: str
    args: tuple[str, ...]
    paths: tuple[str, ...]
    out: str


def terms_task(job: TermsJob) -> tuple[str, float]:
    """Replay and write the primary estimator's per-row terms (``plain``; ``ratio_num``/``ratio_den`` when
    the estimator has them) to ``job.out``: (that path, the terms' per-row range bound)."""
    shared = load_evaluator(job.evaluator)
    probs = replay_probs(job.paths, shared.log.counts, list(job.args))
    primary = shared.primary()
    inputs = shared.inputs(as_action_dist(shared.log, probs, job.name))
    terms = primary.terms(inputs)
    arrays = {"plain": terms.plain}
    if terms.ratio_num is not None and terms.ratio_den is not None:
        arrays.update(ratio_num=terms.ratio_num, ratio_den=terms.ratio_den)
    with open(job.out, "wb") as handle:
        np.savez(handle, **arrays)
    return job.out, float(primary.row_range(inputs))


def prepare_caches(
    map_function: Callable[[Callable[[CacheJob], str], Sequence[CacheJob]], Iterable[str]],
    runs: Iterable[tuple[Sequence[str | Path], Sequence[str]]],
) -> None:
    """Build the VW caches the replays ``(partition files, VW arguments)`` will read, one ``cache_task`` per
    partition and bits, before the replays fan out (each is built once, not by every worker that starts a
    replay at the same time). Caches already in place cost a stat each."""
    list(map_function(cache_task, cache_jobs(runs)))


def load_terms(path: str | Path) -> Terms:
    """The per-row terms ``terms_task`` wrote."""
    with np.load(path) as data:
        return Terms(plain=data["plain"], ratio_num=data.get("ratio_num"), ratio_den=data.get("ratio_den"))
