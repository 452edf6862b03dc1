"""Operational endpoints: liveness, readiness, full health, metrics, the OpenAPI document, the settings in force."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from recommender.errors import EventLogError, ModelStoreError
from recommender.experiments.log_stats import analyze_log, read_arm_log
from recommender.policy.model_store import open_model_store
from recommender.service.auth import require_key
from recommender.service.errors import json_response
from recommender.service.health import check_health
from recommender.service.runtime import Runtime, runtime

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return json_response({"status": "alive"})


@bp.get("/readyz")
def readyz() -> Response:
    """Readiness (the probe's endpoint): 200 while this worker answers /v1/score, degraded or not; the body
    says whether it is fully healthy and why not (``recommender.service.health``)."""
    health = check_health(runtime())
    return json_response(health.as_dict(), 200 if health.ready else 503)


@bp.get("/healthz/full")
def healthz_full() -> Response:
    """Full health (for monitoring, not for a readiness probe): 503 while anything degrades the answers."""
    health = check_health(runtime())
    return json_response(health.as_dict(), 200 if health.healthy else 503)


@bp.get("/metrics")
def metrics() -> Response:
    rt = runtime()
    snapshot = rt.snapshot
    # The version moves with in-process learning ("<id>+<n>"), not only on swaps: refresh it here.
    rt.metrics.set_policy(snapshot.model_version, snapshot.exploration())
    text, content_type = rt.metrics.render()
    return Response(text, content_type=content_type)


@bp.get("/openapi.json")
def openapi() -> Response:
    return json_response(current_app.config["OPENAPI"])


@bp.get("/v1/admin/settings")
def settings() -> Response:
    rt = runtime()
    snapshot = rt.snapshot
    require_key(snapshot.api_keys, request)
    config = snapshot.config
    return json_response(
        {
            "model_version": snapshot.model_version,
            "exploration": snapshot.exploration(),
            "join": config.join.model_dump(mode="json", include={"aggregation", "default_reward", "reward_range",
                                                                 "reward_wait_time"}),
            "service": {"max_candidates": config.service.max_candidates, "protect_score": config.service.protect_score,
                        "queue_budget_ms": config.service.queue_budget_ms,
                        "api_keys_configured": len(snapshot.api_keys)},
            "config_file": None if rt.config_path is None else str(rt.config_path),
            "last_reload": rt.last_reload,
            "learns_in_process": rt.learns_in_process,
            "learning": {
                "mode": config.trainer.mode,
                "apprentice_baseline": config.trainer.apprentice_baseline,
                "model_update_interval": config.trainer.model_update_interval,
                "agreement": rt.agreement.summary(),
                "trainer": _trainer_state(rt),
            },
        }
    )


@bp.get("/v1/admin/experiments")
def experiments() -> Response:
    """The running experiment (``experiments.current``) analysed from the event log: per-arm figures, each arm
    against the control, the sample-ratio check and the decision (docs/experiments.md)."""
    snapshot = runtime().snapshot
    require_key(snapshot.api_keys, request)
    config = snapshot.config
    experiment = config.experiments.current
    if experiment is None:
        return json_response({"status": "none", "experiment": None})
    try:
        log = read_arm_log(config.join.event_log_dir, experiment.name, since=experiment.started_at)
    except EventLogError as exc:  # nothing joined yet (no log directory): nothing to analyse
        return json_response({"status": "running", "experiment": experiment.name, "error": str(exc)})
    analysis = analyze_log(log, experiment, config.experiments)
    return json_response({"status": "running", **analysis.as_dict()})


def _trainer_state(rt: Runtime) -> dict[str, object]:
    """The trainer as this worker sees it: its own thread's state when it runs one, and in every case what the
    model store says was published last (a trainer process beside the worker, or ``recommender train``
    elsewhere, is seen only through what it publishes)."""
    trainer = rt.trainer
    published = _last_published(rt)
    if trainer is None:
        return {"in_process": False, "error": rt.trainer_error, "published": published}
    return {"in_process": True, "running": trainer.running, "version": trainer.version,
            "pending_events": trainer.pending_events, "error": trainer.last_error,
            "published": published}  # fmt: skip


def _last_published(rt: Runtime) -> dict[str, object] | None:
    """The model store's current version: its id, when it was published, how many events it learned and the
    decision time of the newest (UTC, ISO 8601); None before any version. A store that cannot be read says so."""
    store = open_model_store(rt.snapshot.config)
    try:
        current = store.current_version()
        if current is None:
            return None
        version = store.version(current)
    except ModelStoreError as exc:
        return {"error": str(exc)}
    learned = version.event_range
    return {
        "version": version.id,
        "published_at": version.created_at.isoformat(),
        "events_learned": learned.count if learned else 0,
        "newest_event_at": learned.last_timestamp.isoformat() if learned else None,
    }
