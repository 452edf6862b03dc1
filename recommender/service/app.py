"""The Flask app factory of the scoring service.

``create_app(config)`` builds one worker's app: feature store, event bus, policy, joiner, config watcher,
blueprints, error handlers. Under gunicorn it is called in each worker after fork (one VW workspace per
process). Everything it builds can be passed in instead (tests, benchmarks).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, request

from features import FeatureStore, open_store
from recommender.events.bus import EventBus, open_bus
from recommender.service import ops, rewards, scoring
from recommender.service.errors import register_error_handlers
from recommender.service.gunicorn.worker import ARRIVED_AT
from recommender.service.metrics import ServiceMetrics
from recommender.service.openapi import build_openapi
from recommender.service.reload import ConfigWatcher
from recommender.service.runtime import PolicyLoader, Runtime
from recommender.settings.loading import AppConfig

log = logging.getLogger(__name__)

_LOAD = object()  # sentinel: build the policy with the loader


def load_serving_policy(config: AppConfig) -> Any:
    """The policy to serve: the model store's current version (under the configured exploration), else a
    fresh model of ``config.policy``. A stored model that cannot be loaded is logged and replaced by a
    fresh one: serving must start."""
    from recommender.errors import ExplorationChangeError, ModelStoreError, PolicyError
    from recommender.policy.model_store import ModelStore
    from recommender.policy.policy import Policy

    features = config.features
    user_group = features.groups[features.user_group]
    item_group = features.groups[features.item_group]
    store = ModelStore(config.policy.model_dir, user_group=user_group, item_group=item_group)
    try:
        if store.current_version() is not None:
            try:
                return store.load(None, exploration=config.policy.exploration)
            except ExplorationChangeError as exc:
                log.error("the configured exploration cannot apply to the current model, serving it with its "
                          "own: %s", exc)  # fmt: skip
                return store.load(None)
    except (ModelStoreError, PolicyError) as exc:
        log.error("cannot load the current model from %s, serving a fresh one: %s", store.root, exc)
    return Policy.create(config.policy, user_group, item_group)


def create_app(
    config: AppConfig,
    *,
    config_path: str | Path | None = None,
    store: FeatureStore | None = None,
    bus: EventBus | None = None,
    policy: Any = _LOAD,
    policy_loader: PolicyLoader | None = None,
    start_background: bool = True,
    run_joiner: bool = True,
) -> Flask:
    """One worker's app.

    ``config_path``: the file to watch for hot reloads (None: no reloading). ``policy``: the policy to
    serve (None: uniform decisions); by default ``policy_loader(config)`` (default ``load_serving_policy``)
    builds it. ``start_background``: start the publisher, joiner and watcher threads now; the runtime is
    ``app.extensions["recommender"]`` (call its ``stop()`` on shutdown). ``run_joiner=False``: joining is
    done elsewhere (a separate ``recommender join`` process), so this worker's GIL serves requests only.
    """
    loader = policy_loader or load_serving_policy
    if policy is _LOAD:
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
    if config_path is not None:
        runtime.watcher = ConfigWatcher(config_path, runtime, config.service.config_reload_seconds)
    if not config.service.api_keys:
        log.warning("no API keys configured: /v1/reward, activation and admin endpoints are open")

    app = Flask("recommender.service")
    app.config["MAX_CONTENT_LENGTH"] = config.service.max_body_bytes
    app.config["OPENAPI"] = build_openapi(config)
    app.extensions["recommender"] = runtime
    for blueprint in (scoring.bp, rewards.bp, ops.bp):
        app.register_blueprint(blueprint)
    register_error_handlers(app)
    _measure_requests(app, runtime)
    if start_background:
        runtime.start()
    return app


def _measure_requests(app: Flask, runtime: Runtime) -> None:
    metrics = runtime.metrics

    @app.before_request
    def _start_clock() -> None:
        g.started = time.perf_counter()
        arrived = request.environ.get(ARRIVED_AT)  # from InlineWorker, when the kernel stamped the request
        if arrived is not None:
            g.queued = queued = max(0.0, time.time() - arrived)
            metrics.queue_wait.observe(queued)

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.get("started")
        if started is not None:
            endpoint = request.endpoint or "unmatched"
            metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
            metrics.responses.labels(endpoint, str(response.status_code)).inc()
        return response
