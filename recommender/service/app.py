"""The Flask app factory of the scoring service.

``create_app(config)`` builds one worker's app: feature store, event bus, policy, joiner, config watcher,
model follower, blueprints, error handlers. Under gunicorn it is called in each worker after fork (one VW
workspace per process). Everything it builds can be passed in instead (tests, benchmarks).
"""

from __future__ import annotations

import enum
import logging
import time
from pathlib import Path
from typing import Literal

from flask import Flask, Response, g, request

from features import FeatureStore, open_store
from recommender.events.bus import EventBus
from recommender.events.factory import open_bus
from recommender.policy.model_store import load_serving_model, open_model_store
from recommender.policy.policy import Policy
from recommender.service import ops, rewards, scoring
from recommender.service.arrival import queued_seconds
from recommender.service.errors import register_error_handlers, register_media_type_check
from recommender.service.hot_path import HotScorePath
from recommender.service.metrics import ServiceMetrics
from recommender.service.model_follower import ModelFollower
from recommender.service.openapi import build_openapi
from recommender.service.personalizer import admin as personalizer_admin
from recommender.service.personalizer import evaluations as personalizer_evaluations
from recommender.service.personalizer import routes as personalizer
from recommender.service.reload import ConfigWatcher
from recommender.service.runtime import EXTENSION, PolicyLoader, Runtime
from recommender.settings.app import AppConfig

log = logging.getLogger(__name__)


class _Default(enum.Enum):
    LOAD = "load"  # create_app's ``policy`` when not given: build it with the loader


def load_serving_policy(config: AppConfig) -> Policy:
    """The policy to serve (``load_serving_model``): a stored model that cannot be loaded is logged and
    replaced by a fresh one, because serving must start."""
    return load_serving_model(open_model_store(config), config, fresh_if_unloadable=True)[0]


def create_app(
    config: AppConfig,
    *,
    config_path: str | Path | None = None,
    store: FeatureStore | None = None,
    bus: EventBus | None = None,
    policy: Policy | None | Literal[_Default.LOAD] = _Default.LOAD,
    policy_loader: PolicyLoader | None = None,
    start_background: bool = True,
    run_joiner: bool = True,
    run_trainer: bool = True,
) -> Flask:
    """One worker's app.

    ``config_path``: the file to watch for hot reloads (None: no reloading, and no following of the model
    store). ``policy``: the policy to serve (None: uniform decisions); by default ``policy_loader(config)``
    (default ``load_serving_policy``) builds it. ``start_background``: start the publisher, joiner, config
    watcher and model follower threads now; the runtime is ``app.extensions["recommender"]`` (call its
    ``stop()`` on shutdown). ``run_joiner=False``: joining is done elsewhere (a separate ``recommender join``
    process), so this worker's GIL serves requests only. ``run_trainer=False``: on the embedded default (where
    this process would learn, ``join.learn_in_process``) the trainer runs elsewhere (``recommender serve``
    starts ``recommender train`` beside the worker); elsewhere there is no in-process trainer anyway.
    """
    loader = policy_loader or load_serving_policy
    if policy is _Default.LOAD:
        policy = loader(config)
    runtime = Runtime(
        config,
        store=store if store is not None else open_store(config.features),
        bus=bus if bus is not None else open_bus(config),
        policy=policy,
        metrics=ServiceMetrics(),
        config_path=config_path,
        policy_loader=loader,
    )
    runtime.runs_joiner = run_joiner
    runtime.runs_trainer = run_trainer
    if config_path is not None:
        interval = config.service.config_reload_seconds
        runtime.watcher = ConfigWatcher(config_path, runtime, interval)
        if policy is not None:  # a uniform service has no model to follow
            runtime.model_follower = ModelFollower(runtime, interval)
    if not config.service.api_keys:
        log.warning("no API keys configured: /v1/reward, activation and admin endpoints are open")

    app = Flask("recommender.service")
    app.config["MAX_CONTENT_LENGTH"] = config.service.max_body_bytes
    app.config["OPENAPI"] = build_openapi(config)
    app.extensions[EXTENSION] = runtime
    for blueprint in (scoring.bp, rewards.bp, ops.bp, personalizer.bp, personalizer_admin.bp,
                      personalizer_evaluations.bp):
        app.register_blueprint(blueprint)
    register_error_handlers(app)
    _measure_requests(app, runtime)
    register_media_type_check(app)  # after the clock starts: a 415 is measured and counted like any answer
    app.wsgi_app = HotScorePath(app.wsgi_app, runtime)  # type: ignore[method-assign]  # the usual score request
    if start_background:
        runtime.start()
    return app


def _measure_requests(app: Flask, runtime: Runtime) -> None:
    metrics = runtime.metrics

    @app.before_request
    def _start_clock() -> None:
        g.started = time.perf_counter()
        queued = queued_seconds(request.environ)  # known under InlineWorker, when the kernel stamped the request
        if queued is not None:
            g.queued = queued
            metrics.queue_wait.observe(queued)

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.get("started")
        if started is not None:
            metrics.observe_response(request.endpoint or "unmatched", time.perf_counter() - started,
                                     response.status_code)  # fmt: skip
        return response
