"""DirectCommands against a real redis-server: replies, threads, scripts, dropped connections, timeouts, and
the start-up check of the redis-py internals it relies on."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from features import FeatureStoreError, UnsupportedRedisVersion
from features.redis_store import DirectCommands, check_direct_internals, missing_direct_internals
from tests.redis_harness import RedisServer


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, socket_timeout=2.0, socket_connect_timeout=2.0)
    yield client
    client.close()


def test_raw_replies_as_the_client_would_read_them(client: redis.Redis, unique_prefix: str) -> None:
    direct = DirectCommands(client)
    client.set(f"{unique_prefix}:a", b"1")
    assert direct.execute("MGET", f"{unique_prefix}:a", f"{unique_prefix}:missing") == [b"1", None]
    assert direct.execute("SET", f"{unique_prefix}:b", "x") == b"OK"
    with pytest.raises(redis.ResponseError):
        direct.execute("INCR", f"{unique_prefix}:b")  # not an integer: an error reply
    assert direct.execute("GET", f"{unique_prefix}:b") == b"x"  # the connection stays usable
    direct.close()


def test_concurrent_threads_each_get_their_own_replies(client: redis.Redis) -> None:
    direct = DirectCommands(client)
    wrong: list[tuple[str, bytes]] = []
    ids: set[int] = set()

    def work(name: str) -> None:
        for i in range(200):
            reply = direct.execute("ECHO", f"{name}-{i}")
            if reply != f"{name}-{i}".encode():
                wrong.append((f"{name}-{i}", reply))
        ids.add(direct.execute("CLIENT", "ID"))

    threads = [threading.Thread(target=work, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
    assert 1 <= len(ids) <= 4  # no more connections than commands ever ran at once
    direct.close()


def test_a_thread_per_request_reuses_connections(client: redis.Redis) -> None:
    # A server that starts a thread per request (werkzeug's threaded server) must not open a connection
    # per request, nor keep one per thread that ever ran.
    direct = DirectCommands(client)
    ids = set()
    for _ in range(50):
        thread = threading.Thread(target=lambda: ids.add(direct.execute("CLIENT", "ID")))
        thread.start()
        thread.join()
    assert len(ids) == 1
    direct.close()


def test_script_loaded_again_after_the_server_forgot_it(client: redis.Redis, unique_prefix: str) -> None:
    direct = DirectCommands(client)
    script = client.register_script("return redis.call('SET', KEYS[1], ARGV[1])")
    client.script_flush()
    assert direct.run_script(script, [f"{unique_prefix}:s"], ["v"]) == b"OK"
    client.script_flush()
    assert direct.run_script(script, [f"{unique_prefix}:s"], ["w"]) == b"OK"
    assert client.get(f"{unique_prefix}:s") == b"w"
    direct.close()


def test_killed_connection_raises_then_reconnects(client: redis.Redis, unique_prefix: str) -> None:
    direct = DirectCommands(client)
    mine = direct.execute("CLIENT", "ID")
    client.client_kill_filter(_id=mine)
    with pytest.raises(redis.ConnectionError):
        direct.execute("PING")
    assert direct.execute("PING") == b"PONG"
    assert direct.execute("CLIENT", "ID") != mine
    direct.close()


def test_a_timed_out_reply_is_never_read_as_the_next_one(
    redis_server: RedisServer, client: redis.Redis, unique_prefix: str
) -> None:
    slow = redis.Redis.from_url(redis_server.url, socket_timeout=0.05, socket_connect_timeout=2.0)
    direct = DirectCommands(slow)
    key = f"{unique_prefix}:list"
    with pytest.raises(redis.TimeoutError):
        direct.execute("BLPOP", key, 5)  # blocks this connection only, beyond its 50 ms budget
    deadline = time.monotonic() + 5
    while any(c.get("cmd") == "blpop" for c in client.client_list()) and time.monotonic() < deadline:
        time.sleep(0.01)  # the server sees the close a moment after the client made it
    client.rpush(key, "late")  # a connection still waiting in BLPOP would now get ["list", "late"]
    assert direct.execute("ECHO", "now") == b"now"
    assert client.lrange(key, 0, -1) == [b"late"]  # nobody popped it: the timed-out connection was closed
    direct.close()
    slow.close()


def test_close_disconnects_idle_connections_and_those_in_use_when_they_return(client: redis.Redis) -> None:
    direct = DirectCommands(client)
    in_use = direct.execute("CLIENT", "ID")
    connection, generation = direct._take()  # what execute does: this connection is now in use
    idle = direct.execute("CLIENT", "ID")  # so this command needs a second one, left idle
    assert idle != in_use
    direct.close()
    live = _live_once_closed(client, idle)
    assert idle not in live and in_use in live
    direct._give_back(connection, generation)  # the command in flight during close() ends
    live = _live_once_closed(client, in_use)
    assert in_use not in live


def _live_once_closed(client: redis.Redis, closed: int, wait: float = 5.0) -> set[int]:
    """The server's client ids, once ``closed`` has left them (or ``wait`` seconds have passed): the server
    sees a close a moment after the client made it."""
    deadline = time.monotonic() + wait
    while True:
        live = {int(c["id"]) for c in client.client_list()}
        if closed not in live or time.monotonic() > deadline:
            return live
        time.sleep(0.01)


def test_the_installed_redis_py_has_every_internal_direct_commands_relies_on(client: redis.Redis) -> None:
    assert missing_direct_internals(client) == []
    check_direct_internals(client)
    DirectCommands(client).close()


# Stand-ins for the connection class a pool builds connections from (``ConnectionPool.connection_class``):
# each lacks one thing DirectCommands uses.
class _NoReadResponse:
    def send_command(self, *args: object, **kwargs: object) -> None: ...

    def send_packed_command(self, command: bytes, check_health: bool = True) -> None: ...

    def disconnect(self) -> None: ...


class _ReadResponseKeepsTheConnection(_NoReadResponse):
    def read_response(self, disable_decoding: bool = False) -> None: ...


class _NoHealthCheckSwitch(_NoReadResponse):
    def send_packed_command(self, command: bytes) -> None: ...  # type: ignore[override]

    def read_response(self, disable_decoding: bool = False, *, disconnect_on_error: bool = True) -> None: ...


@pytest.mark.parametrize(
    ("connection_class", "missing"),
    [
        (_NoReadResponse, "_NoReadResponse.read_response()"),
        (_ReadResponseKeepsTheConnection, "_ReadResponseKeepsTheConnection.read_response(disconnect_on_error=True)"),
        (_NoHealthCheckSwitch, "_NoHealthCheckSwitch.send_packed_command(check_health=True)"),
    ],
)
def test_a_missing_internal_is_refused_at_start_naming_the_redis_version(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch, connection_class: type, missing: str
) -> None:
    monkeypatch.setattr(client.connection_pool, "connection_class", connection_class)
    assert missing_direct_internals(client) == [missing]
    message = rf"^redis-py {re.escape(redis.__version__)} lacks {re.escape(missing)}, which .*DirectCommands relies on"
    with pytest.raises(UnsupportedRedisVersion, match=message) as raised:
        DirectCommands(client)
    assert isinstance(raised.value, FeatureStoreError)
