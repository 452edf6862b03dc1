"""An experiment's per-arm figures computed from the Parquet event log (``recommender.events.log``).

One observation per joined decision of the experiment: its slot-0 reward, the configured default when no
reward arrived (that is what the decision earned: no click). Decisions of other experiments, or of none, are
left out. Events are in decision-time order (``read_table``), which is the order the sequences are updated in.
Only the three columns the analysis needs are read, of the experiment's rows only (and, with ``since``, of the
hour partitions from then on): docs/benchmarks.md, "Experiments", has the figures against reading the whole log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from recommender.events.log import read_table
from recommender.experiments.analysis import ExperimentAnalysis, analyze
from recommender.experiments.arm_stats import ArmStats
from recommender.settings.experiments import Experiment, ExperimentsConfig


@dataclass(frozen=True)
class ArmLog:
    """An experiment's joined decisions in time order: ``arms`` (n,) arm names, ``rewards`` (n,) float64 slot-0
    rewards, ``timestamps`` (n,) datetime64[us] decision times (UTC)."""

    experiment: str
    arms: np.ndarray
    rewards: np.ndarray
    timestamps: np.ndarray

    def stats(self) -> dict[str, ArmStats]:
        """Per-arm sufficient statistics of the whole log."""
        return {str(arm): ArmStats.of(self.rewards[self.arms == arm]) for arm in np.unique(self.arms)}


def read_arm_log(log_dir: str | Path, experiment: str, *, since: datetime | None = None) -> ArmLog:
    """The joined decisions of ``experiment`` in the event log at ``log_dir``, decided at ``since`` (an aware
    datetime) or later when given (EventLogError if unreadable)."""
    table = read_table(log_dir, columns=["timestamp", "arm", "rewards"], equals={"experiment": experiment},
                       since=since)  # fmt: skip
    rewards = table.column("rewards").combine_chunks()
    # Slot 0 of each row: the offsets index the flat values array (whatever slice the column is of).
    first = rewards.values.to_numpy()[rewards.offsets.to_numpy()[:-1]] if len(rewards) else np.empty(0)
    arms = table.column("arm").to_numpy(zero_copy_only=False).astype(str)
    timestamps = table.column("timestamp").to_numpy()
    return ArmLog(experiment, arms, first.astype(np.float64), timestamps)


def analyze_log(log: ArmLog, experiment: Experiment, settings: ExperimentsConfig) -> ExperimentAnalysis:
    """The analysis of ``experiment`` from its log, with the section's alpha, mixture scale and minimum."""
    return analyze(
        experiment.name,
        log.stats(),
        experiment.shares,
        experiment.control,
        alpha=settings.alpha,
        mixture_scale=settings.mixture_scale,
        min_events=settings.min_events,
    )


def cumulative(log: ArmLog, arm: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, sum, sum of squares) of ``arm``'s rewards after each event of the log (arrays of length len(log))."""
    mask = log.arms == arm
    r = np.where(mask, log.rewards, 0.0)
    return np.cumsum(mask).astype(np.float64), np.cumsum(r), np.cumsum(r * r)


def arm_counts(stats: Mapping[str, ArmStats]) -> dict[str, int]:
    return {arm: s.n for arm, s in stats.items()}
