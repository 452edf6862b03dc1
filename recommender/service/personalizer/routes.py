"""Personalizer's Rank, Reward and Activate, single- and multi-slot, beside our /v1 (docs/service.md).

Paths, methods and status codes are those the SDKs expect (``versions`` for the prefixes): rank answers 201
with the RankResponse, reward and activate 204 with no body. Each goes through the one path of its /v1
counterpart (``scoring.decide_and_publish``, ``rewards.store_reward``, ``rewards.activate_event``): the same
decision log, join, trainer and model. Keys: ``Ocp-Apim-Subscription-Key`` (or our headers) against
``service.api_keys``; rank needs one only with ``service.protect_score``, as /v1/score.

``deferActivation``: the event is learned from only once activated within ``join.reward_wait_time``; rewards
for it count only then. An event never activated is dropped by the joiner (not logged, not learned), as
Personalizer ignored events that were never activated.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g, request

from recommender.records import Reward, utc_now
from recommender.service.auth import require_key
from recommender.service.errors import ApiError, json_response
from recommender.service.personalizer import errors
from recommender.service.personalizer.bodies import parse
from recommender.service.personalizer.mapping import (
    RANK_ERROR,
    decision_input,
    multi_slot_order,
    multi_slot_response,
    rank_response,
    single_slot_order,
)
from recommender.service.personalizer.schemas import (
    PersonalizerMultiSlotRankRequest,
    PersonalizerMultiSlotRewardRequest,
    PersonalizerRankRequest,
    PersonalizerRewardRequest,
)
from recommender.service.personalizer.slot_ids import SlotIds
from recommender.service.personalizer.versions import add_fallback, add_route, check_api_version
from recommender.service.rewards import activate_event, check_event_id, check_reward_range, store_reward
from recommender.service.runtime import runtime
from recommender.service.scoring import decide_and_publish

bp = Blueprint("personalizer", __name__)
errors.register(bp)

SLOT_IDS = "personalizer.slot_ids"  # app.extensions key of the app's SlotIds
REWARD_ERROR = "InvalidRewardRequest"
ACTIVATE_ERROR = "InvalidEventIdToActivate"


@bp.record_once
def _install(state: object) -> None:
    state.app.extensions[SLOT_IDS] = SlotIds()  # type: ignore[attr-defined]


def _slot_ids() -> SlotIds:
    return current_app.extensions[SLOT_IDS]


def rank(version: str | None) -> Response:
    check_api_version(version)
    rt = runtime()
    snapshot = rt.snapshot
    if snapshot.config.service.protect_score:
        require_key(snapshot.api_keys, request)
    req = parse(PersonalizerRankRequest, RANK_ERROR)
    order, excluded = single_slot_order(req.actions, req.excludedActions, snapshot.config.service.max_candidates)
    request_input, problem = decision_input(
        rt, snapshot, actions=req.actions, order=order, context_features=req.contextFeatures, event_id=req.eventId,
        user_id=req.userId, slots=None, deferred=bool(req.deferActivation),
    )  # fmt: skip
    decision, _ = decide_and_publish(rt, snapshot, request_input, problem, queued=g.get("queued"),
                                     event_field="eventId")
    return json_response(rank_response(decision, excluded), 201)


def reward(version: str | None, event_id: str) -> Response:
    check_api_version(version)
    rt = runtime()
    snapshot = rt.snapshot
    require_key(snapshot.api_keys, request)
    check_event_id(event_id, "eventId")
    req = parse(PersonalizerRewardRequest, REWARD_ERROR)
    check_reward_range(rt, snapshot.config.join.reward_range, req.value, "value")
    store_reward(rt, Reward(event_id, float(req.value), utc_now()), event_field="eventId")
    return Response(status=204)


def activate(version: str | None, event_id: str) -> Response:
    check_api_version(version)
    rt = runtime()
    require_key(rt.snapshot.api_keys, request)
    check_event_id(event_id, "eventId")
    activate_event(rt, event_id, event_field="eventId")
    return Response(status=204)


def multi_slot_rank(version: str | None) -> Response:
    check_api_version(version)
    rt = runtime()
    snapshot = rt.snapshot
    if snapshot.config.service.protect_score:
        require_key(snapshot.api_keys, request)
    req = parse(PersonalizerMultiSlotRankRequest, RANK_ERROR)
    if len(req.slots) > 1 and snapshot.policy is not None and not snapshot.policy.multi_slot:
        raise ApiError(400, "InvalidMultiSlotApiAccess", f"slots: {len(req.slots)} slots need a multi-slot policy "
                       "(policy.mode: ccb); this service runs a single-slot one", field="slots")  # fmt: skip
    order = multi_slot_order(req.actions, req.slots, snapshot.config.service.max_candidates)
    request_input, problem = decision_input(
        rt, snapshot, actions=req.actions, order=order, context_features=req.contextFeatures, event_id=req.eventId,
        user_id=req.userId, slots=len(req.slots), deferred=bool(req.deferActivation),
        slot_names=tuple(slot.id for slot in req.slots),
    )  # fmt: skip
    decision, _ = decide_and_publish(rt, snapshot, request_input, problem, queued=g.get("queued"),
                                     event_field="eventId")
    slot_ids = decision.slot_names
    join = snapshot.config.join
    _slot_ids().record(decision.event_id, slot_ids, join.reward_wait_time + join.recovery_seconds)
    return json_response(multi_slot_response(decision, slot_ids), 201)


def multi_slot_reward(version: str | None, event_id: str) -> Response:
    check_api_version(version)
    rt = runtime()
    snapshot = rt.snapshot
    require_key(snapshot.api_keys, request)
    check_event_id(event_id, "eventId")
    req = parse(PersonalizerMultiSlotRewardRequest, REWARD_ERROR)
    slot_ids = _slot_ids().find(rt, event_id)
    if slot_ids is None:
        raise ApiError(404, "ResourceNotFound", f"eventId: no pending multi-slot decision {event_id!r} (unknown, or "
                       "its reward window has closed)", field="eventId")  # fmt: skip
    records = []
    for i, slot_reward in enumerate(req.reward):
        if slot_reward.slotId not in slot_ids:
            raise ApiError(400, REWARD_ERROR, f"reward[{i}].slotId: decision {event_id!r} has no slot "
                           f"{slot_reward.slotId!r} (its slots: {', '.join(slot_ids)})",
                           field=f"reward[{i}].slotId")  # fmt: skip
        check_reward_range(rt, snapshot.config.join.reward_range, slot_reward.value, f"reward[{i}].value")
        records.append(Reward(event_id, float(slot_reward.value), utc_now(), slot_ids.index(slot_reward.slotId)))
    for i, record in enumerate(records):  # all checked first: a bad entry stores none of them
        store_reward(rt, record, event_field="eventId", slot_field=f"reward[{i}].slotId")
    return Response(status=204)


add_route(bp, "/rank", rank, ["POST"])
add_route(bp, "/events/<path:event_id>/reward", reward, ["POST"])
add_route(bp, "/events/<path:event_id>/activate", activate, ["POST"])
add_route(bp, "/multislot/rank", multi_slot_rank, ["POST"], since_preview=True)
add_route(bp, "/multislot/events/<path:event_id>/reward", multi_slot_reward, ["POST"], since_preview=True)
add_route(bp, "/multislot/events/<path:event_id>/activate", activate, ["POST"], since_preview=True)
add_fallback(bp)  # after every route of both Personalizer blueprints: werkzeug tries it last anyway
