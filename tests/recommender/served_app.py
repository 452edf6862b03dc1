"""Helpers of the tests that run the real service: a config document per test, the real app served over real
HTTP (werkzeug in a thread), polling, and reading the joined events back. The fixtures built on them are in
``tests/recommender/conftest.py``."""

from __future__ import annotations

import copy
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from werkzeug.serving import make_server

from recommender.events.log import read_events
from recommender.service import create_app
from recommender.service.runtime import EXTENSION, Runtime
from recommender.settings.app import AppConfig
from recommender.settings.loading import DEFAULT_CONFIG_PATH, load_config

CATALOG_PREFIX = "svc"  # feature-store key prefix of the session's sample catalog in Redis


def deep_update(document: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(document.get(key), dict):
            deep_update(document[key], value)
        else:
            document[key] = value
    return document


def service_document(tmp_path: Path, redis_url: str | None, **changes: Any) -> dict[str, Any]:
    """configs/default.yaml adapted to a test: its own log and model dirs, short windows, fast reloads,
    Redis (feature store and bus, under fresh bus keys) when ``redis_url`` is given."""
    document = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    base: dict[str, Any] = {
        "policy": {"model_dir": str(tmp_path / "models")},
        "service": {"config_reload_seconds": 0.2, "redis_retry_seconds": 0.3},
        "join": {
            "event_log_dir": str(tmp_path / "events"),
            "reward_wait_time": 1.0,
            "flush_seconds": 0.1,
            "recovery_seconds": 6,
        },
        "bus": {"key_prefix": f"b{uuid.uuid4().hex[:10]}"},
    }
    if redis_url is not None:
        base["features"] = {"backend": "redis", "redis": {"url": redis_url, "key_prefix": CATALOG_PREFIX}}
    deep_update(document, base)
    # The service tests check exploration mechanics (shares of the pmf, epsilon reloaded live, Personalizer's
    # explorationPercentage) on epsilon-greedy, whatever configs/default.yaml ships (replaced whole: another
    # algorithm's keys would not validate).
    document["policy"]["exploration"] = {"algorithm": "epsilon_greedy", "epsilon": 0.1}
    return deep_update(document, copy.deepcopy(changes))


def write_config(path: Path, document: dict[str, Any]) -> AppConfig:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return load_config(path)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """A keep-alive HTTP/1.1 client on one connection (what a storefront would hold)."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.headers = headers or {}
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Response:
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
        all_headers = {"Content-Type": "application/json", **self.headers, **(headers or {})}
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                self._conn.request(method, path, body=body, headers=all_headers)
                raw = self._conn.getresponse()
                return Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, raw.read())
            except (OSError, http.client.HTTPException) as exc:
                self._conn.close()
                self._conn = None
                # A kept-alive connection the server closed meanwhile: retry once on a new one.
                stale = isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError)
                if attempt or not stale:
                    raise
        raise AssertionError("unreachable")

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Response:
        return self.request("POST", path, body, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.request("GET", path, **kwargs)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


class ServedApp:
    """The real app on a real socket (werkzeug's threaded server in a background thread)."""

    def __init__(self, config: AppConfig, config_path: Path | None = None, **kwargs: Any) -> None:
        self.config = config
        self.app = create_app(config, config_path=config_path, **kwargs)
        self.runtime: Runtime = self.app.extensions[EXTENSION]
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def client(self, **kwargs: Any) -> Client:
        return Client(self.url, **kwargs)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.runtime.stop()


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def events_in(log_dir: str | Path) -> dict[str, Any]:
    """Joined events in the Parquet log by event id (empty while the log does not exist yet)."""
    # read_events refuses a directory without any file yet (e.g. only the joiner's _staging directory).
    if not any(Path(log_dir).glob("date=*/hour=*/*.parquet")):
        return {}
    return {event.decision.event_id: event for event in read_events(log_dir)}


CANDIDATES_20 = [f"item-{i:04d}" for i in range(1, 21)]


def start_serve(config_path: Path, cwd: Path) -> subprocess.Popen:
    """``recommender serve`` on ``config_path`` in a process (and process group) of its own (stdout and stderr
    piped)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return subprocess.Popen(
        [sys.executable, "-m", "recommender.cli.main", "--config", str(config_path), "serve"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True,
    )  # fmt: skip


@dataclass
class ServeProcess:
    """A ``recommender serve`` process (``start_serve``) on a written config, answering ``/readyz``."""

    config: AppConfig
    config_path: Path
    process: subprocess.Popen
    client: Client


def serve_ready(tmp_path: Path, document: dict[str, Any]) -> ServeProcess:
    """``document`` written to ``tmp_path/config.yaml``, ``recommender serve`` started on it and waited for
    (``wait_until_ready``); the caller stops the process. The port is ``document["service"]["port"]``."""
    config_path = tmp_path / "config.yaml"
    config = write_config(config_path, document)
    process = start_serve(config_path, tmp_path)
    client = Client(f"http://127.0.0.1:{config.service.port}")
    try:
        wait_until_ready(client)
    except BaseException:
        process.kill()
        process.communicate(timeout=30)
        raise
    return ServeProcess(config, config_path, process, client)


def wait_until_ready(client: Client) -> None:
    """Wait (up to 30 s) until the served app answers ``/readyz`` with 200."""
    def ready() -> bool:
        try:
            return client.get("/readyz").status == 200
        except OSError:
            return False

    wait_for(ready, timeout=30, interval=0.2)
