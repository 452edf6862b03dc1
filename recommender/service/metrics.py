"""Prometheus metrics of the scoring service, on a registry of its own (several apps may share a process
in tests), exported at ``/metrics``.

Under gunicorn with several workers, ``recommender serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` and
``/metrics`` aggregates every worker's values (counters and histograms summed; per-worker gauges
labelled by pid).

Shares and rates are not exported as gauges: a gauge computed in a process averages over that process's
life. The counters behind them are exported and Prometheus computes the rate over the window it is asked
for (docs/operations.md gives the queries).

Info gauges (``recommender_model_info``, ``recommender_learning_mode``) show the value in force only: the
old label set is removed on a change. A worker's value file under multiprocess mode cannot forget a label
(prometheus_client does not implement removal there), so the worker marks it (0 for an info gauge, NaN for
an exploration setting) and rendering drops marked samples.

Process metrics (``process_resident_memory_bytes``, ``process_cpu_seconds_total``, ``process_open_fds``,
...): prometheus_client's ``MultiProcessCollector`` has none, so under multiprocess mode ``/metrics`` reads
``/proc`` of every live process that writes to the metrics directory (the workers, the joiner) and of the
gunicorn master, labelled by ``pid``.
"""

from __future__ import annotations

import glob
import math
import os
import re
from collections.abc import Iterable, Mapping
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
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

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
        # Per experiment arm (recommender.experiments): decisions served here; decisions joined and the sum of
        # their slot-0 rewards, counted by the joiner at each batch it writes. render() derives
        # recommender_experiment_mean_reward (sum / joined, since the service started) from the two.
        self.arm_decisions = Counter("recommender_experiment_decisions", "Decisions per experiment arm",
                                     ["experiment", "arm"], registry=r)  # fmt: skip
        self.arm_rewards = Counter(ARM_REWARDS, "Joined decisions per experiment arm", ["experiment", "arm"],
                                   registry=r)  # fmt: skip
        self.arm_reward_sum = Counter(ARM_REWARD_SUM, "Sum of the slot-0 rewards of the joined decisions per "
                                      "experiment arm (default rewards included)", ["experiment", "arm"],
                                      registry=r)  # fmt: skip
        self.degraded = Counter("recommender_degraded_decisions", "Degraded decisions by reason (degraded_reason)",
                                ["reason"], registry=r)
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
        self.clipped_slots = Counter("recommender_clipped_reward_slots", "Slots of joined decisions whose "
                                     "aggregated reward left join.reward_range and was clipped into it", registry=r)
        self.dropped_buffered = Counter("recommender_dropped_buffered_decisions",
                                        "Decisions dropped from a full buffer while Redis was down", registry=r)
        self.buffered = Gauge("recommender_buffered_decisions", "Decisions waiting for Redis in this worker",
                              registry=r, multiprocess_mode="livesum")
        self.unloaded_reads = Counter(
            "recommender_unloaded_feature_reads", "Feature reads that found a group with no live version (nothing "
            "loaded, e.g. Redis restarted empty): every row of it was the group's default", ["group"], registry=r,
        )  # fmt: skip
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
        if multiprocess_dir() is None:
            ProcessCollector(registry=r)  # under multiprocess mode, render() reads every process's /proc
        self._mode: str | None = None
        self._model_version: str | None = None
        self._exploration_labels: list[tuple[str, str]] = []

    def observe_response(self, endpoint: str, seconds: float, status: int) -> None:
        """One answered request: its time to answer (``recommender_request_seconds``) and status, by endpoint
        (Flask's endpoint name, e.g. ``scoring.score``; ``unmatched`` for a path no route has)."""
        self.latency.labels(endpoint).observe(seconds)
        self.responses.labels(endpoint, str(status)).inc()

    def observe_join(self, stats: JoinStats) -> None:
        self.joined.inc(stats.joined)
        self.joined_rewarded.inc(stats.rewarded)
        self.joined_slots.inc(stats.slots)
        self.default_slots.inc(stats.default_slots)
        self.expired.inc(stats.expired)
        self.dropped_deferred.inc(stats.dropped_deferred)
        self.clipped_slots.inc(stats.clipped_slots)
        for arm in stats.arms:
            self.arm_rewards.labels(arm.experiment, arm.arm).inc(arm.joined)
            self.arm_reward_sum.labels(arm.experiment, arm.arm).inc(arm.reward_sum)

    def observe_unloaded(self, groups: Iterable[str]) -> None:
        """A feature read found these groups with no live version."""
        for group in groups:
            self.unloaded_reads.labels(group).inc()

    def set_policy(self, model_version: str, exploration: Mapping[str, Any]) -> None:
        """Publish the model version and exploration settings now in force."""
        if model_version != self._model_version:
            if self._model_version is not None:
                _forget(self.model, (self._model_version,), 0.0)
            self.model.labels(version=model_version).set(1)
            self._model_version = model_version
        algorithm = str(exploration.get("algorithm") or exploration.get("exploration") or "unknown")
        for labels in self._exploration_labels:
            _forget(self.exploration, labels, math.nan)
        self._exploration_labels = []
        for name, value in exploration.items():
            if isinstance(value, bool | int | float):
                self.exploration.labels(algorithm, name).set(float(value))
                self._exploration_labels.append((algorithm, name))

    def set_mode(self, mode: str) -> None:
        """Publish the learning mode in force."""
        if mode != self._mode:
            if self._mode is not None:
                _forget(self.mode, (self._mode,), 0.0)
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
        registry = CollectorRegistry()
        if directory is None:
            registry.register(_WithArmMeans(self.registry))
            return generate_latest(registry), CONTENT_TYPE_LATEST
        registry.register(_WithArmMeans(_WithoutForgotten(multiprocess.MultiProcessCollector(None, path=directory))))
        registry.register(_ProcessesCollector(directory))
        return generate_latest(registry), CONTENT_TYPE_LATEST


ARM_REWARDS = "recommender_experiment_rewards"
ARM_REWARD_SUM = "recommender_experiment_reward_sum"
ARM_MEAN_REWARD = "recommender_experiment_mean_reward"


class _WithArmMeans(Collector):
    """The metrics of ``inner`` and ``recommender_experiment_mean_reward{experiment,arm}``: the reward sum over
    the joined decisions of each arm, both counters as ``inner`` has them (every process's, summed, under
    multiprocess mode): the mean slot-0 reward of the arm's decisions joined since the service started."""

    def __init__(self, inner: Collector) -> None:
        self.inner = inner

    def collect(self) -> Iterable[Metric]:
        totals: dict[str, dict[tuple[str, str], float]] = {ARM_REWARDS: {}, ARM_REWARD_SUM: {}}
        for metric in self.inner.collect():
            if metric.name in totals:
                for sample in metric.samples:
                    if sample.name.endswith("_total"):
                        key = (sample.labels["experiment"], sample.labels["arm"])
                        totals[metric.name][key] = totals[metric.name].get(key, 0.0) + sample.value
            yield metric
        means = GaugeMetricFamily(ARM_MEAN_REWARD, "Mean slot-0 reward of the joined decisions per experiment arm, "
                                  "since the service started", labels=["experiment", "arm"])  # fmt: skip
        for key, joined in sorted(totals[ARM_REWARDS].items()):
            if joined > 0:
                means.add_metric(list(key), totals[ARM_REWARD_SUM].get(key, 0.0) / joined)
        yield means


# Label sets a process no longer uses keep this value in its multiprocess value file; render() drops them.
_FORGOTTEN = {"recommender_model_info": 0.0, "recommender_learning_mode": 0.0,
              "recommender_exploration_setting": math.nan}  # fmt: skip


def _forget(gauge: Gauge, labels: tuple[str, ...], marker: float) -> None:
    """Remove a label set of ``gauge``; under multiprocess mode (no removal there) set it to ``marker``."""
    if multiprocess_dir() is None:
        gauge.remove(*labels)
    else:
        gauge.labels(*labels).set(marker)


class _WithoutForgotten(Collector):
    """The metrics of ``inner`` without the samples marked as forgotten (``_FORGOTTEN``)."""

    def __init__(self, inner: Collector) -> None:
        self.inner = inner

    def collect(self) -> Iterable[Metric]:
        for metric in self.inner.collect():
            marker = _FORGOTTEN.get(metric.name)
            if marker is not None:
                metric.samples = [s for s in metric.samples if not _is_marker(s.value, marker)]
            yield metric


def _is_marker(value: float, marker: float) -> bool:
    return math.isnan(value) if math.isnan(marker) else value == marker


# Value files of live gauges are per process (``gauge_liveall_<pid>.db``) and removed when the process is
# marked dead: their names list the live processes that report metrics.
_LIVE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db$")


def reporting_pids(directory: str) -> list[int]:
    """Pids of the live processes writing to the multiprocess ``directory``, with this process's parent
    (the gunicorn master) and this process, ascending."""
    pids = {int(m.group(1)) for path in glob.glob(os.path.join(directory, "gauge_live*_*.db"))
            if (m := _LIVE_FILE.search(os.path.basename(path)))}  # fmt: skip
    pids.update((os.getpid(), os.getppid()))
    return sorted(pid for pid in pids if pid > 1 and os.path.isdir(f"/proc/{pid}"))


class _ProcessesCollector(Collector):
    """prometheus_client's process metrics of every process in ``reporting_pids``, labelled by ``pid``."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        for pid in reporting_pids(self.directory):
            for metric in ProcessCollector(pid=lambda pid=pid: pid, registry=None).collect():
                family = families.get(metric.name)
                if family is None:
                    family = families[metric.name] = Metric(metric.name, metric.documentation, metric.type)
                for sample in metric.samples:
                    family.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
        return list(families.values())
