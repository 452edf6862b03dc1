"""Readiness ("this worker can answer /v1/score") and full health ("everything it depends on works").

The two are apart on purpose (docs/operations.md): with Redis down or the catalog missing the service still
answers every /v1/score, degraded, so a readiness probe that failed then would pull every pod at once and
turn degraded mode into an outage. ``ready`` is therefore true whenever the worker answers at all: every
dependency's failure has a degraded answer (default features, buffered decisions, uniform decisions), and
a worker that cannot answer /v1/score (hung, overloaded past gunicorn's timeout) does not answer the probe
either. ``healthy`` says whether the answers are the full ones, and ``reasons`` says why not.

The same answer whichever worker replies: the verdict (``ready``, ``healthy``, ``reasons``) depends only on
state every worker sees, checked afresh by each check within the Redis read budget (the feature groups'
live pointers in one round trip, which is the feature-store ping too; a bus ping) and on the model store's
current version; never on a worker's own breaker state or cache. ``checks`` adds what is this worker's own
(its pid, the model version it serves, its buffer, its joiner and trainer threads), for diagnosis.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from features import FeatureStoreError
from features.store import unloaded_reason
from recommender.service.runtime import Runtime

# The reasons name what is wrong and what it means for the answers; the error itself (which may differ from
# one worker to the next: refused, reset, timed out) is in ``checks``.
STORE_UNREACHABLE = ("feature_store unreachable: the feature store does not answer within its budget; decisions "
                     "use default features")  # fmt: skip
STORE_FAILED = "feature_store check failed: decisions may use default features"
BUS_UNREACHABLE = ("event_bus unreachable: decisions wait in the workers' buffers (service.decision_buffer_size) "
                   "and rewards are refused with 503")  # fmt: skip
BUS_FAILED = "event_bus check failed: decisions may wait in the workers' buffers, rewards may be refused"


@dataclass(frozen=True)
class Health:
    """The answer of /readyz and /healthz/full."""

    ready: bool  # the worker answers /v1/score (degraded or not)
    healthy: bool  # ... and with the full answer: model loaded, features loaded and reachable, bus reachable
    reasons: list[str]  # why not healthy; the same on every worker
    checks: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"ready": self.ready, "healthy": self.healthy, "checks": self.checks, "reasons": self.reasons}


def check_health(rt: Runtime) -> Health:
    """Check the worker's dependencies now (each within its Redis budget) and say what it can serve."""
    snapshot = rt.snapshot
    reasons: list[str] = []
    checks: dict[str, Any] = {"pid": os.getpid(), "model_version": snapshot.model_version}
    if snapshot.policy is None:
        reasons.append("no model loaded: decisions are uniform at random")
    try:
        unloaded = rt.store.unloaded_groups()
        rt.store_breaker.success()  # Redis is back: stop skipping it
        checks["feature_store"] = "ok" if not unloaded else "not loaded"
        if unloaded:
            checks["unloaded_groups"] = unloaded
            reasons.append(unloaded_reason(unloaded))
    except (FeatureStoreError, ConnectionError, OSError) as exc:
        rt.store_breaker.failure(str(exc))
        checks["feature_store"] = "unavailable"
        checks["feature_store_error"] = str(exc)  # the detail differs between workers (refused, reset, ...)
        reasons.append(STORE_UNREACHABLE)
    except Exception as exc:  # health must answer, whatever the backend raised
        checks["feature_store"] = "error"
        checks["feature_store_error"] = str(exc)
        reasons.append(STORE_FAILED)
    try:
        rt.bus.ping()
        rt.bus_breaker.success()
        checks["event_bus"] = "ok"
    except (ConnectionError, OSError) as exc:
        rt.bus_breaker.failure(str(exc))
        checks["event_bus"] = "unavailable"
        checks["event_bus_error"] = str(exc)
        reasons.append(BUS_UNREACHABLE)
    except Exception as exc:
        checks["event_bus"] = "error"
        checks["event_bus_error"] = str(exc)
        reasons.append(BUS_FAILED)
    checks.update(_worker_checks(rt))
    return Health(ready=True, healthy=not reasons, reasons=reasons, checks=checks)


def _worker_checks(rt: Runtime) -> dict[str, Any]:
    """This worker's own state: informative, not part of the verdict (another worker may differ)."""
    checks: dict[str, Any] = {"buffered_decisions": rt.publisher.buffered}
    checks["joiner"] = ("running" if rt.joiner.running else "stopped") if rt.runs_joiner else "separate process"
    if rt.joiner.last_error:
        checks["joiner_error"] = rt.joiner.last_error
    if rt.trainer is not None:
        checks["trainer"] = "running" if rt.trainer.running else "stopped"
        if rt.trainer.last_error:
            checks["trainer_error"] = rt.trainer.last_error
    elif rt.trainer_error is not None:
        checks["trainer"] = "failed"
        checks["trainer_error"] = rt.trainer_error
    else:
        checks["trainer"] = "separate process"
    return checks
