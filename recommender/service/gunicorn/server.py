"""Running the app under gunicorn (``recommender serve``).

gunicorn's master forks the workers first and each worker then calls ``create_app`` (no preloading), so
every worker process builds its own VW workspace, Redis connections and background threads after fork.
Workers are ``recommender.service.gunicorn.worker.InlineWorker`` (gthread with a fast path for kept-alive
connections): ``service.workers`` processes x ``service.threads`` threads.

While the feature store or the event bus is in-process (the embedded default), the state cannot be
shared between processes, so one worker is started whatever ``service.workers`` says, and it also runs
the joiner (a thread); the trainer runs as one separate process (``recommender train``, started and
restarted by the master, ``recommender.service.gunicorn.supervisor``): each example it learns holds the GIL,
and in the worker learning took a fifth of the core the requests have (docs/learning.md). With the bus on
Redis the joiner runs as one separate process (``recommender join``, ``recommender.service.join_process``),
for the same reason: joining a batch holds the GIL for a while, which must not land on the serving
threads' tail latency. More joiners (other hosts) may run ``recommender join`` too, and the trainer is
``recommender train`` wherever it is run.

With several workers, Prometheus metrics go through ``PROMETHEUS_MULTIPROC_DIR`` (a temporary directory
unless set), which must be in the environment before ``prometheus_client`` is imported (it picks its
value store at import): this module therefore imports the service (Flask, metrics) only inside the
workers, and ``prometheus_client`` only once the variable is set.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any
from wsgiref.types import WSGIApplication

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker

from recommender.events.factory import bus_backend
from recommender.logs import configure_logging
from recommender.service.gunicorn.supervisor import ProcessSupervisor, recommender_command
from recommender.service.gunicorn.worker import InlineWorker
from recommender.settings.app import AppConfig

log = logging.getLogger(__name__)


def effective_workers(config: AppConfig) -> int:
    """``service.workers``, or 1 while any state is in-process."""
    if config.features.backend == "memory" or bus_backend(config) == "memory":
        return 1
    return config.service.workers


def separate_processes(config: AppConfig) -> tuple[bool, bool]:
    """(joiner, trainer): whether each runs as a process of its own beside the workers. The joiner does with
    the bus on Redis; the trainer does on the embedded default (in-process bus, ``join.learn_in_process``),
    where with Redis ``recommender train`` runs on its own anyway."""
    in_process_bus = bus_backend(config) == "memory"
    return not in_process_bus, in_process_bus and config.join.learn_in_process


def gunicorn_options(config: AppConfig, *, log_level: str = "info", access_log: bool = False) -> dict[str, Any]:
    service = config.service
    return {
        "bind": f"{service.host}:{service.port}",
        "workers": effective_workers(config),
        "threads": service.threads,
        "worker_class": InlineWorker,  # the class, not its dotted name: gunicorn takes either
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


def _worker_exit(server: Arbiter, worker: Worker) -> None:
    # In the worker: stop the joiner and write buffered decisions out before the process goes.
    app = getattr(worker, "served_app", None)  # set by InlineWorker.load_wsgi; absent if the app failed to load
    if app is None:
        return
    # Imported here, not at the top: the master imports this module and must not import the service (and
    # prometheus_client with it, see the module docstring); in the worker the module is loaded already.
    from recommender.service.runtime import EXTENSION

    runtime = app.extensions.get(EXTENSION)
    if runtime is not None:
        runtime.stop()


def _child_exit(server: Arbiter, worker: Worker) -> None:
    InlineWorker.forget(worker)  # its connections are gone: other workers may take new ones
    _forget_metrics_of(worker.pid)


def _forget_metrics_of(pid: int) -> None:
    """A worker, joiner or trainer process ended: its per-process gauges (and process metrics) leave /metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Imported here, in the master, only now that serve() has set PROMETHEUS_MULTIPROC_DIR: imported
        # earlier, prometheus_client would keep single-process values in every worker forked afterwards.
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


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

    def load(self) -> WSGIApplication:
        configure_logging()
        # Imported here, in the worker after fork: the master must not import the service (see the module
        # docstring), and each worker builds its own app.
        from recommender.service import create_app

        separate_joiner, separate_trainer = separate_processes(self.app_config)
        app = create_app(self.app_config, config_path=self.config_path, run_joiner=not separate_joiner,
                         run_trainer=not separate_trainer)  # fmt: skip
        # What the worker built to serve (modules, the model, schemas: ~120k objects) lives as long as the
        # worker; leaving it to the collector makes every full collection walk it, a pause of tens of ms
        # on whichever requests are in flight.
        gc.freeze()
        return app


def serve(config: AppConfig, config_path: str | Path, *, log_level: str = "info", access_log: bool = False) -> int:
    """Run gunicorn in the foreground until it is stopped (SIGTERM/SIGINT). Returns its exit status."""
    # The master logs too (the joiner supervisor's restarts): in the project's format, with time and level.
    configure_logging()
    options = gunicorn_options(config, log_level=log_level, access_log=access_log)
    if options["workers"] < config.service.workers:
        log.warning("the feature store or event bus is in-process: serving with 1 worker, not %d",
                    config.service.workers)  # fmt: skip
    separate_joiner, separate_trainer = separate_processes(config)
    owned_dir = None
    master = os.getpid()
    # Several processes (workers, the joiner) report metrics: they share a directory of value files.
    if (options["workers"] > 1 or separate_joiner) and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        owned_dir = tempfile.mkdtemp(prefix="recommender-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = owned_dir
    roles = (("join", "joiner", separate_joiner), ("train", "trainer", separate_trainer))
    children = [ProcessSupervisor(recommender_command(Path(config_path), command), role, on_exit=_forget_metrics_of)
                for command, role, separate in roles if separate]  # fmt: skip
    # Started once the workers are forked, stopped (gunicorn's on_exit) once they have stopped: the trainer then
    # learns what the worker's joiner wrote on its way out.
    options["when_ready"] = lambda server: [child.start() for child in children]
    options["on_exit"] = lambda server: [child.stop() for child in children]
    try:
        ServiceApplication(config, config_path, options).run()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        # Workers leave through this frame too (they are forked inside run()): only the master cleans up.
        if os.getpid() == master:
            for child in children:
                child.stop()
            if owned_dir is not None:
                shutil.rmtree(owned_dir, ignore_errors=True)
    return 0
