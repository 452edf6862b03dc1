"""Single Redis commands on the request path, sent over an idle connection taken from a stack of them.

``redis.Redis.execute_command`` spends about as much CPU in its client layer (pool checkout and release,
the retry wrapper, event dispatch, observability hooks, response callbacks) as in the socket I/O of a
small command: ~90 µs against ~50 µs for a 4-key MGET, measured. The scoring path sends two small
commands per request, so it uses ``DirectCommands``: it takes an idle connection (built from the client's
pool settings: URL, timeouts, protocol) off a stack, packs, sends and reads on it, and puts it back. As
many connections exist as commands ever ran at once: the serving threads of a gunicorn worker, or the
threads of a server that starts one per request, which then reuse them.

Errors are redis-py's own: ``redis.ConnectionError`` / ``redis.TimeoutError`` after the connection was
dropped (its next command reconnects), ``redis.ResponseError`` for an error reply (the connection stays
usable). No retries: request-path callers have a time budget and a circuit breaker of their own.
Single-server clients only (a cluster routes commands by key slot; use its client there).
"""

from __future__ import annotations

import collections
import os
from collections.abc import Sequence
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError


class DirectCommands:
    """Thread-safe. A forked child never uses its parent's connections; ``close()`` disconnects every
    connection, idle ones at once and ones in use when they come back."""

    def __init__(self, client: redis.Redis) -> None:
        pool = client.connection_pool
        self._connection_class = pool.connection_class
        self._connection_kwargs = dict(pool.connection_kwargs)
        self._idle: collections.deque[Any] = collections.deque()  # append/pop are atomic: no lock needed
        self._pid = os.getpid()
        self._generation = 0  # bumped by close(): connections taken before it are dropped when they return

    def _take(self) -> tuple[Any, int]:
        if os.getpid() != self._pid:  # forked: the parent's sockets are not ours to use or close
            self._idle = collections.deque()
            self._pid = os.getpid()
        generation = self._generation
        try:
            return self._idle.pop(), generation
        except IndexError:
            return self._connection_class(**self._connection_kwargs), generation

    def _give_back(self, connection: Any, generation: int) -> None:
        if generation == self._generation:
            self._idle.append(connection)
        else:
            connection.disconnect()

    def execute(self, *args: Any) -> Any:
        """One command's raw reply (bytes, not decoded; no response callbacks), e.g. ``execute("MGET", *keys)``."""
        connection, generation = self._take()
        try:
            # send_command and read_response drop the connection themselves on a socket error, a timeout or
            # an interruption, so a late reply can never be read as the answer to the next command.
            connection.send_command(*args, check_health=False)
            return connection.read_response()
        finally:
            self._give_back(connection, generation)

    def run_script(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """``EVALSHA`` of a registered script; loads it once when the server does not know it (a restarted
        or flushed Redis), as ``Script.__call__`` does."""
        try:
            return self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.execute("SCRIPT", "LOAD", script.script)
            return self.execute("EVALSHA", script.sha, len(keys), *keys, *args)

    def close(self) -> None:
        """Disconnect every connection (commands after this make new ones)."""
        self._generation += 1
        while True:
            try:
                connection = self._idle.pop()
            except IndexError:
                return
            connection.disconnect()
