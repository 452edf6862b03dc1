"""The Personalizer API's part of /openapi.json (``recommender.service.openapi`` merges it in): Rank, Reward
and Activate, single- and multi-slot, under ``/personalizer/{apiVersion}/...`` (the administration routes are
described in docs/service.md)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from recommender.service.personalizer.schemas import (
    PersonalizerMultiSlotRankRequest,
    PersonalizerMultiSlotRankResponse,
    PersonalizerMultiSlotRewardRequest,
    PersonalizerErrorResponse,
    PersonalizerRankRequest,
    PersonalizerRankResponse,
    PersonalizerRewardRequest,
)
from recommender.service.personalizer.versions import PREVIEW, V1
from recommender.settings.app import AppConfig

REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, **_ref(PersonalizerErrorResponse)}


def _version(versions: tuple[str, ...]) -> dict[str, Any]:
    return {"name": "apiVersion", "in": "path", "required": True, "schema": {"type": "string", "enum": list(versions)}}


_EVENT_ID = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": r"^[^\x00-\x1f\x7f/]+$"}
_EVENT = {"name": "eventId", "in": "path", "required": True, "schema": _EVENT_ID}
_ERRORS = {"400": _error("invalid request; the message names the JSON path"), "401": _error("invalid key"),
           "404": _error("unknown or expired event"), "409": _error("the eventId is already pending"),
           "413": _error("body larger than service.max_body_bytes"), "415": _error("not a JSON body"),
           "503": _error("Redis unavailable; nothing stored, retry")}  # fmt: skip


def personalizer_openapi(config: AppConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """(paths, component schemas) of the Personalizer routes for an app running with ``config``."""
    _, definitions = models_json_schema(
        [(m, "validation") for m in (PersonalizerRankRequest, PersonalizerMultiSlotRankRequest, PersonalizerRewardRequest, PersonalizerMultiSlotRewardRequest)]
        + [(m, "serialization") for m in (PersonalizerRankResponse, PersonalizerMultiSlotRankResponse, PersonalizerErrorResponse)],
        ref_template=REF,
    )
    schemas = definitions["$defs"]
    schemas["PersonalizerRankRequest"]["properties"]["actions"]["maxItems"] = config.service.max_candidates
    schemas["PersonalizerMultiSlotRankRequest"]["properties"]["actions"]["maxItems"] = config.service.max_candidates
    keyed = [{"subscriptionKey": []}, {"apiKey": []}] if config.service.api_keys else []
    rank_security = keyed if config.service.protect_score else []
    accepted = {"description": "accepted"}

    def post(summary: str, op: str, body: type[BaseModel] | None, ok: dict[str, Any], versions: tuple[str, ...],
             event: bool, security: list[Any]) -> dict[str, Any]:  # fmt: skip
        operation: dict[str, Any] = {"summary": summary, "operationId": op, "security": security,
                                     "parameters": [_version(versions), *([_EVENT] if event else [])],
                                     "responses": {**ok, **_ERRORS}}  # fmt: skip
        if body is not None:
            operation["requestBody"] = {"required": True, **_ref(body)}
        return {"post": operation}

    every, preview = V1 + PREVIEW, PREVIEW
    paths = {
        "/personalizer/{apiVersion}/rank": post(
            "Personalizer Rank: the decision over the actions (the first non-excluded is the baseline)",
            "personalizer_rank", PersonalizerRankRequest, {"201": {"description": "ranked", **_ref(PersonalizerRankResponse)}}, every,
            False, rank_security),
        "/personalizer/{apiVersion}/events/{eventId}/reward": post(
            "Personalizer Reward of the event's rewardActionId", "personalizer_reward", PersonalizerRewardRequest,
            {"204": accepted}, every, True, keyed),
        "/personalizer/{apiVersion}/events/{eventId}/activate": post(
            "Personalizer Activate a deferred event", "personalizer_activate", None, {"204": accepted}, every, True,
            keyed),
        "/personalizer/{apiVersion}/multislot/rank": post(
            "Personalizer multi-slot Rank (policy.mode: ccb for more than one slot)", "personalizer_multislot_rank",
            PersonalizerMultiSlotRankRequest, {"201": {"description": "ranked", **_ref(PersonalizerMultiSlotRankResponse)}}, preview, False,
            rank_security),
        "/personalizer/{apiVersion}/multislot/events/{eventId}/reward": post(
            "Personalizer multi-slot Reward, per slot id", "personalizer_multislot_reward", PersonalizerMultiSlotRewardRequest,
            {"204": accepted}, preview, True, keyed),
        "/personalizer/{apiVersion}/multislot/events/{eventId}/activate": post(
            "Personalizer multi-slot Activate", "personalizer_multislot_activate", None, {"204": accepted}, preview,
            True, keyed),
    }  # fmt: skip
    return paths, schemas
