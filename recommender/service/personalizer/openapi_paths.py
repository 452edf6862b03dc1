"""The Personalizer API's part of /openapi.json (``recommender.service.openapi`` merges it in): Rank, Reward
and Activate, single- and multi-slot, and the administration routes, under ``/personalizer/{apiVersion}/...``.

Component names all start with ``Personalizer``, so they never replace one of our /v1 components (our
``RewardRequest`` and Personalizer's are different bodies); ``build_openapi`` refuses a clash.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from recommender.service.personalizer.jobs import JOB_ID_PATTERN
from recommender.service.personalizer.schemas import (
    PersonalizerErrorResponse,
    PersonalizerEvaluationRequest,
    PersonalizerFeatureImportanceRequest,
    PersonalizerLogsProperties,
    PersonalizerModelProperties,
    PersonalizerMultiSlotRankRequest,
    PersonalizerMultiSlotRankResponse,
    PersonalizerMultiSlotRewardRequest,
    PersonalizerPolicy,
    PersonalizerPolicyUpdate,
    PersonalizerRankRequest,
    PersonalizerRankResponse,
    PersonalizerRewardRequest,
    PersonalizerServiceConfiguration,
    PersonalizerServiceConfigurationUpdate,
)
from recommender.service.personalizer.versions import PREVIEW, V1
from recommender.service.schemas import EVENT_ID
from recommender.settings.app import AppConfig

REF = "#/components/schemas/{model}"
REQUESTS = (PersonalizerRankRequest, PersonalizerMultiSlotRankRequest, PersonalizerRewardRequest,
            PersonalizerMultiSlotRewardRequest, PersonalizerServiceConfigurationUpdate, PersonalizerPolicyUpdate,
            PersonalizerEvaluationRequest, PersonalizerFeatureImportanceRequest)
RESPONSES = (PersonalizerRankResponse, PersonalizerMultiSlotRankResponse, PersonalizerErrorResponse,
             PersonalizerServiceConfiguration, PersonalizerPolicy, PersonalizerModelProperties,
             PersonalizerLogsProperties)  # fmt: skip
EVERY = V1 + PREVIEW
BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
_OBJECT = {"application/json": {"schema": {"type": "object"}}}


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, **_ref(PersonalizerErrorResponse)}


def _version(versions: tuple[str, ...]) -> dict[str, Any]:
    return {"name": "apiVersion", "in": "path", "required": True, "schema": {"type": "string", "enum": list(versions)}}


_EVENT = {"name": "eventId", "in": "path", "required": True, "schema": EVENT_ID.json_schema()}
_ERRORS = {"400": _error("invalid request; the message names the JSON path, or why the operation is refused"),
           "401": _error("invalid key"), "404": _error("unknown or expired event, no model or log yet"),
           "405": _error("method not allowed"), "409": _error("the eventId is already pending; no followed config"),
           "413": _error("body larger than service.max_body_bytes"), "415": _error("not a JSON body"),
           "503": _error("Redis unavailable; nothing stored, retry")}  # fmt: skip
_ACCEPTED = {"204": {"description": "accepted"}}


def _operation(summary: str, op: str, responses: dict[str, Any], security: list[Any], *,
               versions: tuple[str, ...] = EVERY, event: bool = False, body: type[BaseModel] | None = None,
               binary_body: bool = False) -> dict[str, Any]:  # fmt: skip
    operation: dict[str, Any] = {"summary": summary, "operationId": op, "security": security,
                                 "parameters": [_version(versions), *([_EVENT] if event else [])],
                                 "responses": {**responses, **_ERRORS}}  # fmt: skip
    if body is not None:
        operation["requestBody"] = {"required": True, **_ref(body)}
    if binary_body:
        operation["requestBody"] = {"required": True, "content": BINARY}
    return operation


def _ok(model: type[BaseModel], status: str = "200") -> dict[str, Any]:
    return {status: {"description": "ok", **_ref(model)}}


def personalizer_openapi(config: AppConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """(paths, component schemas) of the Personalizer routes for an app running with ``config``."""
    _, definitions = models_json_schema(
        [(m, "validation") for m in REQUESTS] + [(m, "serialization") for m in RESPONSES], ref_template=REF
    )
    schemas = definitions["$defs"]
    for name in ("PersonalizerRankRequest", "PersonalizerMultiSlotRankRequest"):
        schemas[name]["properties"]["actions"]["maxItems"] = config.service.max_candidates
    keyed = [{"subscriptionKey": []}, {"apiKey": []}] if config.service.api_keys else []
    rank_security = keyed if config.service.protect_score else []
    p = "/personalizer/{apiVersion}"
    paths: dict[str, Any] = {
        f"{p}/rank": {"post": _operation(
            "Personalizer Rank: the decision over the actions (the first non-excluded is the baseline)",
            "personalizer_rank", _ok(PersonalizerRankResponse, "201"), rank_security, body=PersonalizerRankRequest)},
        f"{p}/events/{{eventId}}/reward": {"post": _operation(
            "Personalizer Reward of the event's rewardActionId", "personalizer_reward", _ACCEPTED, keyed,
            event=True, body=PersonalizerRewardRequest)},
        f"{p}/events/{{eventId}}/activate": {"post": _operation(
            "Personalizer Activate a deferred event", "personalizer_activate", _ACCEPTED, keyed, event=True)},
        f"{p}/multislot/rank": {"post": _operation(
            "Personalizer multi-slot Rank (policy.mode: ccb for more than one slot)", "personalizer_multislot_rank",
            _ok(PersonalizerMultiSlotRankResponse, "201"), rank_security, versions=PREVIEW,
            body=PersonalizerMultiSlotRankRequest)},
        f"{p}/multislot/events/{{eventId}}/reward": {"post": _operation(
            "Personalizer multi-slot Reward, per slot id", "personalizer_multislot_reward", _ACCEPTED, keyed,
            versions=PREVIEW, event=True, body=PersonalizerMultiSlotRewardRequest)},
        f"{p}/multislot/events/{{eventId}}/activate": {"post": _operation(
            "Personalizer multi-slot Activate", "personalizer_multislot_activate", _ACCEPTED, keyed,
            versions=PREVIEW, event=True)},
        f"{p}/configurations/service": {
            "get": _operation("Personalizer service configuration (join, trainer and exploration settings)",
                              "personalizer_get_service_configuration", _ok(PersonalizerServiceConfiguration), keyed),
            "put": _operation("Change the service configuration: writes the followed config file",
                              "personalizer_update_service_configuration", _ok(PersonalizerServiceConfiguration),
                              keyed, body=PersonalizerServiceConfigurationUpdate)},
        f"{p}/configurations/policy": {
            "get": _operation("The learning policy in force as VW arguments", "personalizer_get_policy",
                              _ok(PersonalizerPolicy), keyed),
            "put": _operation("Change the learning policy (--epsilon only)", "personalizer_update_policy",
                              _ok(PersonalizerPolicy), keyed, body=PersonalizerPolicyUpdate),
            "delete": _operation("Reset the exploration to its defaults", "personalizer_reset_policy",
                                 _ok(PersonalizerPolicy), keyed)},
        f"{p}/model": {
            "get": _operation("The current model version's VW file", "personalizer_get_model",
                              {"200": {"description": "a VW model file", "content": BINARY}}, keyed),
            "put": _operation("Publish a VW model file as the current model version", "personalizer_import_model",
                              _ACCEPTED, keyed, binary_body=True),
            "delete": _operation("Publish a fresh model of the current policy settings", "personalizer_reset_model",
                                 _ACCEPTED, keyed)},
        f"{p}/model/properties": {"get": _operation(
            "The current model version's times", "personalizer_get_model_properties",
            _ok(PersonalizerModelProperties), keyed)},
        f"{p}/logs/properties": {"get": _operation(
            "The event log's date range", "personalizer_get_log_properties", _ok(PersonalizerLogsProperties), keyed)},
        f"{p}/logs": {"delete": _operation(
            "Refused: the event log is the record of every decision", "personalizer_delete_log", {}, keyed)},
        f"{p}/configurations/applyFromEvaluation": {"post": _operation(
            "Refused: a policy change is configuration work and a restart", "personalizer_apply_from_evaluation",
            {}, keyed)},
    }  # fmt: skip
    job = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "pattern": JOB_ID_PATTERN}}
    for kind, body, summary in (("evaluations", PersonalizerEvaluationRequest, "an offline evaluation"),
                                ("featureImportances", PersonalizerFeatureImportanceRequest, "a feature importance")):
        started = {"200": {"description": "started (recommender optimize runs in the background)"}}
        one = {"200": {"description": summary, "content": _OBJECT}}
        item = {
            "put": _operation(f"Start {summary}: a `recommender optimize` run", f"personalizer_create_{kind}", started,
                              keyed, body=body),
            "get": _operation(f"The status and results of {summary}", f"personalizer_get_{kind}", one, keyed),
            "delete": _operation(f"Stop and delete {summary}", f"personalizer_delete_{kind}", _ACCEPTED, keyed)}
        for operation in item.values():
            operation["parameters"].append(job)
        paths[f"{p}/{kind}/{{id}}"] = item
        listed = {"200": {"description": "all of them", "content": _OBJECT}}
        paths[f"{p}/{kind}"] = {"get": _operation(f"All {kind}", f"personalizer_list_{kind}", listed, keyed)}
    return paths, schemas
