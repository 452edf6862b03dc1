"""``optimize_log``: a sweep of learning settings over a log file, from Python or ``recommender optimize``.

A synthetic log drawn by a uniform logger (a log on disk is given by its path, e.g. ``"var/events"``):

>>> from recommender.settings.loading import DEFAULT_CONFIG_PATH, load_config
>>> from simulators import OptimizeConfig, optimize_log
>>> from simulators.synthetic import SyntheticEnvironment, UniformPolicy
>>> env = SyntheticEnvironment(n_users=50, n_items=5, seed=0)
>>> log = env.generate_log(UniformPolicy(), 1500, seed=0).bandit
>>> run = optimize_log(log, app_config=load_config(DEFAULT_CONFIG_PATH), settings=["exploration.gamma_scale=20"],
...                    config=OptimizeConfig(estimators=("ipw", "snipw"), primary="ipw"))
>>> [p.name for p in run.result.policies]
['logged', 'baseline', 'uniform', 'configured', 'exploration.gamma_scale=20']
>>> run.result.recommended.name  # a learner beats a uniform logger by far
'configured'

Reads the log (our event log, VW DSJSON, the Open Bandit Dataset layout; optionally a time range),
converts the rows of each slot once into VW's input, one file per partition, in a work directory
(``simulators.replay_log``), replays the settings on each slot (``simulators.optimize.run_sweep``): the
configured ``policy`` section, the listed settings (``vw:`` target overrides), and a search space's; then,
optionally, the feature importance of the configured setting on the first slot replayed
(``simulators.feature_importance``). ``workers``/``scheduler`` run the per-setting tasks on Dask
(``simulators.dask_backend``); the numbers are the same as in process.

Multi-slot logs (our event log's multi-slot ranks, DSJSON CCB, OBD positions): every slot is replayed as
its own single-slot log, over the candidates the log records for it and against its logged propensity,
with a fresh learner per slot, and reported per slot (``OptimizeRun.slots``). A slot the log lacks
something for (``simulators.replay_log.slot_problem``) is refused with the reason
(``OptimizeRun.refused``); ``position`` replays one slot only, and refuses it with an error instead.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from recommender.settings.app import AppConfig
from simulators.data import LoggedBandit
from simulators.errors import BanditDataError
from simulators.feature_importance import rank_feature_importance
from simulators.optimize import MapFunction, OptimizeConfig, OptimizeResult, run_sweep, settings_from
from simulators.readers import read_log
from simulators.readers.bad_rows import ReadReport
from simulators.replay import ReplaySetting, make_setting
from simulators.replay_log import (
    PARTITION_ROWS,
    ReplayLog,
    groups_fit,
    inferred_feature_groups,
    select_rows,
    slot_problem,
)
from simulators.search_space import SearchSpace


@dataclass(frozen=True)
class OptimizeRun:
    """A sweep's results, the reader's report of excluded rows, and the settings skipped as invalid.

    ``slots`` holds one result per slot replayed, in slot order; ``result`` is the first of them (slot 0
    when it could be replayed: the slot a ``cb`` policy learns from). ``refused`` says, per slot that
    could not be replayed, why (``slot S: reason``).
    """

    result: OptimizeResult
    read_report: ReadReport | None
    skipped: tuple[str, ...] = ()
    # Set when the log's features did not fit the configured feature groups and groups inferred from the
    # log were used instead: why (the CLI prints it).
    inferred_groups: str | None = None
    slots: tuple[OptimizeResult, ...] = ()
    refused: tuple[str, ...] = ()


def restrict_time(log: LoggedBandit, since: datetime | None, until: datetime | None) -> LoggedBandit:
    """The rows with since <= timestamp < until (UTC). Raises BanditDataError when none is left."""
    if since is None and until is None:
        return log
    if log.timestamp is None:
        raise BanditDataError("the log has no timestamps: a time range cannot be applied")
    keep = np.ones(log.n_rounds, dtype=bool)
    if since is not None:
        keep &= log.timestamp >= np.datetime64(since.replace(tzinfo=None), "us")
    if until is not None:
        keep &= log.timestamp < np.datetime64(until.replace(tzinfo=None), "us")
    if not keep.any():
        raise BanditDataError(f"no rows in the time range [{since}, {until})")
    return log.subset(keep)


def optimize_log(
    log: str | Path | LoggedBandit,
    *,
    app_config: AppConfig,
    settings: Sequence[str | ReplaySetting] = (),
    search: SearchSpace | None = None,
    include_configured: bool = True,
    config: OptimizeConfig | None = None,
    format: str = "auto",
    strict: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
    position: int | None = None,
    importance: bool = False,
    importance_keys: Sequence[str] | None = None,
    map_function: MapFunction = map,
    progress: bool = False,
    workdir: str | Path | None = None,
    rows_per_partition: int = PARTITION_ROWS,
) -> OptimizeRun:
    """Read, convert and sweep (see the module docstring). Settings given as strings are overrides of the
    configured policy section (``exploration.epsilon=0.05,learning.learning_rate=0.1``).

    ``position``: the one slot to replay (None: every slot, see the module docstring). ``workdir`` holds the
    converted log (a temporary directory, removed afterwards, when None; give a directory every Dask worker
    can read when the cluster is not on this machine), ``rows_per_partition`` rows per file. Raises
    BanditDataError when no slot (or the chosen one) can be replayed.
    """
    config = config or OptimizeConfig()
    read_report = None
    if not isinstance(log, LoggedBandit):
        loaded = read_log(log, format, strict=strict)
        log, read_report = loaded.bandit, loaded.report
    log = restrict_time(log, since, until)
    base_config = app_config.policy
    base = make_setting(base_config, {}, label="configured") if include_configured else None
    listed = [s if isinstance(s, ReplaySetting) else make_setting(base_config, s) for s in settings]
    searched, skipped = search.expand(base_config) if search is not None and not search.empty else ([], [])
    chosen = settings_from(base, listed, searched)
    user_group, item_group = app_config.user_group, app_config.item_group
    misfit = groups_fit(log, user_group, item_group)
    if misfit is not None:
        user_group, item_group = inferred_feature_groups(log)
    groups = {"user_group": user_group, "item_group": item_group}
    positions, refused = replayable_slots(log, position)
    results = []
    with tempfile.TemporaryDirectory(prefix="optimize-", dir=workdir) as tmp:
        for slot in positions:
            replay_log = ReplayLog.build(
                log,
                Path(tmp) / f"slot-{slot}",
                position=slot,
                progress=progress,
                rows_per_partition=rows_per_partition,
                map_function=map_function,
                **groups,
            )
            result = run_sweep(replay_log, chosen, config, map_function=map_function, progress=progress)
            if importance and not results:
                setting = base or chosen[0][1]
                rows = rank_feature_importance(
                    replay_log, log, setting, config, tmp, keys=importance_keys, map_function=map_function, **groups
                )
                result = result.with_feature_importance(rows)
            results.append(result)
    return OptimizeRun(results[0], read_report, tuple(skipped), misfit, tuple(results), tuple(refused))


def replayable_slots(log: LoggedBandit, position: int | None) -> tuple[list[int], list[str]]:
    """The slots to replay and, for each slot left out, why. ``position`` None: every slot the log allows;
    else that one. Raises BanditDataError when nothing can be replayed (naming each slot's reason)."""
    candidates = range(log.n_positions) if position is None else [position]
    slots, refused = [], []
    for slot in candidates:
        problem = slot_problem(select_rows(log, slot))
        if problem is None:
            slots.append(slot)
        else:
            refused.append(f"slot {slot}: {problem}")
    if not slots:
        raise BanditDataError("cannot replay the log: " + "; ".join(refused))
    return slots, refused
