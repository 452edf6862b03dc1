"""``POST /v1/reward`` and ``POST /v1/events/<event_id>/activate``.

A 204 means the bus has it: with Redis, Redis acknowledged the write. An event that is unknown, whose
reward window has closed, or that was already joined is a 404. When Redis is unreachable the answer is
503 with ``Retry-After``: the reward was not stored and the client should retry (this is the one 5xx
the contract has, and it is about the service's state, never about the input).

Idempotency: a reward may carry an id (``reward_id`` in the body, or the ``Idempotency-Key`` header; both
given must agree). A second report with the same id for the same event adds nothing and is answered 204
like the first, while the decision is pending and for ``join.recovery_seconds`` after its join.

A decision this worker still holds in memory (made while Redis was down, not yet written) is written out
first, then the reward is stored: a reward for a decision the service issued is never refused as unknown
because the decision was waiting to be written (``DecisionPublisher.write_held``).
"""

from __future__ import annotations

from flask import Blueprint, Response, request
from pydantic import ValidationError

from recommender.events.bus import BusError, RewardOutcome
from recommender.records import Reward, utc_now
from recommender.service.auth import require_key
from recommender.service.errors import ApiError, from_validation_error
from recommender.service.runtime import Runtime, runtime
from recommender.service.schemas import EVENT_ID, RewardRequest

bp = Blueprint("rewards", __name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"


def _reward_id(body_id: str | None) -> str | None:
    """The reward's idempotency id: the body's ``reward_id`` or the ``Idempotency-Key`` header."""
    header = request.headers.get(IDEMPOTENCY_HEADER)
    if header is None:
        return body_id
    try:
        EVENT_ID.validate_python(header)
    except ValidationError as exc:
        raise ApiError(400, "invalid_request", f"{IDEMPOTENCY_HEADER}: {exc.errors()[0]['msg']}",
                       field=IDEMPOTENCY_HEADER) from None  # fmt: skip
    if body_id is not None and body_id != header:
        raise ApiError(400, "invalid_request", f"reward_id: {body_id!r} differs from the {IDEMPOTENCY_HEADER} header "
                       f"{header!r}; send one, or the same in both", field="reward_id")  # fmt: skip
    return header


def bus_unavailable(rt: Runtime, exc: Exception | None) -> ApiError:
    """The 503 of a bus call that failed (``exc``, counted by the breaker) or was not tried (None: breaker open)."""
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
    check_reward_range(rt, snapshot.config.join.reward_range, req.reward, "reward")
    reward_id = _reward_id(req.reward_id)
    store_reward(rt, Reward(req.event_id, float(req.reward), utc_now(), req.slot, reward_id))
    return _no_content()


def check_reward_range(rt: Runtime, reward_range: tuple[float, float], value: float, field: str) -> None:
    """400 naming ``field`` unless ``value`` is within ``reward_range`` (``join.reward_range`` of the request's
    snapshot; a refusal is counted as out_of_range)."""
    low, high = reward_range
    if not low <= value <= high:
        rt.metrics.rewards.labels("out_of_range").inc()
        raise ApiError(400, "invalid_request", f"{field}: {value} is outside the accepted range [{low}, {high}]",
                       field=field)  # fmt: skip


def store_reward(rt: Runtime, record: Reward, *, event_field: str = "event_id", slot_field: str = "slot") -> None:
    """Store one reward on the bus (the one path of every reward API): returns once the bus has it. Raises
    ApiError: 404 unknown event, 400 no such slot (naming ``event_field`` / ``slot_field``), 503 bus away."""
    if not rt.bus_breaker.allow():
        raise bus_unavailable(rt, None)
    written = rt.publisher.written
    try:
        outcome = rt.bus.add_reward(record)
        # Unknown to the bus, but perhaps held by this worker (or written by its flusher just now): write it
        # out, then store the reward. Only on this path: a known event costs nothing more.
        if outcome is RewardOutcome.UNKNOWN and (
            rt.publisher.write_held(record.event_id) or rt.publisher.written != written
        ):
            outcome = rt.bus.add_reward(record)
    except BusError as exc:
        raise bus_unavailable(rt, exc) from None
    rt.bus_breaker.success()
    rt.metrics.rewards.labels(outcome.value).inc()
    if outcome is RewardOutcome.UNKNOWN:
        raise ApiError(404, "unknown_event", f"{event_field}: no pending decision {record.event_id!r} (unknown, or "
                       "its reward window has closed)", field=event_field)  # fmt: skip
    if outcome is RewardOutcome.BAD_SLOT:
        raise ApiError(400, "invalid_request", f"{slot_field}: decision {record.event_id!r} has no slot {record.slot}",
                       field=slot_field)  # fmt: skip


@bp.post("/v1/events/<path:event_id>/activate")
def activate(event_id: str) -> Response:
    rt = runtime()
    require_key(rt.snapshot.api_keys, request)
    check_event_id(event_id, "event_id")
    activate_event(rt, event_id)
    return _no_content()


def check_event_id(event_id: str, field: str) -> None:
    """400 naming ``field`` unless ``event_id`` is a valid record id."""
    try:
        EVENT_ID.validate_python(event_id)
    except ValidationError as exc:
        raise ApiError(400, "invalid_request", f"{field}: {exc.errors()[0]['msg']}", field=field) from None


def activate_event(rt: Runtime, event_id: str, *, event_field: str = "event_id") -> None:
    """Activate a deferred decision (the one path of every activation API). Raises ApiError: 404 unknown
    event (naming ``event_field``), 503 bus away."""
    if not rt.bus_breaker.allow():
        raise bus_unavailable(rt, None)
    try:
        activated = rt.bus.activate(event_id)
    except BusError as exc:
        raise bus_unavailable(rt, exc) from None
    rt.bus_breaker.success()
    rt.metrics.activations.labels("activated" if activated else "unknown").inc()
    if not activated:
        raise ApiError(404, "unknown_event", f"{event_field}: no pending decision {event_id!r} (unknown, or its "
                       "reward window has closed)", field=event_field)  # fmt: skip
