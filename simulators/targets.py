"""Target policies to evaluate: what a target is (``Target``, ``AppliedTarget``) and the targets that need no
model (uniform, the logging policy, epsilon-greedy around it, distributions from a file).

The VW-backed targets are in ``simulators.vw_targets``; ``simulators.target_specs.parse_target`` turns the
SPEC strings of the command line into any of them.

Every target turns a log into an ``AppliedTarget``: the rows it is evaluated on (all of them, except for
``vw:`` which holds out its training prefix) and the target's ``ActionDist`` on those rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from simulators.data import ActionDist, LoggedBandit
from simulators.errors import BanditDataError, TargetSpecError


@dataclass(frozen=True, eq=False)
class AppliedTarget:
    """A target applied to a log: evaluate ``dist`` on ``log`` (which may be a subset of the input log)."""

    log: LoggedBandit
    dist: ActionDist


class Target(Protocol):
    """A target policy: ``name`` for reports, ``apply`` to get its distribution on a log."""

    @property
    def name(self) -> str: ...

    def apply(self, log: LoggedBandit) -> AppliedTarget: ...


def _row_dist(log: LoggedBandit, probs: np.ndarray, name: str) -> AppliedTarget:
    try:
        return AppliedTarget(log=log, dist=ActionDist(probs=probs[:, :, None], name=name, row_position=True))
    except BanditDataError as exc:
        raise TargetSpecError(f"target {name}: {exc}") from exc


def _uniform(log: LoggedBandit) -> np.ndarray:
    mask = log.candidate_mask.astype(np.float64)
    return mask / mask.sum(axis=1, keepdims=True)


def _require_logging_dist(log: LoggedBandit, name: str) -> np.ndarray:
    if log.logging_dist is None:
        raise TargetSpecError(
            f"target {name} needs the logging policy's full distributions, but this log records only the "
            "propensity of the logged action (the logged policy's value is the log's mean reward)"
        )
    return log.logging_dist


@dataclass(frozen=True)
class UniformTarget:
    """Uniform over each row's available candidates."""

    @property
    def name(self) -> str:
        return "uniform"

    def apply(self, log: LoggedBandit) -> AppliedTarget:
        return _row_dist(log, _uniform(log), self.name)


@dataclass(frozen=True)
class LoggedTarget:
    """The logging policy itself. Its IPW weights are all 1, so IPW gives the on-policy mean reward."""

    @property
    def name(self) -> str:
        return "logged"

    def apply(self, log: LoggedBandit) -> AppliedTarget:
        return _row_dist(log, np.array(_require_logging_dist(log, self.name)), self.name)


@dataclass(frozen=True)
class EpsilonGreedyTarget:
    """(1 - epsilon) on the logged distribution's most likely candidate (first on ties) + epsilon uniform.

    epsilon = 0 is ``greedy``: what the logging policy would earn without exploring.
    """

    epsilon: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise TargetSpecError(f"epsilon must lie in [0, 1], got {self.epsilon}")

    @property
    def name(self) -> str:
        return "greedy" if self.epsilon == 0.0 else f"epsilon:{self.epsilon:g}"

    def apply(self, log: LoggedBandit) -> AppliedTarget:
        dist = _require_logging_dist(log, self.name)
        greedy = np.zeros_like(dist)
        greedy[np.arange(dist.shape[0]), np.argmax(dist, axis=1)] = 1.0
        return _row_dist(log, (1.0 - self.epsilon) * greedy + self.epsilon * _uniform(log), self.name)


@dataclass(frozen=True)
class DistributionFile:
    """Per-row target distributions from a file.

    - ``.npy``: an array (n_rows, n_actions) or (n_rows, n_actions, n_positions), rows in log order
      (our log: by timestamp then event id, one row per slot; OBD and DSJSON: file order), actions as the
      log's candidate indices. ``.npz``: the same under the key ``action_dist``.
    - ``.parquet`` or ``.csv``: a long table with a ``probability`` column; the row as ``row`` (index in
      log order) or ``event_id`` (plus ``position`` for multi-slot logs; default 0); the action as
      ``action`` (candidate index) or ``item_id`` (the item's id). Absent (row, action) pairs have
      probability 0; every row of the log must appear.
    """

    path: Path

    @property
    def name(self) -> str:
        return f"dist:{self.path}"

    def apply(self, log: LoggedBandit) -> AppliedTarget:
        if not self.path.exists():
            raise TargetSpecError(f"distribution file {self.path} does not exist")
        suffix = self.path.suffix
        try:
            if suffix in (".npy", ".npz"):
                loaded = np.load(self.path)
                probs = loaded["action_dist"] if suffix == ".npz" else loaded
                return AppliedTarget(log=log, dist=self._checked(ActionDist(probs=probs, name=self.name), log))
            if suffix in (".parquet", ".csv"):
                frame = pd.read_parquet(self.path) if suffix == ".parquet" else pd.read_csv(self.path)
                return _row_dist(log, self._from_table(frame, log), self.name)
        except (OSError, ValueError, KeyError) as exc:
            if isinstance(exc, TargetSpecError):
                raise
            raise TargetSpecError(f"cannot read distribution file {self.path}: {exc}") from exc
        raise TargetSpecError(f"distribution file {self.path}: use .npy, .npz, .parquet or .csv")

    def _checked(self, dist: ActionDist, log: LoggedBandit) -> ActionDist:
        try:
            dist.check_fits(log)
        except BanditDataError as exc:
            raise TargetSpecError(f"{self.name}: {exc}") from exc
        return dist

    def _from_table(self, frame: pd.DataFrame, log: LoggedBandit) -> np.ndarray:
        if "probability" not in frame.columns:
            raise TargetSpecError(f"{self.name}: needs a 'probability' column")
        n = log.n_rounds
        if "row" in frame.columns:
            rows = pd.to_numeric(frame["row"], errors="coerce")
        elif "event_id" in frame.columns:
            if log.event_id is None:
                raise TargetSpecError(f"{self.name}: the log has no event ids; key the file by 'row'")
            keys = pd.DataFrame({"event_id": log.event_id.astype(str), "position": log.position, "row": np.arange(n)})
            frame = frame.assign(
                event_id=frame["event_id"].astype(str),
                position=frame["position"] if "position" in frame.columns else 0,
            )
            rows = frame.merge(keys, on=["event_id", "position"], how="left")["row"]
        else:
            raise TargetSpecError(f"{self.name}: needs a 'row' or 'event_id' column")
        if rows.isna().any() or not rows.between(0, n - 1).all():
            raise TargetSpecError(f"{self.name}: {int(rows.isna().sum())} entries name rows the log does not have")
        rows = rows.to_numpy(np.int64)
        if "action" in frame.columns:
            actions = pd.to_numeric(frame["action"], errors="coerce")
            if actions.isna().any() or not actions.between(0, log.n_actions - 1).all():
                raise TargetSpecError(f"{self.name}: actions must be candidate indices in [0, {log.n_actions})")
            actions = actions.to_numpy(np.int64)
        elif "item_id" in frame.columns:
            actions = self._item_columns(frame["item_id"].astype(str).to_numpy(), rows, log)
        else:
            raise TargetSpecError(f"{self.name}: needs an 'action' or 'item_id' column")
        probs = np.zeros((n, log.n_actions))
        np.add.at(probs, (rows, actions), frame["probability"].to_numpy(np.float64))
        missing = np.flatnonzero(probs.sum(axis=1) == 0)
        if missing.size:
            raise TargetSpecError(f"{self.name}: no distribution for {missing.size} rows (first: row {missing[0]})")
        return probs

    def _item_columns(self, item_ids: np.ndarray, rows: np.ndarray, log: LoggedBandit) -> np.ndarray:
        if log.item_ids is None:
            raise TargetSpecError(f"{self.name}: the log has no item ids; use 'action' indices")
        index = {item: i for i, item in enumerate(log.item_ids)}
        items = np.array([index.get(item, -2) for item in item_ids])
        table = log.candidate_items if log.candidate_items is not None else None
        out = np.empty(rows.shape[0], dtype=np.int64)
        for j, (row, item) in enumerate(zip(rows, items, strict=True)):
            where = np.flatnonzero(table[row] == item) if table is not None else np.array([item] if item >= 0 else [])
            if where.size == 0:
                raise TargetSpecError(f"{self.name}: item {item_ids[j]!r} is not a candidate of row {row}")
            out[j] = where[0]
        return out
