"""Assembling a ``LoggedBandit`` from parsed decisions with per-decision candidate sets.

Our event log and VW DSJSON both log, per decision, a candidate list with features and, per slot, the
full logging distribution over that list. The readers parse and validate rows into ``ParsedDecision``
records; ``build_bandit`` lays them out as rows (one per slot) over a global item table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from recommender.records import PMF_TOLERANCE
from simulators.data import LoggedBandit
from simulators.readers.bad_rows import (
    BAD_DISTRIBUTION,
    MISSING_PROPENSITY,
    PROPENSITY_OUT_OF_RANGE,
    UNKNOWN_ACTION,
)
from simulators.readers.features import vectorize


@dataclass(frozen=True)
class ParsedSlot:
    """One slot of a decision: the shown candidate ``action`` (index into the decision's candidates), its
    logging probability ``pscore``, the full logging distribution ``dist`` over the candidates, which
    candidates were ``available`` at this slot, and the slot's ``reward``."""

    action: int
    pscore: float
    dist: tuple[float, ...]
    available: tuple[bool, ...]
    reward: float


@dataclass(frozen=True)
class ParsedDecision:
    event_id: str
    timestamp: datetime | None
    context: Mapping[str, float]
    item_keys: tuple[str, ...]
    slots: tuple[ParsedSlot, ...]


def check_slot(action: object, pscore: object, dist: Sequence[float], n_candidates: int) -> tuple[str, str] | None:
    """The first problem with a slot's label as (reason, detail), or None when it is usable."""
    if not isinstance(action, int) or isinstance(action, bool) or not 0 <= action < n_candidates:
        return UNKNOWN_ACTION, f"action {action!r} is not one of the {n_candidates} candidates"
    if pscore is None or (isinstance(pscore, float) and math.isnan(pscore)):
        return MISSING_PROPENSITY, "no probability for the logged action"
    if not isinstance(pscore, int | float) or isinstance(pscore, bool):
        return MISSING_PROPENSITY, f"probability {pscore!r} is not a number"
    if not 0.0 < float(pscore) <= 1.0:
        return PROPENSITY_OUT_OF_RANGE, f"probability {pscore} is outside (0, 1]"
    if len(dist) != n_candidates:
        return BAD_DISTRIBUTION, f"distribution has {len(dist)} entries for {n_candidates} candidates"
    if any(not (0.0 <= p <= 1.0) for p in dist) or abs(math.fsum(dist) - 1.0) > PMF_TOLERANCE:
        return BAD_DISTRIBUTION, f"distribution sums to {math.fsum(dist):.6g} or has entries outside [0, 1]"
    if abs(dist[action] - float(pscore)) > PMF_TOLERANCE:
        return BAD_DISTRIBUTION, f"probability {pscore} differs from the distribution's {dist[action]}"
    return None


def build_bandit(
    decisions: Sequence[ParsedDecision],
    item_features: Mapping[str, Mapping[str, float]],
    item_names: Mapping[str, str],
    source: str,
    events: Sequence[object] | None = None,
) -> LoggedBandit:
    """Rows (one per decision and slot) over a global item table built from ``item_features``."""
    keys = sorted(item_features)
    item_index = {key: i for i, key in enumerate(keys)}
    action_context, action_names = vectorize(item_features[key] for key in keys)
    context_matrix, context_names = vectorize(d.context for d in decisions)
    k = max(len(d.item_keys) for d in decisions)
    rows = [(di, si) for di, d in enumerate(decisions) for si in range(len(d.slots))]
    n = len(rows)
    candidate_items = np.full((n, k), -1, dtype=np.int64)
    logging_dist = np.zeros((n, k), dtype=np.float64)
    action = np.empty(n, dtype=np.int64)
    position = np.empty(n, dtype=np.int64)
    reward = np.empty(n, dtype=np.float64)
    round_id = np.empty(n, dtype=np.int64)
    event_id = np.empty(n, dtype=object)
    timestamps = [] if all(d.timestamp is not None for d in decisions) else None
    for row, (di, si) in enumerate(rows):
        decision = decisions[di]
        slot = decision.slots[si]
        width = len(decision.item_keys)
        items = np.array([item_index[key] for key in decision.item_keys], dtype=np.int64)
        available = np.array(slot.available, dtype=bool)
        candidate_items[row, :width] = np.where(available, items, -1)
        logging_dist[row, :width] = slot.dist
        action[row], position[row], reward[row] = slot.action, si, slot.reward
        round_id[row] = di
        event_id[row] = decision.event_id
        if timestamps is not None:
            timestamps.append(np.datetime64(decision.timestamp.replace(tzinfo=None), "us"))  # type: ignore[union-attr]
    # A slot's distribution may put a little mass (float32 rounding) on an unavailable candidate; the
    # candidate is then kept as available rather than losing the mass.
    leaked = (candidate_items < 0) & (logging_dist > 0)
    if np.any(leaked):
        for row, col in np.argwhere(leaked):
            di, _ = rows[row]
            candidate_items[row, col] = item_index[decisions[di].item_keys[col]]
    logging_dist = logging_dist / logging_dist.sum(axis=1, keepdims=True)
    return LoggedBandit(
        context=context_matrix[[di for di, _ in rows]] if context_matrix.shape[1] else np.zeros((n, 0)),
        action=action,
        position=position,
        reward=reward,
        pscore=logging_dist[np.arange(n), action],
        n_actions=k,
        # Without item features the reward model falls back to a one-hot of the item.
        action_context=action_context if action_context.shape[1] else None,
        candidate_items=candidate_items,
        round_id=round_id,
        timestamp=np.array(timestamps, dtype="datetime64[us]") if timestamps is not None else None,
        logging_dist=logging_dist,
        item_ids=tuple(item_names.get(key, key) for key in keys),
        event_id=event_id,
        decisions=tuple(events) if events is not None else None,
        source=source,
        context_names=context_names if context_matrix.shape[1] else None,
        action_context_names=action_names if action_context.shape[1] else None,
    )
