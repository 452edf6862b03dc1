"""Personalizer's rank requests as our DecisionInput, and our Decision as its rank responses.

One decision path: a rank becomes the same ``DecisionInput`` a /v1/score request becomes, decided,
published, joined, learned from and logged by the same code (``recommender.service.scoring``).

- Candidates: the actions in request order minus ``excludedActions`` (ids not among the actions are
  ignored, as Personalizer did), so the first non-excluded action is the apprentice baseline and the
  baseline of offline evaluation. Multi-slot: each slot's ``baselineAction`` first, in slot order, then the
  other actions in request order; so slot s's baseline is candidate s, which apprentice mode shows in slot s.
- Features: the context from ``contextFeatures``; each item row is the feature store's row for the action id
  (the declared defaults when the store does not know it) plus the action's schema-free features, laid out
  as Personalizer logged them (``recommender.service.personalizer.features``). ``userId`` (our extension)
  names the user whose stored features join the decision. A catalog that was never loaded is not a
  degradation here: such requests carry their own features.
- Limits: at most ``service.max_candidates`` actions (Personalizer's own limit was 50), event ids of at most
  128 characters (Personalizer allowed 256).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from recommender.records import Decision, new_event_id, utc_now
from recommender.service.errors import ApiError
from recommender.service.fallback import DegradedReason
from recommender.service.inputs import DecisionInput
from recommender.service.personalizer.action_rows import ActionRows
from recommender.service.personalizer.features import context_row
from recommender.service.personalizer.schemas import PersonalizerRankableAction, PersonalizerSlotRequest
from recommender.service.runtime import Runtime, Snapshot

RANK_ERROR = "InvalidRankRequest"
ACTION_ROWS = ActionRows()  # this worker's finished item rows, reused by content (action_rows docstring)


def _bad(field: str, message: str, code: str = RANK_ERROR) -> ApiError:
    return ApiError(400, code, f"{field}: {message}", field=field)


def _positions(actions: Sequence[PersonalizerRankableAction], limit: int) -> dict[str, int]:
    """Action id -> its index in the request; duplicates and too many actions refused."""
    if len(actions) > limit:
        raise _bad("actions", f"{len(actions)} actions, at most {limit} allowed (service.max_candidates)")
    positions: dict[str, int] = {}
    for i, action in enumerate(actions):
        if action.id in positions:
            raise _bad(f"actions[{i}].id", f"duplicate action id {action.id!r} (also actions[{positions[action.id]}])")
        positions[action.id] = i
    return positions


def single_slot_order(actions: Sequence[PersonalizerRankableAction], excluded: Sequence[str] | None, limit: int
                      ) -> tuple[list[int], list[str]]:  # fmt: skip
    """(the candidates' indices into ``actions``, the excluded action ids in request order)."""
    _positions(actions, limit)  # refuses duplicate ids and too many actions
    leave_out = set(excluded or ())
    order = [i for i, action in enumerate(actions) if action.id not in leave_out]
    if not order:
        raise _bad("excludedActions", "every action is excluded; nothing to rank")
    return order, [action.id for action in actions if action.id in leave_out]


def multi_slot_order(actions: Sequence[PersonalizerRankableAction], slots: Sequence[PersonalizerSlotRequest],
                     limit: int) -> list[int]:  # fmt: skip
    """The candidates' indices into ``actions``: the slots' baselines in slot order, then the others."""
    positions = _positions(actions, limit)
    if len(slots) > len(actions):
        raise _bad("slots", f"{len(slots)} slots but only {len(actions)} actions to fill them")
    seen_slots: set[str] = set()
    baselines: list[int] = []
    for s, slot in enumerate(slots):
        if slot.id in seen_slots:
            raise _bad(f"slots[{s}].id", f"duplicate slot id {slot.id!r}")
        seen_slots.add(slot.id)
        if slot.excludedActions:
            raise _bad(f"slots[{s}].excludedActions", "per-slot exclusions are not supported (every slot ranks the "
                       "same candidates); leave an action out of `actions` to exclude it from every slot")  # fmt: skip
        index = positions.get(slot.baselineAction)
        if index is None:
            raise _bad(f"slots[{s}].baselineAction", f"{slot.baselineAction!r} is not one of the actions")
        if index in baselines:
            raise _bad(f"slots[{s}].baselineAction", f"{slot.baselineAction!r} is the baseline of another slot; each "
                       "slot needs its own")  # fmt: skip
        baselines.append(index)
    chosen = set(baselines)
    return baselines + [i for i in range(len(actions)) if i not in chosen]


def decision_input(
    rt: Runtime,
    snapshot: Snapshot,
    *,
    actions: Sequence[PersonalizerRankableAction],
    order: Sequence[int],
    context_features: Sequence[dict[str, Any]] | None,
    event_id: str | None,
    user_id: str | None,
    slots: int | None,
    deferred: bool,
    slot_names: tuple[str, ...] = (),
) -> tuple[DecisionInput, DegradedReason | None]:
    """The DecisionInput of a rank (candidates ``actions[i] for i in order``) and why its features are
    defaults (None: they are not); ``slot_names``: a multi-slot rank's slot ids, recorded on the decision.
    Reads the feature store once."""
    context = context_row(context_features)
    ids = [actions[i].id for i in order]
    ACTION_ROWS.reserve(2 * snapshot.config.policy.item_cache_size)  # a kept row for each cached example
    checked = ACTION_ROWS.checked(actions, order)
    features, problem = rt.read_features(user_id, ids)
    if problem is DegradedReason.FEATURES_NOT_LOADED:
        problem = None  # the request carries its own features; the store's are extras (module docstring)
    items = ACTION_ROWS.rows(checked, features.items)
    request_input = DecisionInput(
        event_id=event_id or new_event_id(),
        timestamp=utc_now(),
        user_id=user_id,
        user_features=features.user,
        context=context,
        candidate_ids=ids,
        candidate_features=items,
        slots=slots,
        deferred=deferred,
        slot_names=slot_names,
    )
    return request_input, problem


def rank_response(decision: Decision, excluded: Sequence[str]) -> dict[str, Any]:
    """Personalizer's RankResponse: the ranking (excluded actions last, probability 0), the chosen action."""
    ids = decision.candidate_ids
    pmf = decision.pmfs[0]
    ranking = [{"id": ids[i], "probability": pmf[i]} for i in decision.ranking]
    ranking += [{"id": action_id, "probability": 0.0} for action_id in excluded]
    return {"eventId": decision.event_id, "ranking": ranking, "rewardActionId": ids[decision.chosen[0]]}


def multi_slot_response(decision: Decision, slot_ids: Sequence[str]) -> dict[str, Any]:
    """Personalizer's MultiSlotRankResponse: each slot's chosen action."""
    ids = decision.candidate_ids
    slots = [{"id": slot_id, "rewardActionId": ids[c]} for slot_id, c in zip(slot_ids, decision.chosen, strict=True)]
    return {"eventId": decision.event_id, "slots": slots}
