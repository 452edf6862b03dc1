"""Running the app under gunicorn (``recommender serve``).

gunicorn's master forks the workers first and each worker then calls ``create_app`` (no preloading), so
every worker process builds its own VW workspace, Redis connections and background threads after fork.
Workers are ``gthread`` workers: ``service.workers`` processes x ``service.threads`` threads.

While the feature store or the event bus is in-process (the embedded default), the state cannot be
shared between processes, so one worker is started whatever ``service.workers`` says.

With several workers, Prometheus metrics go through ``PROMETHEUS_MULTIPROC_DIR`` (a temporary directory
unless set), which must be in the environment before ``prometheus_client`` is imported: this module
therefore imports the service (Flask, metrics) only inside the workers.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from recommender.config import AppConfig
from recommender.event_bus import bus_backend

log = logging.getLogger(__name__)


def effective_workers(config: AppConfig) -> int:
    """``service.workers``, or 1 while any state is in-process."""
    if config.features.backend == "memory" or bus_backend(config) == "memory":
        return 1
    return config.service.workers


def gunicorn_options(config: AppConfig, *, log_level: str = "info", access_log: bool = False) -> dict[str, Any]:
    service = config.service
    return {
        "bind": f"{service.host}:{service.port}",
        "workers": effective_workers(config),
        "threads": service.threads,
        "worker_class": "gthread",
        "timeout": service.timeout_seconds,
        "graceful_timeout": service.timeout_seconds,
        # The storefront keeps connections open; gunicorn's default of 2 s would make it reconnect often.
        "keepalive": 75,
        "preload_app": False,
        "loglevel": log_level,
        "accesslog": "-" if access_log else None,
        "errorlog": "-",
        # gunicorn's admin control socket (in $HOME) is not needed: the service is driven by its config file.
        "control_socket_disable": True,
        "worker_exit": _worker_exit,
        "child_exit": _child_exit,
    }


def _worker_exit(server: Any, worker: Any) -> None:
    # Stop the joiner and write buffered decisions out before the process goes.
    app = getattr(worker, "wsgi", None)
    runtime = getattr(app, "extensions", {}).get("recommender") if app is not None else None
    if runtime is not None:
        runtime.stop()


def _child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


class ServiceApplication(BaseApplication):
    """gunicorn application building the service app in each worker."""

    def __init__(self, config: AppConfig, config_path: str | Path, options: dict[str, Any]) -> None:
        self.app_config = config
        self.config_path = Path(config_path)
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if value is not None:
                self.cfg.set(key, value)

    def load(self) -> Any:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")
        from recommender.service import create_app

        return create_app(self.app_config, config_path=self.config_path)


def serve(config: AppConfig, config_path: str | Path, *, log_level: str = "info", access_log: bool = False) -> int:
    """Run gunicorn in the foreground until it is stopped (SIGTERM/SIGINT). Returns its exit status."""
    options = gunicorn_options(config, log_level=log_level, access_log=access_log)
    if options["workers"] < config.service.workers:
        log.warning("the feature store or event bus is in-process: serving with 1 worker, not %d",
                    config.service.workers)  # fmt: skip
    owned_dir = None
    master = os.getpid()
    if options["workers"] > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        owned_dir = tempfile.mkdtemp(prefix="recommender-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = owned_dir
    try:
        ServiceApplication(config, config_path, options).run()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        # Workers leave through this frame too (they are forked inside run()): only the master cleans up.
        if owned_dir is not None and os.getpid() == master:
            shutil.rmtree(owned_dir, ignore_errors=True)
    return 0

