"""``recommender join``: a joiner process of its own, beside the serving workers (the bus on Redis).

``recommender serve`` starts and supervises one (``recommender.service.gunicorn.server``); more may run on
other hosts, sharing the work through the bus. It reports through the service's metrics
(``PROMETHEUS_MULTIPROC_DIR``, set by ``recommender serve``), so the workers' ``/metrics`` include its
join counts. The joiner itself is ``recommender.events.joiner.Joiner``; this module only runs it as a
process: logging, priority, settings that follow the config file, signals.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

from recommender.events.factory import bus_backend, open_bus
from recommender.events.joiner import Joiner
from recommender.logs import configure_logging
from recommender.service.gunicorn.supervisor import exit_with_supervisor
from recommender.service.metrics import ServiceMetrics
from recommender.settings.app import AppConfig
from recommender.settings.events import JoinConfig
from recommender.settings.follow import ConfigFollower

log = logging.getLogger(__name__)

# Scheduling niceness of `recommender join` (0 = normal, 19 = lowest): below the serving workers.
JOINER_NICENESS = 10


def run_joiner(config: AppConfig, config_path: str | Path) -> int:
    """``recommender join``: join decisions and rewards from the Redis bus into the event log until
    SIGTERM/SIGINT. Any number may run (one per host, say); they share the work through the bus.
    Returns the exit status (2: the bus is in-process, there is nothing to join here)."""
    configure_logging()
    if bus_backend(config) != "redis":
        log.error("the event bus is in-process: the serving worker joins; a separate joiner has nothing to read")
        return 2
    # Joining is background work that comes in bursts (a batch per flush); on the serving hosts the
    # /v1/score workers must win the CPU, or the bursts show up in their p99. Set before any thread starts,
    # so every joiner thread inherits it.
    os.nice(JOINER_NICENESS)
    metrics = ServiceMetrics()
    follower = ConfigFollower(config_path, config)  # join settings follow edits of the file

    def join_settings() -> JoinConfig:
        return follower().join

    joiner = Joiner(open_bus(config), config.join.event_log_dir, join_settings,
                    observer=metrics.observe_join)  # fmt: skip
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    joiner.start()
    log.info("joiner %s writing to %s", joiner.consumer, config.join.event_log_dir)
    exit_with_supervisor(stop)  # stop.wait(), or until the `recommender serve` that started this one is gone
    joiner.stop()
    return 0
