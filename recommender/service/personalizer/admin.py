"""Personalizer's administration API (the SDK's ``PersonalizerAdministrationClient``), as far as it maps.

- ``GET/PUT .../configurations/service``: ``rewardWaitTime`` = ``join.reward_wait_time`` (restart-only: stored,
  applies at the next start), ``defaultReward`` = ``join.default_reward``, ``rewardAggregation`` =
  ``join.aggregation`` (Personalizer's ``earliest`` is our ``first``), ``explorationPercentage`` = the
  ``epsilon`` of ``epsilon_greedy`` exploration, ``modelExportFrequency`` = ``trainer.model_update_interval``,
  ``learningMode`` = ``trainer.mode``. A PUT writes the followed config file (``config_file``): applied the way
  ops' edits are. Fields with no counterpart must keep the values GET shows (``logRetentionDays: -1``: we
  never delete the log; ``modelRetrainDays: 0``; no log mirroring, no auto-optimization); others are refused.
- ``GET .../configurations/policy``: the VW arguments of the policy in force (``settings.vw_arguments``, the
  one mapping of learning policies); PUT maps its arguments the same way and may change only the ``--epsilon``
  of epsilon-greedy exploration (the hot-reloadable part); DELETE resets the exploration to its defaults.
  Arguments that do not map, and any other difference, are refused naming them (importing another learning
  policy is ``recommender policy import-personalizer`` and a restart, docs/policy.md).
- ``GET .../model``: the current model version's VW file; ``GET .../model/properties``: its times.
- ``PUT .../model`` (``application/octet-stream``, a VW model file, e.g. one Personalizer exported): published
  as a new model version and made current (``recommender.policy.model_import``: its stored arguments must map
  onto the policy section, else 400 naming them); ``DELETE .../model``: a fresh model of the current policy
  settings, published as the current version. Both keep the current version's trainer checkpoint: learning
  continues from the events not learned yet, not from the start of the log. Serving workers swap the new
  version in as they swap any (the model follower).
- ``GET .../logs/properties``: the event log's date range.
- Evaluations and feature importances: ``recommender.service.personalizer.evaluations``.
- Refused with 400 ``OperationNotAllowed`` and the reason: deleting the log (the event log is the record of
  every decision; delete partitions under ``join.event_log_dir`` deliberately) and applying an evaluation's
  policy (a policy change is configuration work and a restart).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, request

from recommender.errors import ConfigError, EventLogError, ModelStoreError, PolicyError
from recommender.events.log import read_table
from recommender.policy.model_dir import MODEL_FILE
from recommender.policy.model_import import import_vw_model
from recommender.policy.model_store import ModelStore, open_model_store
from recommender.policy.policy import Policy
from recommender.service.auth import require_key
from recommender.service.errors import ApiError, accept_media_types, json_response
from recommender.service.personalizer import errors
from recommender.service.personalizer.bodies import parse
from recommender.service.personalizer.config_file import write_changes
from recommender.service.personalizer.durations import format_duration, parse_duration
from recommender.service.personalizer.schemas import PersonalizerPolicyUpdate, PersonalizerServiceConfigurationUpdate
from recommender.service.personalizer.versions import add_route, check_api_version
from recommender.service.runtime import Runtime, runtime
from recommender.settings.app import AppConfig
from recommender.settings.policy import EpsilonGreedy
from recommender.settings.vw_arguments import VWArgumentsError, arguments_from_policy, policy_from_arguments

bp = Blueprint("personalizer_admin", __name__)
errors.register(bp)

CONFIG_ERROR = "InvalidServiceConfiguration"
MODEL_ERROR = "InvalidModelFile"
MODEL_MEDIA_TYPE = "application/octet-stream"
MAX_MODEL_BYTES = 512 * 2**20  # a model upload, streamed to disk (the JSON routes keep service.max_body_bytes)
POLICY_ERROR = "InvalidPolicyConfiguration"
_MODES = {"online": "Online", "apprentice": "Apprentice", "logging_only": "LoggingOnly"}
_AGGREGATIONS = {"first": "earliest"}  # ours -> Personalizer's name, where it had one
# Personalizer's fields with no counterpart here, and the only values they may take.
_FIXED: dict[str, Any] = {"logRetentionDays": -1, "modelRetrainDays": 0, "logMirrorEnabled": False,
                          "isAutoOptimizationEnabled": False}  # fmt: skip


def admin_runtime() -> Runtime:
    """This worker's runtime, once the request's key is checked (every administration route needs one)."""
    rt = runtime()
    require_key(rt.snapshot.api_keys, request)
    return rt


def _refuse(what: str, why: str) -> ApiError:
    return ApiError(400, "OperationNotAllowed", f"{what} is not supported by this service: {why}")


def service_configuration(config: AppConfig) -> dict[str, Any]:
    exploration = config.policy.exploration
    return {
        "rewardWaitTime": format_duration(config.join.reward_wait_time),
        "defaultReward": config.join.default_reward,
        "rewardAggregation": _AGGREGATIONS.get(config.join.aggregation, config.join.aggregation),
        "explorationPercentage": exploration.epsilon if isinstance(exploration, EpsilonGreedy) else 0.0,
        "modelExportFrequency": format_duration(config.trainer.model_update_interval),
        "learningMode": _MODES[config.trainer.mode],
        **_FIXED,
    }


def get_service_configuration(version: str | None) -> Response:
    check_api_version(version)
    return json_response(service_configuration(admin_runtime().snapshot.config))


def _duration(body: dict[str, Any], field: str) -> float:
    value = body[field]
    try:
        return parse_duration(value) if isinstance(value, str) else math.nan
    except ValueError as exc:
        raise ApiError(400, CONFIG_ERROR, f"{field}: {exc}", field=field) from None


def _number(body: dict[str, Any], field: str) -> float:
    value = body[field]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(400, CONFIG_ERROR, f"{field}: expected a number, got {value!r}", field=field)
    return float(value)


def update_service_configuration(version: str | None) -> Response:
    check_api_version(version)
    rt = admin_runtime()
    config = rt.snapshot.config
    body = parse(PersonalizerServiceConfigurationUpdate, CONFIG_ERROR).model_dump(exclude_none=True)
    current = service_configuration(config)
    for field, fixed in _FIXED.items():
        if field in body and body[field] != fixed:
            raise ApiError(400, CONFIG_ERROR, f"{field}: only {fixed!r} is supported here (the event log is kept "
                           "until deleted, models learn continuously, no log mirroring or auto-optimization)",
                           field=field)  # fmt: skip
    changes: dict[tuple[str, ...], Any] = {}
    if body.get("rewardWaitTime", current["rewardWaitTime"]) != current["rewardWaitTime"]:
        changes["join", "reward_wait_time"] = _duration(body, "rewardWaitTime")
    if body.get("modelExportFrequency", current["modelExportFrequency"]) != current["modelExportFrequency"]:
        changes["trainer", "model_update_interval"] = _duration(body, "modelExportFrequency")
    if "defaultReward" in body and _number(body, "defaultReward") != config.join.default_reward:
        changes["join", "default_reward"] = _number(body, "defaultReward")
    if body.get("rewardAggregation", current["rewardAggregation"]) != current["rewardAggregation"]:
        theirs = {v: k for k, v in _AGGREGATIONS.items()}
        changes["join", "aggregation"] = theirs.get(body["rewardAggregation"], body["rewardAggregation"])
    if body.get("learningMode", current["learningMode"]) != current["learningMode"]:
        modes = {v: k for k, v in _MODES.items()}
        if body["learningMode"] not in modes:
            raise ApiError(400, CONFIG_ERROR, f"learningMode: {body['learningMode']!r} is not one of "
                           f"{', '.join(modes)}", field="learningMode")  # fmt: skip
        changes["trainer", "mode"] = modes[body["learningMode"]]
    if "explorationPercentage" in body and _number(body, "explorationPercentage") != current["explorationPercentage"]:
        if not isinstance(config.policy.exploration, EpsilonGreedy):
            raise ApiError(400, CONFIG_ERROR, f"explorationPercentage: the exploration in force is "
                           f"{config.policy.exploration.algorithm}, not epsilon_greedy; change policy.exploration "
                           "in the config file", field="explorationPercentage")  # fmt: skip
        changes["policy", "exploration", "epsilon"] = _number(body, "explorationPercentage")
    new = write_changes(rt, changes, code=CONFIG_ERROR) if changes else config
    return json_response(service_configuration(new))


def policy_contract(config: AppConfig) -> dict[str, Any]:
    """The learning policy in force as Personalizer shows it: its VW arguments (``arguments_from_policy``,
    the mapping ``recommender policy export-personalizer`` writes)."""
    return {"name": f"{config.policy.mode}-{config.policy.exploration.algorithm}",
            "arguments": arguments_from_policy(config.policy)}  # fmt: skip


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The key paths where two dumped policy sections differ (``learning.cb_type``), in key order."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping) and a.get("algorithm") == b.get("algorithm"):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} ({a!r} -> {b!r})")
    return out


def _epsilon_change(config: AppConfig, arguments: str) -> float | None:
    """The epsilon a learning policy's arguments ask for (None: no change); refuses, naming them, arguments
    that do not map (``policy_from_arguments``) and any other difference from the policy in force."""
    try:
        asked = policy_from_arguments(arguments, config.policy)
    except VWArgumentsError as exc:
        raise ApiError(400, POLICY_ERROR, f"arguments: {exc}", field="arguments") from None
    current = config.policy
    epsilon = getattr(asked.exploration, "epsilon", None)
    if isinstance(current.exploration, EpsilonGreedy) and isinstance(asked.exploration, EpsilonGreedy):
        asked = asked.model_copy(update={"exploration": current.exploration})
    differs = _differences(current.model_dump(by_alias=True), asked.model_dump(by_alias=True))
    if differs:
        raise ApiError(400, POLICY_ERROR, "arguments: only --epsilon (of epsilon-greedy exploration) can change "
                       f"while the service runs; differs: {'; '.join(differs)}", field="arguments")  # fmt: skip
    return epsilon if epsilon != getattr(current.exploration, "epsilon", None) else None


def get_policy(version: str | None) -> Response:
    check_api_version(version)
    return json_response(policy_contract(admin_runtime().snapshot.config))


def update_policy(version: str | None) -> Response:
    check_api_version(version)
    rt = admin_runtime()
    config = rt.snapshot.config
    epsilon = _epsilon_change(config, parse(PersonalizerPolicyUpdate, POLICY_ERROR).arguments)
    if epsilon is not None:
        config = write_changes(rt, {("policy", "exploration", "epsilon"): epsilon}, code=POLICY_ERROR)
    return json_response(policy_contract(config))


def reset_policy(version: str | None) -> Response:
    check_api_version(version)
    rt = admin_runtime()
    config = rt.snapshot.config
    exploration = config.policy.exploration
    default = type(exploration)().model_dump(by_alias=True)  # every exploration class has defaults
    if default != exploration.model_dump(by_alias=True):
        config = write_changes(rt, {("policy", "exploration"): default}, code=POLICY_ERROR)
    return json_response(policy_contract(config))


def _current_model(rt: Runtime) -> Any:
    store = open_model_store(rt.snapshot.config)
    try:
        version_id = store.current_version()
        if version_id is None:
            raise ApiError(404, "ResourceNotFound", "no model version has been published yet")
        return store.version(version_id)
    except ModelStoreError as exc:
        raise ApiError(404, "ResourceNotFound", f"the current model cannot be read: {exc}") from None


def export_model(version: str | None) -> Response:
    check_api_version(version)
    model = _current_model(admin_runtime())
    data = (model.path / MODEL_FILE).read_bytes()
    return Response(data, mimetype="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{model.id}.vw"'})  # fmt: skip


def _checkpoint(store: ModelStore) -> dict[str, Any] | None:
    """The current version's trainer checkpoint (None: no version, or none stored)."""
    try:
        current = store.current_version()
        return store.version(current).checkpoint if current is not None else None
    except ModelStoreError:
        return None


def import_model(version: str | None) -> Response:
    check_api_version(version)
    rt = admin_runtime()
    config = rt.snapshot.config
    request.max_content_length = MAX_MODEL_BYTES
    store = open_model_store(config)
    store.root.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".upload-", suffix=".vw", dir=store.root)
    try:
        with os.fdopen(fd, "wb") as handle:
            size = 0
            while chunk := request.stream.read(1 << 20):
                handle.write(chunk)
                size += len(chunk)
        if size == 0:
            raise ApiError(400, MODEL_ERROR, "(body): a VW model file is required", field="body")
        try:
            import_vw_model(name, store, config, checkpoint=_checkpoint(store))
        except (ModelStoreError, PolicyError, ConfigError) as exc:
            raise ApiError(400, MODEL_ERROR, f"(body): not a model this service can serve: {exc}",
                           field="body") from None  # fmt: skip
    finally:
        os.unlink(name)
    return Response(status=204)


def reset_model(version: str | None) -> Response:
    check_api_version(version)
    config = admin_runtime().snapshot.config
    store = open_model_store(config)
    fresh = Policy.create(config.policy, config.user_group, config.item_group)
    try:
        # Made current: the model followers swap it in, and the trainer continues from it and the log's position
        # now (renew: the fresh model's bytes are always the same version, which an earlier reset may hold).
        store.publish(fresh, checkpoint=_checkpoint(store), renew=True)
    finally:
        fresh.close()
    return Response(status=204)


def model_properties(version: str | None) -> Response:
    check_api_version(version)
    model = _current_model(admin_runtime())
    created = model.created_at.astimezone(UTC).isoformat()
    return json_response({"creationTime": created, "lastModifiedTime": created})


def log_properties(version: str | None) -> Response:
    check_api_version(version)
    rt = admin_runtime()
    try:
        table = read_table(rt.snapshot.config.join.event_log_dir)
    except EventLogError:
        table = None
    if table is None or table.num_rows == 0:
        raise ApiError(404, "LogsPropertiesNotFound", "the event log holds no events yet")
    stamps = table.column("timestamp")
    first: datetime = stamps[0].as_py()
    last: datetime = stamps[len(stamps) - 1].as_py()
    return json_response({"dateRange": {"from": first.isoformat(), "to": last.isoformat()}})


def refused(version: str | None, **_: str) -> Response:
    check_api_version(version)
    admin_runtime()
    path = request.path
    if path.endswith("/logs"):
        raise _refuse("deleting the logs", "the event log is the record of every decision; delete partitions under "
                      "join.event_log_dir deliberately")  # fmt: skip
    raise _refuse("applying an evaluation's policy over this API", "a learning policy other than the one in force "
                  "is a configuration change and a restart: `recommender policy import-personalizer`, or "
                  "`recommender optimize --write-config`")  # fmt: skip


add_route(bp, "/configurations/service", get_service_configuration, ["GET"])
add_route(bp, "/configurations/service", update_service_configuration, ["PUT"])
add_route(bp, "/configurations/policy", get_policy, ["GET"])
add_route(bp, "/configurations/policy", update_policy, ["PUT"])
add_route(bp, "/configurations/policy", reset_policy, ["DELETE"])
add_route(bp, "/model", export_model, ["GET"])
add_route(bp, "/model/properties", model_properties, ["GET"])
add_route(bp, "/logs/properties", log_properties, ["GET"])
add_route(bp, "/logs", refused, ["DELETE"])
add_route(bp, "/model", import_model, ["PUT"])
add_route(bp, "/model", reset_model, ["DELETE"])
add_route(bp, "/configurations/applyFromEvaluation", refused, ["POST"])


@bp.record_once
def _model_upload(state: Any) -> None:
    accept_media_types(state.app, f"{bp.name}.{import_model.__name__}", (MODEL_MEDIA_TYPE,))
