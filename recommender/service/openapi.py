"""The OpenAPI 3.1 document served at ``/openapi.json``, generated from the pydantic models.

It is built once per app from its configuration, so it states the limits in force (``maxItems`` of
``candidates``, the reward range) and the declared item features accepted inline on candidates.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from features.config import FeatureGroup, FeatureType
from recommender.service.experiment_schemas import ExperimentStatus
from recommender.service.personalizer.openapi_paths import personalizer_openapi
from recommender.service.schemas import (
    EVENT_ID,
    MAX_LIST,
    MAX_STRING,
    ErrorResponse,
    Health,
    Readiness,
    RewardRequest,
    ScoreRequest,
    ScoreResponse,
)
from recommender.settings.app import AppConfig

REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "malformed request; the message names the field",
        401: "missing or invalid API key",
        404: "unknown or expired event",
        409: "a decision with this event_id is already pending",
        413: "body larger than service.max_body_bytes",
        503: "Redis unavailable; the reward was not stored, retry",
    }
    return {str(s): {"description": reasons[s], "content": _json(_ref(ErrorResponse))} for s in statuses}


def _feature_schema(spec_type: FeatureType, dim: int | None) -> dict[str, Any]:
    number = {"type": "number"}
    return {
        FeatureType.NUMERIC: number,
        FeatureType.CATEGORICAL: {"type": "string", "maxLength": MAX_STRING},
        FeatureType.TAGS: {"type": "array", "items": {"type": "string", "maxLength": MAX_STRING}, "maxItems": MAX_LIST},
        FeatureType.VECTOR: {"type": "array", "items": number, "minItems": dim, "maxItems": dim},
    }[spec_type]


def _item_features(group: FeatureGroup) -> dict[str, Any]:
    return {
        "type": "object",
        "description": "inline values of the item group's declared features; override the feature store's",
        "properties": {name: _feature_schema(spec.type, spec.dim) for name, spec in group.features.items()},
        "additionalProperties": False,
        "default": {},
    }


def build_openapi(config: AppConfig) -> dict[str, Any]:
    """The whole document for an app running with ``config``."""
    _, definitions = models_json_schema(
        [
            (ScoreRequest, "validation"),
            (RewardRequest, "validation"),
            (ScoreResponse, "serialization"),
            (ErrorResponse, "serialization"),
            (Health, "serialization"),
            (Readiness, "serialization"),
            (ExperimentStatus, "serialization"),
        ],
        ref_template=REF,
    )
    schemas = definitions["$defs"]
    schemas["ScoreRequest"]["properties"]["candidates"]["maxItems"] = config.service.max_candidates
    item_group = config.features.groups[config.features.item_group]
    schemas["Candidate"]["properties"]["features"] = _item_features(item_group)
    low, high = config.join.reward_range
    reward = schemas["RewardRequest"]["properties"]["reward"]
    for member in reward["anyOf"]:
        member.update(minimum=low, maximum=high)

    # With no key configured the guarded endpoints are open, and the document says so.
    secured = [{"bearer": []}, {"apiKey": []}] if config.service.api_keys else []
    score_security = secured if config.service.protect_score else []
    no_content = {"description": "accepted"}
    paths: dict[str, Any] = {
        "/v1/score": {
            "post": {
                "summary": "Rank candidates for a user and context; log the decision",
                "operationId": "score",
                "security": score_security,
                "requestBody": {"required": True, "content": _json(_ref(ScoreRequest))},
                "responses": {
                    "200": {"description": "the decision", "content": _json(_ref(ScoreResponse))},
                    **_errors(400, 401, 409, 413),
                },
            }
        },
        "/v1/reward": {
            "post": {
                "summary": "Report a reward for a decision's slot; 204 once it is durable in the bus",
                "operationId": "reward",
                "security": secured,
                "requestBody": {"required": True, "content": _json(_ref(RewardRequest))},
                "responses": {"204": no_content, **_errors(400, 401, 404, 413, 503)},
            }
        },
        "/v1/events/{event_id}/activate": {
            "post": {
                "summary": "Activate a deferred decision (it was shown): it will be learned from",
                "operationId": "activate",
                "security": secured,
                "parameters": [
                    {
                        "name": "event_id",
                        "in": "path",
                        "required": True,
                        "schema": EVENT_ID.json_schema(),  # the pattern and lengths of every id
                    }
                ],
                "responses": {"204": no_content, **_errors(400, 401, 404, 503)},
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness: the process answers",
                "operationId": "healthz",
                "security": [],
                "responses": {"200": {"description": "alive", "content": _json(_ref(Health))}},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness (for probes): 200 while this worker answers /v1/score, degraded or not; "
                           "`healthy` and `reasons` say whether the answers are the full ones",
                "operationId": "readyz",
                "security": [],
                "responses": {
                    "200": {"description": "ready", "content": _json(_ref(Readiness))},
                    "503": {"description": "not ready; reasons listed", "content": _json(_ref(Readiness))},
                },
            }
        },
        "/healthz/full": {
            "get": {
                "summary": "Full health (for monitoring): model loaded, features loaded and reachable, bus "
                           "reachable; 503 with the reasons otherwise",
                "operationId": "healthz_full",
                "security": [],
                "responses": {
                    "200": {"description": "fully healthy", "content": _json(_ref(Readiness))},
                    "503": {"description": "degraded; reasons listed", "content": _json(_ref(Readiness))},
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "security": [],
                "responses": {"200": {"description": "exposition format", "content": {"text/plain": {}}}},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1", "content": _json({"type": "object"})}},
            }
        },
        "/v1/admin/settings": {
            "get": {
                "summary": "The settings in force: exploration, model version, last config reload",
                "operationId": "settings",
                "security": secured,
                "responses": {
                    "200": {"description": "settings", "content": _json({"type": "object"})},
                    **_errors(401),
                },
            }
        },
        "/v1/admin/experiments": {
            "get": {
                "summary": "The running experiment from the event log: per-arm figures, each arm against the "
                           "control (always-valid and fixed-horizon), the sample-ratio check, the decision",
                "operationId": "experiments",
                "security": secured,
                "responses": {
                    "200": {"description": "the experiment", "content": _json(_ref(ExperimentStatus))},
                    **_errors(401),
                },
            }
        },
    }
    personalizer_paths, personalizer_schemas = personalizer_openapi(config)  # Personalizer's API beside /v1
    paths.update(personalizer_paths)
    clash = schemas.keys() & personalizer_schemas.keys()
    if clash:  # one would silently replace the other's body in the document
        raise ValueError(f"component schemas defined twice in /openapi.json: {', '.join(sorted(clash))}")
    schemas.update(personalizer_schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "bandit-recommender scoring service",
            "version": "1",
            "description": "Contextual-bandit ranking with logged propensities. See docs/service.md.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "subscriptionKey": {"type": "apiKey", "in": "header", "name": "Ocp-Apim-Subscription-Key"},
            },
        },
    }
