"""Single Redis commands on the request path, sent over a connection of the calling thread's own.

``redis.Redis.execute_command`` spends about as much CPU in its client layer (pool checkout and release,
the retry wrapper, event dispatch, observability hooks, response callbacks) as in the socket I/O of a
small command: ~90 µs against ~50 µs for a 4-key MGET, measured. The scoring path sends two small
commands per request, so it uses ``DirectCommands``: each thread keeps one connection built from the
client's pool settings (URL, timeouts, protocol) and packs, sends and reads on it directly.

Errors are redis-py's own: ``redis.ConnectionError`` / ``redis.TimeoutError`` after the connection was
dropped (the next command reconnects), ``redis.ResponseError`` for an error reply (the connection stays
usable). No retries: request-path callers have a time budget and a circuit breaker of their own.
Single-server clients only (a cluster routes commands by key slot; use its client there).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError


class DirectCommands:
    """Thread-safe: one connection per thread (and per process: a forked child never uses its parent's;
    and per ``close()``: a thread's connection made before it is replaced, so ``close()`` reaches all)."""

    def __init__(self, client: redis.Redis) -> None:
        pool = client.connection_pool
        self._connection_class = pool.connection_class
        self._connection_kwargs = dict(pool.connection_kwargs)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Any] = []  # every connection made since the last close(), for close()
        self._generation = 0  # bumped by close(): threads then make (and register) new connections

    def _connection(self) -> Any:
        owner = (os.getpid(), self._generation)
        mine = getattr(self._local, "connection", None)
        if mine is None or mine[0] != owner:
            connection = self._connection_class(**self._connection_kwargs)
            with self._lock:
                self._connections.append(connection)
            mine = self._local.connection = (owner, connection)
        return mine[1]

    def execute(self, *args: Any) -> Any:
        """One command's raw reply (bytes, not decoded; no response callbacks), e.g. ``execute("MGET", *keys)``."""
        connection = self._connection()
        # send_command and read_response drop the connection themselves on a socket error or timeout, so
        # a late reply can never be read as the answer to the next command.
        connection.send_command(*args, check_health=False)
        return connection.read_response()

    def run_script(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """``EVALSHA`` of a registered script; loads it once when the server does not know it (a restarted
        or flushed Redis), as ``Script.__call__`` does."""
        try:
            return self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.execute("SCRIPT", "LOAD", script.script)
            return self.execute("EVALSHA", script.sha, len(keys), *keys, *args)

    def close(self) -> None:
        """Disconnect every connection made so far (a thread's next command makes a new one)."""
        with self._lock:
            connections, self._connections = self._connections, []
            self._generation += 1
        for connection in connections:
            connection.disconnect()
