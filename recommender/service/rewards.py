"""``POST /v1/reward`` and ``POST /v1/events/<event_id>/activate``.

A 204 means the bus has it: with Redis, Redis acknowledged the write. An event that is unknown, whose
reward window has closed, or that was already joined is a 404. When Redis is unreachable the answer is
503 with ``Retry-After``: the reward was not stored and the client should retry (this is the one 5xx
the contract has, and it is about the service's state, never about the input).
"""

from __future__ import annotations

from flask import Blueprint, Response, request
from pydantic import TypeAdapter, ValidationError

from recommender.events.bus import BusError, RewardOutcome
from recommender.records import Reward, utc_now
from recommender.service.auth import require_key
from recommender.service.errors import ApiError, from_validation_error
from recommender.service.runtime import Runtime, runtime
from recommender.service.schemas import Identifier, RewardRequest

bp = Blueprint("rewards", __name__)

_EVENT_ID = TypeAdapter(Identifier)


def _unavailable(rt: Runtime, exc: Exception | None) -> ApiError:
    if exc is not None:
        rt.bus_breaker.failure(str(exc))
    return ApiError(503, "unavailable", "the event bus (Redis) is unavailable; nothing was stored, retry later",
                    headers={"Retry-After": "1"})  # fmt: skip


def _no_content() -> Response:
    return Response(status=204)


@bp.post("/v1/reward")
def reward() -> Response:
    rt = runtime()
    snapshot = rt.snapshot
    require_key(snapshot.api_keys, request)
    try:
        req = RewardRequest.model_validate_json(request.get_data(cache=False))
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    low, high = snapshot.config.join.reward_range
    if not low <= req.reward <= high:
        rt.metrics.rewards.labels("out_of_range").inc()
        raise ApiError(400, "invalid_request", f"reward: {req.reward} is outside the accepted range [{low}, {high}]",
                       field="reward")  # fmt: skip
    if not rt.bus_breaker.allow():
        raise _unavailable(rt, None)
    try:
        outcome = rt.bus.add_reward(Reward(req.event_id, float(req.reward), utc_now(), req.slot))
    except BusError as exc:
        raise _unavailable(rt, exc) from None
    rt.bus_breaker.success()
    rt.metrics.rewards.labels(outcome.value).inc()
    if outcome is RewardOutcome.UNKNOWN:
        raise ApiError(404, "unknown_event", f"event_id: no pending decision {req.event_id!r} (unknown, or its "
                       "reward window has closed)", field="event_id")  # fmt: skip
    if outcome is RewardOutcome.BAD_SLOT:
        raise ApiError(400, "invalid_request", f"slot: decision {req.event_id!r} has no slot {req.slot}",
                       field="slot")  # fmt: skip
    return _no_content()


@bp.post("/v1/events/<path:event_id>/activate")
def activate(event_id: str) -> Response:
    rt = runtime()
    require_key(rt.snapshot.api_keys, request)
    try:
        _EVENT_ID.validate_python(event_id)
    except ValidationError as exc:
        raise ApiError(400, "invalid_request", f"event_id: {exc.errors()[0]['msg']}", field="event_id") from None
    if not rt.bus_breaker.allow():
        raise _unavailable(rt, None)
    try:
        activated = rt.bus.activate(event_id)
    except BusError as exc:
        raise _unavailable(rt, exc) from None
    rt.bus_breaker.success()
    rt.metrics.activations.labels("activated" if activated else "unknown").inc()
    if not activated:
        raise ApiError(404, "unknown_event", f"event_id: no pending decision {event_id!r} (unknown, or its reward "
                       "window has closed)", field="event_id")  # fmt: skip
    return _no_content()
