"""Typed, validated containers for off-policy evaluation: the logged data and a target policy's distribution.

Conventions (those of Open Bandit Pipeline, minus its loose dict of arrays):

- One *row* is one (decision, position) pair: the action shown at that position, its propensity under
  the logging policy and the reward it earned. A single-slot decision is one row; a page with S slots
  is S rows sharing a ``round_id``.
- Actions are indices into the row's *candidate list*, ``0 <= action < n_actions``. When every row
  offers the same fixed action set (the Open Bandit Dataset, synthetic environments) candidate ``j``
  is item ``j`` and ``candidate_items`` is None. When candidate sets vary per decision (our own event
  log, VW DSJSON) ``candidate_items[i, j]`` is the global item index of the row's j-th candidate, and -1
  pads rows with fewer than ``n_actions`` candidates.
- A target policy's distribution ``ActionDist.probs`` has shape (n_rows, n_actions, n_positions):
  ``probs[i, a, k]`` is the probability that the target puts candidate ``a`` at position ``k`` in row
  ``i``'s context. Estimators use ``probs[i, :, position[i]]`` (each row is evaluated at its own
  position), exactly as OBP does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recommender.records import PMF_TOLERANCE
from simulators.errors import BanditDataError


def _as_array(name: str, value: Any, dtype: Any, ndim: int) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise BanditDataError(f"{name} cannot be converted to {np.dtype(dtype).name}: {exc}") from exc
    if array.ndim != ndim:
        raise BanditDataError(f"{name} must be {ndim}-dimensional, got shape {array.shape}")
    return array


def _freeze(array: np.ndarray) -> np.ndarray:
    # The containers are frozen dataclasses; make the arrays they hold read-only too, so a
    # caller cannot change a log under an estimator's feet.
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class LoggedBandit:
    """Logged bandit feedback: what the logging policy did and what it earned.

    Shapes (n = number of rows, K = ``n_actions``, d = context width, m = number of items):

    - ``context`` (n, d) float64: context features of the row's decision (d may be 0).
    - ``action`` (n,) int64 in [0, K): index of the shown candidate.
    - ``position`` (n,) int64 in [0, n_positions): the slot (0 for single-slot logs).
    - ``reward`` (n,) float64, finite.
    - ``pscore`` (n,) float64 in (0, 1]: logging probability of ``action`` at ``position``.
    - ``n_actions``: K, the width of the candidate axis.
    - ``action_context`` (m, d_a) float64 or None: features of each item.
    - ``candidate_items`` (n, K) int64 or None: item index of each candidate, -1 where the row has no
      candidate. None means candidate j is item j for every row (then m == K when ``action_context``
      is given).
    - ``round_id`` (n,) int64: rows of the same decision share it; intervals resample whole rounds.
      Defaults to ``arange(n)`` (every row its own round).
    - ``timestamp`` (n,) datetime64[us] or None: decision time, for reward-over-time plots.
    - ``logging_dist`` (n, K) float64 or None: the full logging distribution at the row's position, when
      the log records it (our log and DSJSON do; OBD records only the chosen action's propensity).
    - ``item_ids``: names of the m items (or of the K fixed actions), for reports.
    - ``event_id`` (n,) str or None: the decision each row came from, to join per-row target
      distributions given as files.
    - ``decisions``: the logged ``recommender.records.JoinedEvent`` of each round, indexed by
      ``round_id`` (only our event log has them). Targets that re-score the logged contexts with a VW
      policy, or train one on them, need the raw features these carry.
    - ``source``: a human-readable description of where the rows came from.
    - ``context_names`` (d names) / ``action_context_names`` (d_a names) or None: the column names of
      ``context`` / ``action_context`` when the reader flattened named features into them
      (``simulators.readers.features``; our event log and DSJSON), e.g. ``context. .user.tier=gold``.
    """

    context: np.ndarray
    action: np.ndarray
    position: np.ndarray
    reward: np.ndarray
    pscore: np.ndarray
    n_actions: int
    action_context: np.ndarray | None = None
    candidate_items: np.ndarray | None = None
    round_id: np.ndarray | None = None
    timestamp: np.ndarray | None = None
    logging_dist: np.ndarray | None = None
    item_ids: tuple[str, ...] | None = None
    event_id: np.ndarray | None = None
    decisions: tuple[Any, ...] | None = None
    source: str = ""
    context_names: tuple[str, ...] | None = None
    action_context_names: tuple[str, ...] | None = None
    _candidate_mask: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        action = _as_array("action", self.action, np.int64, 1)
        n = action.shape[0]
        if n == 0:
            raise BanditDataError("a logged bandit needs at least one row")
        context = _as_array("context", self.context, np.float64, 2)
        position = _as_array("position", self.position, np.int64, 1)
        reward = _as_array("reward", self.reward, np.float64, 1)
        pscore = _as_array("pscore", self.pscore, np.float64, 1)
        for name, array in (("context", context), ("position", position), ("reward", reward), ("pscore", pscore)):
            if array.shape[0] != n:
                raise BanditDataError(f"{name} has {array.shape[0]} rows, action has {n}")
        if not isinstance(self.n_actions, int | np.integer) or self.n_actions < 1:
            raise BanditDataError(f"n_actions must be a positive integer, got {self.n_actions!r}")
        k = int(self.n_actions)
        if not np.all(np.isfinite(context)):
            raise BanditDataError("context has non-finite values")
        if action.min() < 0 or action.max() >= k:
            raise BanditDataError(f"action must lie in [0, {k}), got range [{action.min()}, {action.max()}]")
        if position.min() < 0:
            raise BanditDataError("position must be non-negative")
        if not np.all(np.isfinite(reward)):
            raise BanditDataError("reward has non-finite values")
        if not np.all((pscore > 0.0) & (pscore <= 1.0)):
            bad = int(np.sum(~((pscore > 0.0) & (pscore <= 1.0))))
            raise BanditDataError(f"pscore must lie in (0, 1]; {bad} rows do not")
        set_(self, "n_actions", k)
        for name, array in (("context", context), ("action", action), ("position", position)):
            set_(self, name, _freeze(array))
        set_(self, "reward", _freeze(reward))
        set_(self, "pscore", _freeze(pscore))

        if self.action_context is not None:
            action_context = _as_array("action_context", self.action_context, np.float64, 2)
            if not np.all(np.isfinite(action_context)):
                raise BanditDataError("action_context has non-finite values")
            set_(self, "action_context", _freeze(action_context))
        if self.candidate_items is not None:
            items = _as_array("candidate_items", self.candidate_items, np.int64, 2)
            if items.shape != (n, k):
                raise BanditDataError(f"candidate_items must have shape {(n, k)}, got {items.shape}")
            if items.min() < -1:
                raise BanditDataError("candidate_items must be item indices or -1 (no candidate)")
            if self.action_context is not None and items.max() >= self.action_context.shape[0]:
                raise BanditDataError("candidate_items refers to an item beyond action_context")
            if np.any(items[np.arange(n), action] < 0):
                raise BanditDataError("an action points at an empty candidate slot (-1)")
            set_(self, "candidate_items", _freeze(items))
        elif self.action_context is not None and self.action_context.shape[0] != k:
            raise BanditDataError(
                f"action_context has {self.action_context.shape[0]} items for a fixed action set of {k}"
            )
        if self.round_id is None:
            round_id = np.arange(n, dtype=np.int64)
        else:
            round_id = _as_array("round_id", self.round_id, np.int64, 1)
            if round_id.shape[0] != n:
                raise BanditDataError(f"round_id has {round_id.shape[0]} rows, action has {n}")
        set_(self, "round_id", _freeze(round_id))
        if self.timestamp is not None:
            try:
                timestamp = np.asarray(self.timestamp, dtype="datetime64[us]")
            except (TypeError, ValueError) as exc:
                raise BanditDataError(f"timestamp cannot be converted to datetime64[us]: {exc}") from exc
            if timestamp.shape != (n,):
                raise BanditDataError(f"timestamp must have shape ({n},), got {timestamp.shape}")
            set_(self, "timestamp", _freeze(timestamp))
        if self.logging_dist is not None:
            dist = _as_array("logging_dist", self.logging_dist, np.float64, 2)
            if dist.shape != (n, k):
                raise BanditDataError(f"logging_dist must have shape {(n, k)}, got {dist.shape}")
            _check_distribution("logging_dist", dist)
            if not np.allclose(dist[np.arange(n), action], pscore, rtol=0.0, atol=PMF_TOLERANCE):
                raise BanditDataError("logging_dist disagrees with pscore at the logged action")
            set_(self, "logging_dist", _freeze(dist))
        if self.item_ids is not None:
            set_(self, "item_ids", tuple(str(i) for i in self.item_ids))
        if self.event_id is not None:
            event_id = np.asarray(self.event_id, dtype=object)
            if event_id.shape != (n,):
                raise BanditDataError(f"event_id must have shape ({n},), got {event_id.shape}")
            set_(self, "event_id", _freeze(event_id))
        for name, names, width in (
            ("context_names", self.context_names, context.shape[1]),
            ("action_context_names", self.action_context_names,
             None if self.action_context is None else self.action_context.shape[1]),
        ):  # fmt: skip
            if names is not None:
                if width is None or len(names) != width:
                    raise BanditDataError(f"{name} has {len(names)} names for {width} columns")
                set_(self, name, tuple(str(n) for n in names))
        if self.decisions is not None:
            set_(self, "decisions", tuple(self.decisions))
            if round_id.min() < 0 or round_id.max() >= len(self.decisions):
                raise BanditDataError("round_id must index decisions when decisions are given")

    @property
    def n_rounds(self) -> int:
        """Number of rows (OBP's ``n_rounds``: one per (decision, position))."""
        return int(self.action.shape[0])

    @property
    def n_positions(self) -> int:
        return int(self.position.max()) + 1

    @property
    def n_decisions(self) -> int:
        """Number of distinct rounds (decisions)."""
        return int(np.unique(self.round_id).shape[0])

    @property
    def candidate_mask(self) -> np.ndarray:
        """(n, K) bool: True where the row offers a candidate. All True for a fixed action set."""
        if self._candidate_mask is None:
            if self.candidate_items is None:
                mask = np.ones((self.n_rounds, self.n_actions), dtype=bool)
            else:
                mask = self.candidate_items >= 0
            object.__setattr__(self, "_candidate_mask", _freeze(mask))
        return self._candidate_mask  # type: ignore[return-value]

    def subset(self, rows: np.ndarray) -> LoggedBandit:
        """The log restricted to ``rows`` (a boolean mask or integer indices), keeping their order."""
        rows = np.asarray(rows)
        pick = lambda a: None if a is None else a[rows]  # noqa: E731 - one-line selector
        return LoggedBandit(
            context=self.context[rows],
            action=self.action[rows],
            position=self.position[rows],
            reward=self.reward[rows],
            pscore=self.pscore[rows],
            n_actions=self.n_actions,
            action_context=self.action_context,
            candidate_items=pick(self.candidate_items),
            round_id=self.round_id[rows],
            timestamp=pick(self.timestamp),
            logging_dist=pick(self.logging_dist),
            item_ids=self.item_ids,
            event_id=pick(self.event_id),
            decisions=self.decisions,
            source=self.source,
            context_names=self.context_names,
            action_context_names=self.action_context_names,
        )


def _check_distribution(name: str, probs: np.ndarray, axis: int = 1) -> None:
    if not np.all(np.isfinite(probs)):
        raise BanditDataError(f"{name} has non-finite probabilities")
    if probs.min() < 0.0 or probs.max() > 1.0 + PMF_TOLERANCE:
        raise BanditDataError(f"{name} has probabilities outside [0, 1]")
    sums = probs.sum(axis=axis)
    bad = np.abs(sums - 1.0) > PMF_TOLERANCE
    if np.any(bad):
        where = np.argwhere(bad)[0]
        raise BanditDataError(
            f"{name} does not sum to 1 over actions at index {tuple(int(i) for i in where)} "
            f"(sum {float(sums[tuple(where)]):.6g})"
        )


@dataclass(frozen=True, eq=False)
class ActionDist:
    """A target policy's action distribution on a log's rows.

    ``probs`` (n, K, P) float64: ``probs[i, a, k]`` is the probability that the target shows candidate
    ``a`` at position ``k`` in row ``i``'s context. Each (i, :, k) sums to 1 (within the pmf tolerance
    used for decisions). A (n, K) array is accepted and becomes (n, K, 1).

    ``row_position`` = True says ``probs[:, :, 0]`` is each row's distribution *at its own position*
    (used when a distribution is only known there, e.g. the logged policy of a multi-slot log, or a
    per-row file); the position axis must then have length 1. ``name`` labels the policy in reports.
    """

    probs: np.ndarray
    name: str = "target"
    row_position: bool = False

    def __post_init__(self) -> None:
        probs = np.asarray(self.probs, dtype=np.float64)
        if probs.ndim == 2:
            probs = probs[:, :, None]
        if probs.ndim != 3 or probs.shape[0] == 0 or probs.shape[1] == 0 or probs.shape[2] == 0:
            raise BanditDataError(f"action_dist must have shape (n_rows, n_actions, n_positions), got {probs.shape}")
        if self.row_position and probs.shape[2] != 1:
            raise BanditDataError("a row-position action_dist must have a single position axis entry")
        _check_distribution("action_dist", probs, axis=1)
        object.__setattr__(self, "probs", _freeze(probs))

    @property
    def n_positions(self) -> int:
        return int(self.probs.shape[2])

    def check_fits(self, log: LoggedBandit) -> None:
        """Raise BanditDataError unless this distribution has a row, action and position for ``log``.

        Also refuses probability mass on a candidate slot the row does not have (-1 padding).
        """
        n, k, p = self.probs.shape
        if n != log.n_rounds or k != log.n_actions:
            raise BanditDataError(
                f"action_dist has shape {self.probs.shape}; the log needs ({log.n_rounds}, {log.n_actions}, >=1)"
            )
        if not self.row_position and p < log.n_positions:
            raise BanditDataError(f"action_dist covers {p} positions; the log has {log.n_positions}")
        if log.candidate_items is not None:
            at = self.at_positions(log.position)
            if np.any(at[~log.candidate_mask] > 0.0):
                raise BanditDataError("action_dist puts probability on a candidate slot the row does not have")

    def at_positions(self, position: np.ndarray) -> np.ndarray:
        """(n, K): each row's distribution at its own position, ``probs[i, :, position[i]]``."""
        if self.row_position or self.probs.shape[2] == 1:
            return self.probs[:, :, 0]
        return self.probs[np.arange(self.probs.shape[0]), :, position]
