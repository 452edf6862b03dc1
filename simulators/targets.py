"""Target policies to evaluate, and the SPEC syntax that names them on the command line.

SPEC syntax (``parse_target``):

==========================================  ===============================================================
``uniform``                                 every available candidate equally likely
``logged``                                  the logging policy itself (needs full logged distributions)
``greedy``                                  the logging policy without exploration: its most likely
                                            candidate (needs full logged distributions)
``epsilon:EPS``                             epsilon-greedy around ``greedy``: (1 - EPS) on the logged
                                            argmax plus EPS spread uniformly (0 <= EPS <= 1)
``dist:PATH``                               per-row distributions from a file (see ``DistributionFile``)
``model:STORE[@VERSION]``                   a saved VW model from a model store, scored on the logged
                                            contexts (current version when VERSION is left out; an empty
                                            STORE is the configured ``policy.model_dir``)
``vw:OVERRIDES[;train_fraction=F]``         the configured policy with OVERRIDES (``default``, or
                                            ``dotted.key=value,...`` over the policy section), trained on
                                            the first F of the log (default 0.5), evaluated on the rest,
                                            e.g. ``vw:exploration.epsilon=0.02;train_fraction=0.6``
==========================================  ===============================================================

Every target turns a log into an ``AppliedTarget``: the rows it is evaluated on (all of them, except for
``vw:`` which holds out its training prefix) and the target's ``ActionDist`` on those rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

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


def parse_target(spec: str, app_config: Any = None) -> Target:
    """The target named by ``spec`` (see the module docstring). Raises TargetSpecError.

    ``app_config`` (a ``recommender.settings.loading.AppConfig``) supplies what VW targets need: the policy section
    that ``vw:`` overrides, the feature groups, and the model store of ``model:@VERSION``.
    """
    text = spec.strip()
    kind, sep, arg = text.partition(":")
    kind = kind.strip().lower()
    if kind == "uniform" and not sep:
        return UniformTarget()
    if kind == "logged" and not sep:
        return LoggedTarget()
    if kind == "greedy" and not sep:
        return EpsilonGreedyTarget(0.0)
    if kind == "epsilon":
        try:
            epsilon = float(arg)
        except ValueError as exc:
            raise TargetSpecError(f"target {spec!r}: epsilon must be a number, e.g. epsilon:0.05") from exc
        return EpsilonGreedyTarget(epsilon)
    if kind == "dist" and arg.strip():
        return DistributionFile(Path(arg.strip()))
    if kind == "model" and arg.strip():
        from simulators.vw_targets import SavedModelTarget

        store, _, version = arg.strip().partition("@")
        if not store:
            if app_config is None:
                raise TargetSpecError(f"target {spec!r}: name the model store, e.g. model:var/models@VERSION")
            store = app_config.policy.model_dir
        return SavedModelTarget(Path(store), version or None)
    if kind == "vw" and arg.strip():
        from simulators.vw_targets import TrainedVWTarget, parse_overrides

        overrides, _, options = arg.partition(";")
        fraction = 0.5
        for option in filter(None, (o.strip() for o in options.split(";"))):
            key, eq, value = option.partition("=")
            if key.strip() != "train_fraction" or not eq:
                raise TargetSpecError(f"target {spec!r}: unknown option {option!r} (only train_fraction=F)")
            try:
                fraction = float(value)
            except ValueError as exc:
                raise TargetSpecError(f"target {spec!r}: train_fraction must be a number") from exc
        groups = {}
        if app_config is not None:
            features = app_config.features
            groups = {
                "policy_config": app_config.policy,
                "user_group": features.groups.get(features.user_group),
                "item_group": features.groups.get(features.item_group),
            }
        return TrainedVWTarget(parse_overrides(overrides), fraction, label=overrides.strip() or "default", **groups)
    raise TargetSpecError(
        f"unknown target {spec!r}; use uniform, logged, greedy, epsilon:EPS, dist:PATH, "
        "model:STORE[@VERSION] or vw:OVERRIDES[;train_fraction=F]"
    )
