"""Prometheus metrics of the scoring service, on a registry of its own (several apps may share a process
in tests), exported at ``/metrics``.

Under gunicorn with several workers, ``recommender serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` and
``/metrics`` aggregates every worker's values (counters and histograms summed; per-worker gauges
labelled by pid).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

from recommender.events.joiner import JoinStats

# The *_created series double the exposition for no use here.
disable_created_metrics()

# Milliseconds matter on /v1/score: fine buckets below 10 ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class ServiceMetrics:
    """The service's metrics. Every method is cheap and thread-safe."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.latency = Histogram(
            "recommender_request_seconds", "Time to answer a request, by endpoint", ["endpoint"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.responses = Counter("recommender_responses", "Responses by endpoint and status", ["endpoint", "status"],
                                 registry=r)
        self.decisions = Counter("recommender_decisions", "Decisions made", ["degraded"], registry=r)
        self.queue_wait = Histogram(
            "recommender_request_queue_seconds", "Time a request waited for a worker after it had arrived "
            "(requests of kept-alive connections, the storefront's steady state)", buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.shed = Counter("recommender_shed_decisions", "/v1/score requests that waited longer than "
                            "service.queue_budget_ms and were answered without the model", registry=r)  # fmt: skip
        self.candidates = Histogram(
            "recommender_decision_candidates", "Candidates per decision", buckets=(1, 5, 10, 20, 50, 100, 200, 500),
            registry=r,
        )
        self.policy_cpu = Histogram(
            "recommender_policy_cpu_seconds", "CPU time of the policy's decision (features to pmf and pick), "
            "per decision", buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.rewards = Counter("recommender_rewards", "Reward requests by outcome", ["outcome"], registry=r)
        self.activations = Counter("recommender_activations", "Activations by outcome", ["outcome"], registry=r)
        self.joined = Counter("recommender_joined_events", "Decisions joined and written to the event log",
                              registry=r)
        self.joined_rewarded = Counter("recommender_joined_rewarded_events",
                                       "Joined decisions with at least one reward", registry=r)
        self.joined_slots = Counter("recommender_joined_slots", "Slots of joined decisions", registry=r)
        self.default_slots = Counter("recommender_default_reward_slots",
                                     "Slots of joined decisions that got the default reward", registry=r)
        self.expired = Counter("recommender_expired_decisions",
                               "Decisions that expired from the bus before being joined (lost)", registry=r)
        self.dropped_deferred = Counter("recommender_dropped_deferred_decisions",
                                        "Deferred decisions never activated (not logged)", registry=r)
        self.dropped_buffered = Counter("recommender_dropped_buffered_decisions",
                                        "Decisions dropped from a full buffer while Redis was down", registry=r)
        self.buffered = Gauge("recommender_buffered_decisions", "Decisions waiting for Redis in this worker",
                              registry=r, multiprocess_mode="livesum")
        self.join_rate = Gauge("recommender_join_rate", "Share of joined decisions that received a reward",
                               registry=r, multiprocess_mode="liveall")
        self.default_rate = Gauge("recommender_default_reward_rate", "Share of joined slots given the default",
                                  registry=r, multiprocess_mode="liveall")
        self.exploration = Gauge("recommender_exploration_setting", "Exploration settings in force",
                                 ["algorithm", "name"], registry=r, multiprocess_mode="liveall")
        self.model = Gauge("recommender_model_info", "1 for the model version being served", ["version"],
                           registry=r, multiprocess_mode="liveall")
        self.reloads = Counter("recommender_config_reloads", "Config file changes by outcome", ["outcome"],
                               registry=r)
        self.mode = Gauge("recommender_learning_mode", "1 for the learning mode in force (trainer.mode)", ["mode"],
                          registry=r, multiprocess_mode="liveall")
        self.apprentice_decisions = Counter("recommender_apprentice_decisions",
                                            "Apprentice-mode decisions (the baseline served)", registry=r)
        self.apprentice_agreements = Counter("recommender_apprentice_agreements",
                                             "Apprentice decisions where the model's greedy choice was the baseline's",
                                             registry=r)
        self.agreement_rate = Gauge("recommender_apprentice_agreement_rate",
                                    "Share of recent apprentice decisions (trainer.agreement_window) the model agreed "
                                    "with", registry=r, multiprocess_mode="liveall")
        self._mode: str | None = None
        self._totals = [0, 0, 0, 0]  # joined, rewarded, slots, default slots (this process)
        self._model_version: str | None = None
        self._exploration_labels: list[tuple[str, str]] = []

    def observe_join(self, stats: JoinStats) -> None:
        self.joined.inc(stats.joined)
        self.joined_rewarded.inc(stats.rewarded)
        self.joined_slots.inc(stats.slots)
        self.default_slots.inc(stats.default_slots)
        self.expired.inc(stats.expired)
        self.dropped_deferred.inc(stats.dropped_deferred)
        totals = self._totals
        totals[0] += stats.joined
        totals[1] += stats.rewarded
        totals[2] += stats.slots
        totals[3] += stats.default_slots
        if totals[0]:
            self.join_rate.set(totals[1] / totals[0])
        if totals[2]:
            self.default_rate.set(totals[3] / totals[2])

    def set_policy(self, model_version: str, exploration: Mapping[str, Any]) -> None:
        """Publish the model version and exploration settings now in force."""
        if model_version != self._model_version:
            if self._model_version is not None:
                self.model.labels(version=self._model_version).set(0)
            self.model.labels(version=model_version).set(1)
            self._model_version = model_version
        algorithm = str(exploration.get("algorithm") or exploration.get("exploration") or "unknown")
        for labels in self._exploration_labels:
            if multiprocess_dir() is None:
                self.exploration.remove(*labels)
            else:  # a worker's value file cannot forget a label: mark it as no longer meaningful
                self.exploration.labels(*labels).set(float("nan"))
        self._exploration_labels = []
        for name, value in exploration.items():
            if isinstance(value, bool | int | float):
                self.exploration.labels(algorithm, name).set(float(value))
                self._exploration_labels.append((algorithm, name))

    def set_mode(self, mode: str) -> None:
        """Publish the learning mode in force."""
        if mode != self._mode:
            if self._mode is not None:
                self.mode.labels(self._mode).set(0)
            self.mode.labels(mode).set(1)
            self._mode = mode

    def observe_agreement(self, agreed: bool, recent_rate: float) -> None:
        self.apprentice_decisions.inc()
        if agreed:
            self.apprentice_agreements.inc()
        self.agreement_rate.set(recent_rate)

    def render(self) -> tuple[bytes, str]:
        """The exposition text: this process's, or every worker's under gunicorn multiprocess mode."""
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
        return generate_latest(registry), CONTENT_TYPE_LATEST
