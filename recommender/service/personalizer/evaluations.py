"""Personalizer's offline evaluations and feature importances, mapped onto ``recommender optimize``.

- ``PUT .../evaluations/{id}`` ``{"name", "startTime", "endTime", "policies": [{"name", "arguments"}],
  "enablePolicyOptimization"}`` starts ``recommender optimize`` over the event log's decisions in
  [startTime, endTime) (``jobs``: one run at a time, bounded): each policy's VW arguments are mapped onto
  the policy section (``settings.vw_arguments``, the one mapping; arguments that do not map are a 400 naming
  them) and replayed as a ``--setting``; ``enablePolicyOptimization`` adds a search over
  ``learning.learning_rate`` (``OPTIMIZATION_SEARCH``). Answers 200 with no body, as Personalizer did.
- ``GET .../evaluations/{id}``: its status and, once it succeeded, its results in Personalizer's shape:
  one ``content.value`` entry per policy, ``policySource`` ``Online`` (the logged policy), ``Baseline``,
  ``Random`` (uniform), ``Custom`` (the configured setting and the requested policies) or
  ``OfflineExperimentation`` (the search's points), ``summary`` the primary estimator's estimate and
  interval, ``timeseries`` optimize's timeline (the estimate per stretch of the log); ``optimalPolicy`` the
  recommended setting's VW arguments (none when nothing beat the logged policy). The ``startTime``/
  ``endTime`` query parameters the SDK sends are accepted; the results cover the evaluation's own range.
- ``GET .../evaluations`` lists them (``{"value": [...]}``), ``DELETE`` stops and deletes one (204).
- ``PUT/GET/DELETE .../featureImportances/{id}`` likewise run ``optimize --importance`` (the configured
  setting's features, left out one at a time): ``featureScores`` are ``{"namespace", "featureName",
  "score"}`` with score = the estimated reward lost without the feature (a whole namespace has
  ``featureName`` ``""``).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import yaml
from flask import Blueprint, Response

from recommender.service.errors import ApiError, json_response
from recommender.service.personalizer import errors, jobs
from recommender.service.personalizer.admin import POLICY_ERROR, admin_runtime
from recommender.service.personalizer.bodies import parse
from recommender.service.personalizer.schemas import PersonalizerEvaluationRequest, PersonalizerFeatureImportanceRequest
from recommender.service.personalizer.versions import add_route, check_api_version
from recommender.service.runtime import Runtime
from recommender.settings.policy import PolicyConfig
from recommender.settings.vw_arguments import VWArgumentsError, arguments_from_policy, policy_from_arguments

bp = Blueprint("personalizer_evaluations", __name__)
errors.register(bp)

EVALUATIONS, IMPORTANCES = jobs.KINDS
OPTIMIZATION_SEARCH = "learning.learning_rate=0.1|0.5|2|8"
_SOURCES = {"logged": "Online", "baseline": "Baseline", "uniform": "Random", "configured": "Custom",
            "listed": "Custom", "search": "OfflineExperimentation"}  # fmt: skip
_KEYS = ("mode", "exploration", "learning", "interactions", "bits", "seed")


def _job_id(job_id: str) -> str:
    if not re.match(jobs.JOB_ID_PATTERN, job_id):
        raise ApiError(400, "BadRequest", "id: letters, digits, '.', '_' and '-', at most 128, starting with a "
                       "letter or digit", field="id")  # fmt: skip
    return job_id


def _setting(policy: PolicyConfig, base: PolicyConfig) -> str | None:
    """The ``--setting`` overrides that turn ``base`` into ``policy`` (None: they are the same)."""
    new, old = policy.model_dump(mode="json", by_alias=True), base.model_dump(mode="json", by_alias=True)
    parts = [f"{key}={yaml.safe_dump(new[key], default_flow_style=True, width=10**6).strip()}"
             for key in _KEYS if new[key] != old[key]]  # fmt: skip
    return ",".join(parts) or None


def create_evaluation(version: str | None, evaluation_id: str) -> Response:
    check_api_version(version)
    rt = admin_runtime()
    _job_id(evaluation_id)
    req = parse(PersonalizerEvaluationRequest, "InvalidEvaluation")
    base = rt.snapshot.config.policy
    settings: dict[str, dict[str, str]] = {}  # --setting text -> the requested policy
    same_as_configured: list[dict[str, str]] = []
    for i, policy in enumerate(req.policies or ()):
        try:
            mapped = policy_from_arguments(policy.arguments, base)
        except VWArgumentsError as exc:
            raise ApiError(400, POLICY_ERROR, f"policies[{i}].arguments: {exc}", field=f"policies[{i}].arguments"
                           ) from None  # fmt: skip
        given = {"name": policy.name, "arguments": policy.arguments}
        setting = _setting(mapped, base)
        if setting is None:
            same_as_configured.append(given)
        else:
            settings.setdefault(setting, given)
    args = [*_range(req.startTime, req.endTime), *[a for s in settings for a in ("--setting", s)]]
    if req.enablePolicyOptimization:
        args += ["--search", OPTIMIZATION_SEARCH]
    request = {"name": req.name, "startTime": req.startTime.isoformat(), "endTime": req.endTime.isoformat(),
               "settings": settings, "sameAsConfigured": same_as_configured,
               "configuredArguments": arguments_from_policy(base)}  # fmt: skip
    jobs.start(rt, EVALUATIONS, evaluation_id, request, ["--log", str(rt.snapshot.config.join.event_log_dir), *args])
    return Response(status=200)


def _range(start: datetime, end: datetime) -> list[str]:
    """``--since``/``--until`` of [start, end) (both in UTC, as the request schema gives them)."""
    if end <= start:
        raise ApiError(400, "BadRequest", "endTime: must be after startTime", field="endTime")
    return ["--since", start.isoformat(), "--until", end.isoformat()]


def _header(job: jobs.Job, extra: dict[str, Any]) -> dict[str, Any]:
    out = {"id": job.id, "name": job.request["name"], "startTime": job.request["startTime"],
           "endTime": job.request["endTime"], "status": job.status, "creationTime": job.request["creationTime"],
           **extra}  # fmt: skip
    if job.error is not None:
        out["description"] = job.error
    return out


def _summary(policy: dict[str, Any], primary: str) -> dict[str, Any]:
    estimate = next(e for e in policy["evaluation"]["estimates"] if e["estimator"] == primary)
    interval = estimate["intervals"][0] if estimate["intervals"] else None
    return {"expectedReward": estimate["value"],
            "confidenceInterval": [interval["low"], interval["high"]] if interval else []}  # fmt: skip


def _arguments(policy: dict[str, Any], request: dict[str, Any]) -> str:
    args = [a for a in policy.get("vw_args") or () if a != "--quiet"]
    if "--random_seed" in args:
        at = args.index("--random_seed")
        args = args[:at] + args[at + 2 :]
    return " ".join(args) if args else request["configuredArguments"]


def evaluation_body(job: jobs.Job) -> dict[str, Any]:
    """Personalizer's Evaluation of a job (module docstring)."""
    body = _header(job, {"evaluationType": "Manual"})
    result = job.result
    if job.status != "Succeeded" or result is None:
        return body
    primary = result["settings"]["primary"]
    ends = result.get("timeline_ends") or []
    values = []
    for policy in result["policies"]:
        requested = job.request["settings"].get(policy["name"])
        kind = policy["kind"]
        entries = [requested] if requested else [{"name": policy["name"], "arguments": _arguments(policy, job.request)}]
        if kind == "configured":
            entries += job.request["sameAsConfigured"]
        summary = _summary(policy, primary)
        timeline = policy.get("timeline") or ()
        series = [{"timeStamp": end, "expectedReward": value} for end, value in zip(ends, timeline, strict=False)]
        for entry in entries:
            values.append({"name": entry["name"], "arguments": entry["arguments"], "policySource": _SOURCES.get(kind,
                           "Custom"), "summary": summary, "timeseries": {"data": series}})  # fmt: skip
    body["content"] = {"startTime": job.request["startTime"], "endTime": job.request["endTime"], "value": values}
    recommended = (result.get("recommendation") or {}).get("setting")
    chosen = next((v for v in values if v["name"] == recommended or job.request["settings"].get(str(recommended), {})
                   .get("name") == v["name"]), None)  # fmt: skip
    if chosen is not None:
        body["optimalPolicy"] = chosen["arguments"]
    return body


def get_evaluation(version: str | None, evaluation_id: str) -> Response:
    check_api_version(version)
    return json_response(evaluation_body(jobs.find(admin_runtime(), EVALUATIONS, _job_id(evaluation_id))))


def list_evaluations(version: str | None) -> Response:
    check_api_version(version)
    listed = [{k: v for k, v in evaluation_body(j).items() if k not in ("content", "optimalPolicy")}
              for j in jobs.jobs(admin_runtime(), EVALUATIONS)]  # fmt: skip
    return json_response({"value": listed})


def _delete(rt: Runtime, kind: str, job_id: str) -> Response:
    jobs.delete(rt, kind, _job_id(job_id))
    return Response(status=204)


def delete_evaluation(version: str | None, evaluation_id: str) -> Response:
    check_api_version(version)
    return _delete(admin_runtime(), EVALUATIONS, evaluation_id)


def create_feature_importance(version: str | None, feature_importance_id: str) -> Response:
    check_api_version(version)
    rt = admin_runtime()
    _job_id(feature_importance_id)
    req = parse(PersonalizerFeatureImportanceRequest, "InvalidFeatureImportance")
    request = {"name": req.name, "startTime": req.startTime.isoformat(), "endTime": req.endTime.isoformat()}
    args = ["--log", str(rt.snapshot.config.join.event_log_dir), *_range(req.startTime, req.endTime), "--importance"]
    jobs.start(rt, IMPORTANCES, feature_importance_id, request, args)
    return Response(status=200)


# Feature-importance keys naming a JSON namespace of the context or of the actions (``recommender optimize``,
# docs/offline-evaluation.md): Personalizer names such a feature by its namespace alone.
JSON_KEY_SOURCES = ("context", "action")


def personalizer_feature_name(key: str) -> tuple[str, str]:
    """(namespace, featureName) of a feature-importance key: ``user.x`` -> (user, x), a declared group
    alone ``item`` -> (item, ""), a JSON namespace ``context.device`` -> (device, ""), a group inside one
    ``context.user.geo`` -> (user, geo)."""
    source, _, rest = key.partition(".")
    if source in JSON_KEY_SOURCES and rest:
        namespace, _, group = rest.partition(".")
        return namespace, group
    return source, rest


def importance_body(job: jobs.Job) -> dict[str, Any]:
    """Personalizer's FeatureImportance of a job (module docstring)."""
    body = _header(job, {})
    if job.status == "Succeeded" and job.result is not None:
        scores = []
        for entry in job.result.get("feature_importance") or ():
            namespace, feature = personalizer_feature_name(str(entry["left_out"]))
            scores.append({"namespace": namespace, "featureName": feature, "score": entry["drop"]["value"]})
        body["featureScores"] = scores
    return body


def get_feature_importance(version: str | None, feature_importance_id: str) -> Response:
    check_api_version(version)
    return json_response(importance_body(jobs.find(admin_runtime(), IMPORTANCES, _job_id(feature_importance_id))))


def list_feature_importances(version: str | None) -> Response:
    check_api_version(version)
    listed = [{k: v for k, v in importance_body(j).items() if k != "featureScores"}
              for j in jobs.jobs(admin_runtime(), IMPORTANCES)]  # fmt: skip
    return json_response({"value": listed})


def delete_feature_importance(version: str | None, feature_importance_id: str) -> Response:
    check_api_version(version)
    return _delete(admin_runtime(), IMPORTANCES, feature_importance_id)


add_route(bp, "/evaluations", list_evaluations, ["GET"])
add_route(bp, "/evaluations/<evaluation_id>", create_evaluation, ["PUT"])
add_route(bp, "/evaluations/<evaluation_id>", get_evaluation, ["GET"])
add_route(bp, "/evaluations/<evaluation_id>", delete_evaluation, ["DELETE"])
add_route(bp, "/featureImportances", list_feature_importances, ["GET"])
add_route(bp, "/featureImportances/<feature_importance_id>", create_feature_importance, ["PUT"])
add_route(bp, "/featureImportances/<feature_importance_id>", get_feature_importance, ["GET"])
add_route(bp, "/featureImportances/<feature_importance_id>", delete_feature_importance, ["DELETE"])
