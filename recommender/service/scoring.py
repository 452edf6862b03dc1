"""``POST /v1/score``: the request path (``answer_score``; the usual request reaches it through
``recommender.service.hot_path``, in front of Flask, any other through the Flask view).

Parse and validate once (pydantic, from the raw bytes, then the rules that depend on the configuration
and the policy in force: ``service.max_candidates``, exclusions, slots), so that what the policy gets
needs no further checks (``Runtime.decide``); read the user's and candidates' features in one
round trip, let the policy decide, hand the decision to the bus (one Redis write, or the buffer when
Redis is away), answer. Nothing here waits on disk; a broken Redis costs at most its budget. A request that
already waited longer than ``service.queue_budget_ms`` for this worker (overload) is decided without the
model (docs/service.md, Overload).
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import repeat
from typing import Any

from flask import Blueprint, Response, g, request
from pydantic import ValidationError

from features.config import FeatureGroup
from features.encoding import normalize_value
from features.errors import FeatureSchemaError
from recommender.events.bus import DuplicateEventError, ReusedEventError
from recommender.records import Decision, new_event_id, utc_now
from recommender.service.auth import require_key
from recommender.service.errors import ApiError, from_validation_error, json_response
from recommender.service.fallback import DegradedReason
from recommender.service.inputs import DecisionInput
from recommender.service.runtime import Runtime, Snapshot, runtime
from recommender.service.schemas import Candidate, ScoreRequest, parse_score_request

bp = Blueprint("scoring", __name__)


def _inline_features(group: FeatureGroup, index: int, values: Mapping[str, Any]) -> dict[str, Any]:
    """Request-time item features, checked against the item group's declared schema."""
    clean = {}
    for name, value in values.items():
        field = f"candidates[{index}].features.{name}"
        spec = group.features.get(name)
        if spec is None:
            raise ApiError(400, "invalid_request", f"{field}: not a declared item feature "
                           f"(declared: {', '.join(sorted(group.features))})", field=field)  # fmt: skip
        try:
            clean[name] = normalize_value(spec, value, where=field)
        except FeatureSchemaError as exc:
            raise ApiError(400, "invalid_request", str(exc), field=field) from None
    return clean


def _collect_candidates(
    req: ScoreRequest, excluded: set[str], item_group: FeatureGroup
) -> tuple[list[str], dict[int, dict[str, Any]]]:
    """(ids of the candidates not excluded, in order; request-time features by position in those ids)."""
    ids: list[str] = []
    inline: dict[int, dict[str, Any]] = {}
    for index, candidate in enumerate(req.candidates):
        cid = candidate if isinstance(candidate, str) else candidate.id
        if cid in excluded:
            continue
        if not isinstance(candidate, str) and candidate.features:
            inline[len(ids)] = _inline_features(item_group, index, candidate.features)
        ids.append(cid)
    return ids, inline


def render(decision: Decision, with_slots: bool, degraded_reason: DegradedReason | None = None) -> dict[str, Any]:
    """The response body of a decision (``degraded_reason``: why it is degraded, None when it is not)."""
    ids = decision.candidate_ids
    pmf = decision.pmfs[0]
    body: dict[str, Any] = {
        "event_id": decision.event_id,
        "ranking": [{"id": ids[i], "probability": pmf[i]} for i in decision.ranking],
        "reward_action_id": ids[decision.chosen[0]],
    }
    if with_slots:
        body["slots"] = [
            {"slot": s, "id": ids[c], "probability": decision.pmfs[s][c]} for s, c in enumerate(decision.chosen)
        ]
    exploration = dict(decision.exploration)
    algorithm = exploration.pop("algorithm", None) or exploration.pop("exploration", "unknown")
    body["model_version"] = decision.model_version
    body["policy"] = {"exploration": str(algorithm), **exploration}
    body["degraded"] = decision.degraded
    if degraded_reason is not None:
        body["degraded_reason"] = degraded_reason.value
    if decision.arm is not None:  # absent outside experiments: the body older clients know
        body["experiment"] = decision.experiment
        body["arm"] = decision.arm
    return body


@bp.post("/v1/score")
def score() -> Response:
    rt = runtime()
    snapshot = rt.snapshot
    if snapshot.config.service.protect_score:
        require_key(snapshot.api_keys, request)
    return json_response(answer_score(rt, snapshot, request.get_data(cache=False), g.get("queued")))


def answer_score(rt: Runtime, snapshot: Snapshot, body: bytes, queued: float | None) -> dict[str, Any]:
    """The response body of the score request ``body`` (its raw bytes), answered with ``snapshot``: the one
    implementation of ``POST /v1/score`` behind both of its entries (the Flask view, and the hot path of the
    usual request, ``recommender.service.hot_path``). ``queued``: seconds the request waited for this worker
    (None: unknown). Raises ApiError (4xx) for a body the service refuses, naming what was wrong."""
    try:
        req = parse_score_request(body)
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    config = snapshot.config
    limit = config.service.max_candidates
    if len(req.candidates) > limit:
        raise ApiError(400, "invalid_request", f"candidates: {len(req.candidates)} candidates, at most {limit} "
                       "allowed (service.max_candidates)", field="candidates")  # fmt: skip
    excluded = set(req.excluded)
    item_group = config.features.groups[config.features.item_group]
    if not excluded and not any(map(isinstance, req.candidates, repeat(Candidate))):
        ids, inline = list(req.candidates), {}  # the usual request, plain ids: checked in C, not item by item
    else:
        ids, inline = _collect_candidates(req, excluded, item_group)
    if not ids:
        raise ApiError(400, "invalid_request", "excluded: every candidate is excluded; nothing to rank",
                       field="excluded")  # fmt: skip
    if req.slots is not None and req.slots > 1 and snapshot.policy is not None and not snapshot.policy.multi_slot:
        raise ApiError(400, "invalid_request", f"slots: {req.slots} slots need a multi-slot policy (policy.mode: "
                       "ccb); this service runs a single-slot one", field="slots")  # fmt: skip
    if req.slots is not None and req.slots > len(ids):
        raise ApiError(400, "invalid_request", f"slots: {req.slots} slots but only {len(ids)} candidates to fill "
                       "them", field="slots")  # fmt: skip

    features, problem = rt.read_features(req.user_id, ids)
    items = list(features.items)
    for position, values in inline.items():
        items[position] = {**items[position], **values}
    request_input = DecisionInput(
        event_id=req.event_id or new_event_id(),
        timestamp=utc_now(),
        user_id=req.user_id,
        user_features=features.user,
        context=req.context,
        candidate_ids=ids,
        candidate_features=items,
        slots=req.slots,
        deferred=req.defer_activation,
    )
    decision, degraded_reason = decide_and_publish(rt, snapshot, request_input, problem, queued=queued)
    return render(decision, req.slots is not None, degraded_reason)


def decide_and_publish(
    rt: Runtime,
    snapshot: Snapshot,
    request_input: DecisionInput,
    problem: DegradedReason | None,
    *,
    queued: float | None,
    event_field: str = "event_id",
) -> tuple[Decision, DegradedReason | None]:
    """Decide (``Runtime.decide``, shedding an overloaded request; within a running experiment, with the user's
    arm) and hand the decision to the bus: the one path of every ranking API. ``queued``: seconds the request
    waited for this worker (None: unknown, never shed). Returns the decision and why it is degraded (None: it
    is not). Raises ApiError
    409 naming ``event_field`` when the event id is pending or was joined recently."""
    # Overload: the request already waited longer than the budget for this worker. The model's decision is
    # most of a request's CPU; without it the backlog drains, and the uniform decision is logged as such.
    budget_ms = snapshot.config.service.queue_budget_ms
    shed = budget_ms > 0 and queued is not None and queued * 1000.0 > budget_ms
    if shed:
        rt.metrics.shed.inc()
    decision, degraded_reason = rt.decide(snapshot, request_input, problem=problem, shed=shed)
    try:
        rt.publisher.publish(decision)
    except ReusedEventError:
        raise ApiError(409, "duplicate_event", f"{event_field}: a decision with event_id {decision.event_id!r} was "
                       "joined within the last join.recovery_seconds; an event id is used once",
                       field=event_field) from None  # fmt: skip
    except DuplicateEventError:
        raise ApiError(409, "duplicate_event", f"{event_field}: a decision with event_id {decision.event_id!r} is "
                       "already pending", field=event_field) from None  # fmt: skip
    rt.metrics.decisions.labels("true" if decision.degraded else "false").inc()
    if decision.arm is not None:
        rt.metrics.arm_decisions.labels(decision.experiment, decision.arm).inc()
    if degraded_reason is not None:
        rt.metrics.degraded.labels(degraded_reason.value).inc()
        rt.degraded_log.record(decision.event_id, degraded_reason)
    rt.metrics.candidates.observe(len(request_input.candidate_ids))
    return decision, degraded_reason
