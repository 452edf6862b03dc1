"""The state one worker process serves with: feature store, policy, event bus, joiner, settings.

What a request reads is one immutable ``Snapshot`` (configuration in force, policy, API keys), replaced
as a whole by the config watcher (new settings) and the model follower (new model versions); a request
takes ``runtime.snapshot`` once and uses only that, so it never sees half of a change. A blueprint reaches
the app's Runtime with ``runtime()``.

Redis faults: feature reads and bus writes each go through a circuit breaker. A read that fails (Redis
down, or slower than ``features.redis.timeout_ms``) gives the decision default features, flagged
degraded; for ``service.redis_retry_seconds`` after that, requests skip Redis altogether, then one probes.

Learning modes (``trainer.mode``, docs/learning.md): ``online`` and ``logging_only`` decide with the policy
(``logging_only`` keeps it frozen: nothing learns); ``apprentice`` serves the baseline and measures the
model's agreement with it. On the embedded default (in-process bus, ``join.learn_in_process``) the app runs
the trainer too (a thread following the event log and publishing model versions, which the model follower
then swaps in), unless it is told that a process beside it does (``recommender serve`` starts ``recommender
train``: ``runs_trainer``); with Redis the trainer is its own process (``recommender train``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import current_app

from features import FeatureStore, FeatureStoreError, FeatureStoreUnavailable, UserItemFeatures
from features.encoding import default_row
from recommender.errors import RecommenderError
from recommender.events.bus import EventBus
from recommender.events.joiner import Joiner
from recommender.experiments.arm_policies import ArmModels, ExperimentArms, build_arms
from recommender.experiments.assignment import assignment_unit
from recommender.learning.trainer import Trainer
from recommender.policy.model_store import open_model_store
from recommender.policy.policy import Policy
from recommender.records import Decision
from recommender.service.apprentice import AgreementTracker, agrees, baseline_decision
from recommender.service.breaker import CircuitBreaker
from recommender.service.fallback import (
    UNIFORM_EXPLORATION,
    UNIFORM_VERSION,
    DegradedLog,
    DegradedReason,
    uniform_decision,
)
from recommender.service.inputs import DecisionInput
from recommender.service.metrics import ServiceMetrics
from recommender.service.periodic import PeriodicCheck
from recommender.service.publisher import DecisionPublisher
from recommender.settings.app import AppConfig

log = logging.getLogger(__name__)

# How an experiment's baseline arm is logged: the storefront's first candidate, with probability 1.
EXPERIMENT_BASELINE = {"algorithm": "baseline", "baseline": "first"}

# Builds the policy a worker serves (after fork), or None to serve uniformly at random.
PolicyLoader = Callable[[AppConfig], Policy | None]

# Where the app factory keeps the worker's Runtime: ``app.extensions[EXTENSION]``.
EXTENSION = "recommender"


def runtime() -> Runtime:
    """The Runtime of the app handling the current request (the one place blueprints get it from)."""
    return current_app.extensions[EXTENSION]


@dataclass(frozen=True)
class Snapshot:
    """Everything a request depends on that may change while the service runs."""

    config: AppConfig
    policy: Policy | None  # None: uniform decisions
    api_keys: tuple[bytes, ...]
    # The running experiment's arms (``experiments.current``), set by ``Runtime.update``; None: no experiment.
    arms: ExperimentArms | None = None

    @classmethod
    def of(cls, config: AppConfig, policy: Policy | None) -> Snapshot:
        keys = tuple(key.get_secret_value().encode() for key in config.service.api_keys)
        return cls(config=config, policy=policy, api_keys=keys)

    @property
    def model_version(self) -> str:
        return UNIFORM_VERSION if self.policy is None else str(self.policy.model_version)

    def exploration(self) -> dict[str, Any]:
        return dict(UNIFORM_EXPLORATION) if self.policy is None else dict(self.policy.exploration_settings())


class Runtime:
    """Owns the worker's long-lived objects and background threads (publisher flusher, joiner, trainer, config
    watcher, model follower)."""

    def __init__(
        self,
        config: AppConfig,
        *,
        store: FeatureStore,
        bus: EventBus,
        policy: Policy | None,
        metrics: ServiceMetrics,
        config_path: str | Path | None = None,
        policy_loader: PolicyLoader | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.metrics = metrics
        self.config_path = Path(config_path) if config_path is not None else None
        self.policy_loader = policy_loader
        # Pinned and separately learned experiment arms' models (the model follower refreshes the latter).
        self.arm_models = ArmModels(open_model_store(config))
        self._snapshot = Snapshot.of(config, policy)
        try:
            self._snapshot = self._with_arms(self._snapshot, None)
        except (RecommenderError, ValueError) as exc:  # serving must start: without the experiment, said why
            log.error("the configured experiment cannot run, serving without it: %s", exc)
        self._update_lock = threading.Lock()
        retry = config.service.redis_retry_seconds
        self.store_breaker = CircuitBreaker("feature store", retry)
        self.bus_breaker = CircuitBreaker("event bus", retry)
        self.publisher = DecisionPublisher(
            bus, self.bus_breaker, config.service.decision_buffer_size, on_dropped=metrics.dropped_buffered.inc,
            on_buffered=metrics.buffered.set,
        )
        features = config.features
        self._default_user = default_row(features.groups[features.user_group])
        self._default_item = default_row(features.groups[features.item_group])
        self.joiner = Joiner(
            bus, config.join.event_log_dir, lambda: self.snapshot.config.join, observer=metrics.observe_join,
        )  # fmt: skip
        self.agreement = AgreementTracker(config.trainer.agreement_window)
        self.degraded_log = DegradedLog()  # the decision log line of degraded decisions
        self.trainer: Trainer | None = None  # when this process learns (the embedded default)
        self.trainer_error: str | None = None
        # False when a separate joiner process does the joining (``recommender serve`` on Redis).
        self.runs_joiner = True
        # False when a separate trainer process learns what this one's joiner writes (``recommender serve`` on
        # the embedded default).
        self.runs_trainer = True
        # Set by the app factory when there is a config file to follow (and, for the follower, a model).
        # Started and stopped here, built by the app factory (they import this module).
        self.watcher: PeriodicCheck | None = None
        self.model_follower: PeriodicCheck | None = None
        self.last_reload: dict[str, Any] = {"outcome": "none"}
        metrics.set_policy(self._snapshot.model_version, self._snapshot.exploration())
        metrics.set_mode(config.trainer.mode)

    # ----- settings ---------------------------------------------------------------------------------
    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def update(self, change: Callable[[Snapshot], Snapshot]) -> Snapshot:
        """Install ``change(current snapshot)`` and return it.

        The config watcher and the model follower each change one part (settings, model) from their own
        thread; ``change`` runs under a lock, so neither installs a snapshot built from one the other has
        replaced meanwhile. Requests never take the lock: those in flight finish on the snapshot they took.
        When ``change`` raises, nothing changes and the exception propagates.
        """
        with self._update_lock:
            snapshot = self._with_arms(change(self._snapshot), self._snapshot.arms)
            self._snapshot = snapshot
            # What follows the snapshot, under the same lock: two updates never leave it half each.
            self.publisher.breaker.retry_seconds = snapshot.config.service.redis_retry_seconds
            self.store_breaker.retry_seconds = snapshot.config.service.redis_retry_seconds
            self.metrics.set_policy(snapshot.model_version, snapshot.exploration())
            self.metrics.set_mode(snapshot.config.trainer.mode)
            self.agreement.resize(snapshot.config.trainer.agreement_window)
        return snapshot

    def _with_arms(self, snapshot: Snapshot, previous: ExperimentArms | None) -> Snapshot:
        """``snapshot`` with the arms of its configured experiment (reusing ``previous`` when nothing changed).
        Raises ExplorationChangeError, ModelStoreError or ValueError when an arm cannot be built."""
        arms = build_arms(snapshot.config, snapshot.policy, self.arm_models, previous)
        return snapshot if arms is snapshot.arms else dataclasses.replace(snapshot, arms=arms)

    @property
    def learns_in_process(self) -> bool:
        """True when this process runs the trainer: in-process bus, ``join.learn_in_process`` and no trainer
        process beside it (``runs_trainer``)."""
        return self.runs_trainer and self.bus.in_process and self._snapshot.config.join.learn_in_process

    def _start_trainer(self) -> None:
        # The trainer has its own VW workspace and follows the event log this process's joiner writes; every
        # event it learns is valid bandit data (uniform, degraded and baseline ones included: exact pmfs).
        config = self.snapshot.config
        try:
            self.trainer = Trainer(open_model_store(config), config.join.event_log_dir, lambda: self.snapshot.config)
        except Exception as exc:  # serving must start; readiness reports why nothing learns
            self.trainer_error = str(exc)
            log.error("the in-process trainer cannot start, this service will not learn: %s", exc)
            return
        self.trainer.start()

    # ----- the request path -------------------------------------------------------------------------
    def read_features(
        self, user_id: str | None, item_ids: Sequence[str]
    ) -> tuple[UserItemFeatures, DegradedReason | None]:
        """The user's and candidates' features in one round trip, or defaults and the reason why not (the
        store logs the details: once per outage or per group found unloaded)."""
        if self.store_breaker.allow():
            try:
                features = self.store.read_user_items(user_id, item_ids)
                self.store_breaker.success()
                if features.unloaded:  # nothing loaded (e.g. Redis restarted empty): every row is a default
                    self.metrics.observe_unloaded(features.unloaded)
                    return features, DegradedReason.FEATURES_NOT_LOADED
                return features, None
            except FeatureStoreUnavailable as exc:
                self.store_breaker.failure(str(exc))
                reason = DegradedReason.FEATURE_STORE_UNAVAILABLE
            except FeatureStoreError as exc:  # e.g. pointers moving during a reload: serve, do not fail
                log.warning("feature read failed, serving defaults: %s", exc)
                reason = DegradedReason.FEATURE_READ_FAILED
        else:  # skipped after a recent failure (self.store_breaker.reason says which)
            reason = DegradedReason.FEATURE_STORE_UNAVAILABLE
        defaults = UserItemFeatures(
            user=self._default_user,
            user_missing=True,
            items=(self._default_item,) * len(item_ids),
            missing_items=tuple(item_ids),
        )
        return defaults, reason

    def decide(
        self,
        snapshot: Snapshot,
        request: DecisionInput,
        *,
        problem: DegradedReason | None = None,
        shed: bool = False,
    ) -> tuple[Decision, DegradedReason | None]:
        """The policy's decision, and why it is degraded (None when it is not); uniform (and degraded) when
        there is no policy or it fails. ``problem``: why the features are defaults (``read_features``).

        ``request`` was validated at the HTTP edge (ids unique, slots within the candidates and allowed by
        the snapshot's policy), so the policy does not check it again (``Policy.decide(inputs_checked=True)``).
        ``shed`` (the request waited too long for this worker): the model is not asked, the decision is
        uniform (the baseline in apprentice mode) and degraded."""
        trainer = snapshot.config.trainer
        arms = snapshot.arms
        if arms is not None and trainer.mode != "apprentice":  # apprentice mode serves the baseline to everyone
            arm = arms.assign(assignment_unit(request.user_id, request.event_id))
            request = dataclasses.replace(request, experiment=arms.name, arm=arm)  # the decision is built with them
            return self._decide_with(arms.policies[arm], arm in arms.baselines, snapshot, request, problem, shed)
        return self._decide_with(snapshot.policy, False, snapshot, request, problem, shed)

    def _decide_with(
        self,
        served: Policy | None,
        baseline: bool,
        snapshot: Snapshot,
        request: DecisionInput,
        problem: DegradedReason | None,
        shed: bool,
    ) -> tuple[Decision, DegradedReason | None]:
        """``decide`` with ``served`` as the policy; ``baseline``: an experiment's baseline arm (the first
        candidate, probability 1, whatever the load: it costs nothing)."""
        policy = None if shed else served
        trainer = snapshot.config.trainer
        first = problem or (DegradedReason.SHED if shed else None)  # the reason, whoever decides
        if baseline:
            return baseline_decision(request, degraded=first is not None, exploration=EXPERIMENT_BASELINE), first
        if trainer.mode == "apprentice":
            decision = baseline_decision(request, degraded=first is not None, baseline=trainer.apprentice_baseline)
            if policy is not None:
                self._observe_agreement(policy, decision)
            return decision, first
        if policy is not None:
            try:
                started = time.thread_time()  # CPU, not wall: what the decision itself costs this worker
                decision = policy.decide(
                    event_id=request.event_id,
                    timestamp=request.timestamp,
                    user_id=request.user_id,
                    user_features=request.user_features,
                    context=request.context,
                    candidate_ids=request.candidate_ids,
                    candidate_features=request.candidate_features,
                    slots=request.slots or 1,
                    degraded=problem is not None,
                    deferred=request.deferred,
                    inputs_checked=True,
                    experiment=request.experiment,
                    arm=request.arm,
                    slot_names=request.slot_names,
                )
                self.metrics.policy_cpu.observe(time.thread_time() - started)
                return decision, problem
            except Exception:  # a lost request is lost data: decide uniformly, log truthfully, say degraded
                log.exception("the policy failed to decide event %s; deciding uniformly", request.event_id)
                first = first or DegradedReason.POLICY_ERROR
        return uniform_decision(request, degraded=True), first or DegradedReason.NO_MODEL

    def _observe_agreement(self, policy: Policy, decision: Decision) -> None:
        try:
            pmf = policy.predict_pmf(decision.user_features, decision.context, decision.candidate_features,
                                     candidate_ids=decision.candidate_ids)  # fmt: skip
        except Exception:  # the baseline is served whatever the model does; agreement is only a report
            log.exception("the policy failed to score event %s for the agreement rate", decision.event_id)
            return
        agreed = agrees(pmf, decision.chosen[0])
        self.metrics.observe_agreement(agreed, self.agreement.record(agreed))

    # ----- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        self.publisher.start()
        if self.runs_joiner:
            self.joiner.start()
        if self.learns_in_process and self.snapshot.policy is not None:
            self._start_trainer()
        if self.watcher is not None:
            self.watcher.start()
        if self.model_follower is not None:
            self.model_follower.start()

    def stop(self) -> None:
        """Stop the background threads; buffered decisions get one last chance to reach the bus."""
        if self.watcher is not None:
            self.watcher.stop()
        if self.model_follower is not None:
            self.model_follower.stop()
        self.publisher.stop()
        # An in-process bus ends with this process: its open windows are closed now rather than lost.
        self.joiner.stop(close_early=self.bus.in_process)
        if self.trainer is not None:
            # Learn what the joiner wrote last and publish it, so a restart has nothing to learn again.
            self.trainer.stop(publish=True)
            self.trainer.close()
            self.trainer = None
