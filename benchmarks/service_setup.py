"""The service on Redis with the sample catalog, as the service benchmark, the soak and the fault suite run it.

``ServiceOnRedis`` starts a redis-server of its own (``tests.redis_harness``; extra options such as AOF
through ``redis_args``), writes a config file from ``configs/default.yaml`` with the feature store and the
bus on that Redis, the model store and the event log in a work directory, ``service.port`` free, 2 workers
x 2 threads (and whatever ``changes`` say), loads the sample catalog, and starts ``recommender serve``
(gunicorn, its workers and the joiner process), optionally a ``recommender train`` beside it. Each
process's output goes to ``<workdir>/<name>.log`` (or nowhere with ``keep_logs=False``).
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from features import open_store
from features.sample_catalog import load_sample_catalog
from recommender.settings.app import AppConfig
from recommender.settings.loading import DEFAULT_CONFIG_PATH, load_config
from tests.recommender.served_app import deep_update
from tests.redis_harness import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent


def process_roles(master: int) -> dict[str, list[int]]:
    """The gunicorn master, its workers and the joiner process (``recommender join``), by pid."""
    roles: dict[str, list[int]] = {"master": [master], "workers": [], "joiner": []}
    # Every thread's children: the joiner supervisor's thread starts a replacement joiner.
    children: list[int] = []
    for task in Path(f"/proc/{master}/task").iterdir():
        try:
            children += map(int, (task / "children").read_text().split())
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    for pid in children:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:  # ended meanwhile
            continue
        roles["joiner" if b"join" in command else "workers"].append(pid)
    return roles


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """``GET path`` on the service at ``port`` (a connection of its own): (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_ready(port: int, timeout: float = 60.0, process: subprocess.Popen | None = None) -> None:
    """Until ``GET /readyz`` answers 200; RuntimeError after ``timeout`` seconds, or as soon as ``process``
    (the server, when given) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the service exited with status {process.returncode}")
        try:
            if get(port, "/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the service did not become ready")


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (children of all its threads, recursively), by pid."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except FileNotFoundError:  # ended meanwhile
            continue
        for task in tasks:
            try:
                queue += map(int, (task / "children").read_text().split())
            except FileNotFoundError:  # the thread ended meanwhile
                continue
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the processes ``pids`` so far (from /proc; an ended one counts 0)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def wait_for_joiner(joiner: list[int], settle: float, limit: float = 60.0) -> float:
    """Seconds until the joiner process had used under 20 ms of CPU in ``settle`` seconds (at most
    ``limit``): its backlog is joined."""
    started = time.perf_counter()
    last, idle_since = cpu_seconds(joiner), time.perf_counter()
    while time.perf_counter() - idle_since < settle and time.perf_counter() - started < limit:
        time.sleep(0.1)
        now = cpu_seconds(joiner)
        if now - last >= 0.02:
            last, idle_since = now, time.perf_counter()
    return idle_since - started


def load_catalog(config: AppConfig) -> None:
    """The sample catalog into ``config``'s feature store (a generous timeout: a bulk load, not a request)."""
    redis_config = config.features.redis.model_copy(update={"timeout_ms": 5000})
    store = open_store(config.features.model_copy(update={"redis": redis_config}))
    load_sample_catalog(store)
    store.close()


class ServiceOnRedis:
    """``recommender serve`` (and optionally ``recommender train``) on a redis-server of its own.

    ``changes``: sections of the config document, deep-merged over the defaults described in the module
    docstring. ``start()`` returns once ``/readyz`` answers and the joiner process is up; ``stop()``
    terminates everything (SIGTERM, then the redis-server) and is safe to call twice.
    """

    def __init__(self, changes: dict[str, Any] | None = None, *, trainer: bool = False,
                 redis_args: tuple[str, ...] = (), workdir: Path | None = None, keep_logs: bool = True,
                 log_level: str = "warning") -> None:  # fmt: skip
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="service-on-redis-"))
        self.redis = RedisServer(args=redis_args)
        self.port = free_port()
        self.with_trainer = trainer
        self.keep_logs = keep_logs
        self.log_level = log_level
        self.changes = changes or {}
        self.config_path = self.workdir / "config.yaml"
        self.document: dict[str, Any] = {}
        self.config: AppConfig | None = None
        self.server: subprocess.Popen | None = None
        self.trainer: subprocess.Popen | None = None

    def build_document(self) -> dict[str, Any]:
        document = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
        document["features"].update(backend="redis", redis={**document["features"]["redis"], "url": self.redis.url})
        document["policy"]["model_dir"] = str(self.workdir / "models")
        document["service"].update(port=self.port, workers=2, threads=2)
        document["join"]["event_log_dir"] = str(self.workdir / "events")
        return deep_update(document, self.changes)

    def write_config(self, document: dict[str, Any]) -> AppConfig:
        """Write ``document`` as the service's config file (the running processes follow its hot settings)."""
        self.document = document
        self.config_path.write_text(yaml.safe_dump(document, sort_keys=False))
        self.config = load_config(self.config_path)
        return self.config

    def start(self) -> ServiceOnRedis:
        self.redis.start()
        load_catalog(self.write_config(self.build_document()))
        self.server = self.launch("serve", "serve", "--log-level", self.log_level)
        if self.with_trainer:
            self.start_trainer()
        wait_ready(self.port, process=self.server)
        deadline = time.monotonic() + 30.0
        while not self.roles()["joiner"]:  # the joiner process starts after the workers
            if time.monotonic() > deadline:
                raise RuntimeError("the joiner process did not start")
            time.sleep(0.1)
        return self

    def launch(self, name: str, *command: str) -> subprocess.Popen:
        """``recommender --config <config> <command...>`` in a process of its own, output to ``<name>.log``."""
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        argv = [sys.executable, "-m", "recommender.cli.main", "--config", str(self.config_path), *command]
        if not self.keep_logs:
            return subprocess.Popen(argv, env=env, cwd=self.workdir, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)  # fmt: skip
        with open(self.workdir / f"{name}.log", "ab") as output:  # the child keeps its own copy
            return subprocess.Popen(argv, env=env, cwd=self.workdir, stdout=output, stderr=subprocess.STDOUT)

    def start_trainer(self) -> subprocess.Popen:
        self.trainer = self.launch("trainer", "train")
        return self.trainer

    def roles(self) -> dict[str, list[int]]:
        assert self.server is not None
        return process_roles(self.server.pid)

    def log_text(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for process in (self.trainer, self.server):
            if process is not None and process.poll() is None:
                process.terminate()
        for process in (self.trainer, self.server):
            if process is not None:
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
        self.redis.stop()

    def __enter__(self) -> ServiceOnRedis:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
