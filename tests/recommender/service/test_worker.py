"""The gunicorn worker class (recommender.service.gunicorn.worker) under real gunicorn, on raw sockets: complete
requests of kept-alive connections are served on the event loop's thread, everything else by the pool,
and every request gets its own right answer whichever path it took."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from recommender.service.arrival import ARRIVED_AT
from recommender.service.gunicorn.worker import ConnectionBoard, complete_request_arrival, stamp_arrivals
from tests.redis_harness import free_port

ROOT = Path(__file__).resolve().parents[3]


def echo_app(environ, start_response):
    """Answers ``<thread name>|<method> <path>|<body>``: which path served the request, and what it got.
    ``/arrival`` answers ``<pid>|<seconds since the request arrived, or none>``."""
    body = environ["wsgi.input"].read()
    if environ["PATH_INFO"] == "/arrival":
        arrived = environ.get(ARRIVED_AT)
        answer = f"{os.getpid()}|{'none' if arrived is None else time.time() - arrived}".encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(answer)))])
        return [answer]
    if environ["PATH_INFO"] == "/slow":
        time.sleep(0.5)
    answer = f"{threading.current_thread().name}|{environ['REQUEST_METHOD']} {environ['PATH_INFO']}|".encode() + body
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(answer)))])
    return [answer]


def start_gunicorn(
    workers: int, app: str = "tests.recommender.service.test_worker:echo_app"
) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w", str(workers), "--threads", "2",
         "-k", "recommender.service.gunicorn.worker.InlineWorker", "--keep-alive", "30", "--log-level", "warning", app],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("gunicorn did not start") from None
            time.sleep(0.1)


def stop_gunicorn(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    process, port = start_gunicorn(workers=1)
    yield port
    stop_gunicorn(process)


def request(path: str, body: bytes = b"", extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def _next_response(sock: socket.socket, data: bytes) -> tuple[int, bytes, bytes]:
    """(status, body, the bytes after it) of the next Content-Length response; ``data``: read already."""
    while True:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, "connection closed before a response"
            data += chunk
        head, data = data.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 1"):  # an interim answer (100 Continue) comes first
            break
    rest = data
    lines = head.split(b"\r\n")
    length = int(next(line.split(b":")[1] for line in lines if line.lower().startswith(b"content-length")))
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head.split(b" ")[1]), rest[:length], rest[length:]


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """(status, body) of one Content-Length response."""
    status, body, after = _next_response(sock, b"")
    assert not after, "more bytes than the response declared"
    return status, body


def read_responses(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """(status, body) of ``count`` pipelined responses (one may arrive in the same read as the one before)."""
    answers, data = [], b""
    for _ in range(count):
        status, body, data = _next_response(sock, data)
        answers.append((status, body))
    assert not data, "more bytes than the responses declared"
    return answers


def served_by(body: bytes) -> str:
    return body.split(b"|")[0].decode()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def test_complete_requests_on_a_kept_alive_connection_are_served_inline(port):
    with connect(port) as sock:
        threads = []
        for i in range(50):
            payload = f'{{"i": {i}}}'.encode() * 100
            sock.sendall(request(f"/r{i}", payload))
            status, body = read_response(sock)
            assert status == 200 and body.split(b"|", 2)[1:] == [f"POST /r{i}".encode(), payload]
            threads.append(served_by(body))
    assert threads[0] != "MainThread"  # a new connection: the pool waits for its first request
    assert set(threads[1:]) == {"MainThread"}


def test_a_request_arriving_in_parts_goes_to_the_pool_and_does_not_hold_up_other_connections(port):
    with connect(port) as slow, connect(port) as other:
        slow.sendall(request("/warm"))
        read_response(slow)
        body = b"x" * 5000
        whole = request("/parts", body)
        slow.sendall(whole[:60])  # headers unfinished: not a complete request
        time.sleep(0.2)
        started = time.monotonic()
        other.sendall(request("/other", b"o"))
        status, answer = read_response(other)
        assert status == 200 and time.monotonic() - started < 0.15  # the loop was not waiting for `slow`
        slow.sendall(whole[60:])
        status, answer = read_response(slow)
        assert status == 200 and answer.split(b"|", 2)[2] == body
        assert served_by(answer) != "MainThread"


def test_pipelined_requests_are_answered_in_order(port):
    with connect(port) as sock:
        sock.sendall(request("/warm"))
        read_response(sock)
        sock.sendall(request("/a", b"1") + request("/b", b"22") + request("/c", b"333"))
        answers = [body.split(b"|", 1)[1] for _, body in read_responses(sock, 3)]
        assert answers == [b"POST /a|1", b"POST /b|22", b"POST /c|333"]
        sock.sendall(request("/after", b"4"))  # and the connection goes on
        assert read_response(sock)[1].split(b"|", 1)[1] == b"POST /after|4"


def test_chunked_and_expect_requests_are_served_by_the_pool(port):
    with connect(port) as sock:
        sock.sendall(request("/warm"))
        read_response(sock)
        sock.sendall(b"POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        status, body = read_response(sock)
        assert status == 200 and body.split(b"|", 1)[1] == b"POST /chunked|abc" and served_by(body) != "MainThread"
        sock.sendall(request("/expect", b"", extra="Expect: 100-continue\r\n"))
        status, body = read_response(sock)
        assert status == 200 and served_by(body) != "MainThread"


def test_a_client_closing_after_its_request_costs_nothing_else(port):
    sock = connect(port)
    sock.sendall(request("/warm"))
    read_response(sock)
    sock.sendall(request("/bye", b"z"))
    sock.close()  # gone before the answer
    with connect(port) as other:
        other.sendall(request("/still-alive"))
        assert read_response(other)[0] == 200


@pytest.mark.parametrize(
    ("data", "complete"),
    [
        (b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", True),
        (b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", True),
        (b"POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\nab", False),  # body not all there
        (b"POST / HTTP/1.1\r\nContent-Length: 3\r\n", False),  # headers not finished
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na", False),  # ambiguous
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", False),
        (b"", False),  # nothing to read
    ],
)
def test_complete_request_arrival(data, complete):
    left, right = socket.socketpair()
    with left, right:
        if data:
            left.sendall(data)
        before = time.time()
        arrived = complete_request_arrival(right)
        assert (arrived is not None) is complete
        if complete:  # a Unix socket carries no stamps: "now"
            assert before <= arrived <= time.time()
        if data:
            assert right.recv(65536) == data  # peeked, not consumed


def test_the_arrival_of_a_request_is_the_kernels_stamp_of_its_last_byte():
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        with client, accepted:
            stamp_arrivals(accepted)
            client.sendall(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\na")
            time.sleep(0.2)
            assert complete_request_arrival(accepted) is None  # its body is not all there
            client.sendall(b"b")
            sent = time.time()
            time.sleep(0.3)
            arrived = complete_request_arrival(accepted)
            assert arrived is not None
            assert abs(arrived - sent) < 0.1  # when the last byte came, not the first, and not now
            assert time.time() - arrived >= 0.25


def test_the_app_learns_how_long_a_request_waited_for_the_worker(port):
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request("/arrival"))
        status, body = read_response(sock)
        assert status == 200
        pid, first = body.decode().split("|")
        assert first == "none"  # a new connection's first request is read by the pool: no stamp
        sock.sendall(request("/arrival"))
        assert float(read_response(sock)[1].decode().split("|")[1]) < 0.5  # served on arrival
        os.kill(int(pid), signal.SIGSTOP)  # the worker is busy elsewhere, as far as this request can tell
        try:
            sock.sendall(request("/arrival"))
            time.sleep(0.6)
        finally:
            os.kill(int(pid), signal.SIGCONT)
        assert float(read_response(sock)[1].decode().split("|")[1]) >= 0.55


def pid_app(environ, start_response):
    answer = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(answer)))])
    return [answer]


def serving_pid(sock: socket.socket) -> str:
    sock.sendall(request("/pid"))
    status, body = read_response(sock)
    assert status == 200
    return body.decode()


def test_a_pool_opened_at_once_is_spread_evenly_over_the_workers():
    process, port = start_gunicorn(workers=2, app="tests.recommender.service.test_worker:pid_app")
    try:
        seen: set[str] = set()
        deadline = time.monotonic() + 30
        while len(seen) < 2:  # both workers booted and on the board (a connection at a time, closed after)
            assert time.monotonic() < deadline, "the second worker never answered"
            with connect(port) as sock:
                seen.add(serving_pid(sock))
        time.sleep(0.5)  # the closed connections are counted out (a worker sees the close at once; margin for busy CI)
        for _ in range(2):  # twice: the second pool opens where the first one closed
            pool = [connect(port) for _ in range(8)]  # a client opening its keep-alive pool at once
            pids = [serving_pid(sock) for sock in pool]
            assert sorted(Counter(pids).values()) == [4, 4], Counter(pids)
            for _ in range(3):  # and each connection stays with its worker
                assert [serving_pid(sock) for sock in pool] == pids
            for sock in pool:
                sock.close()
            time.sleep(0.5)
    finally:
        stop_gunicorn(process)


def test_connection_board_counts_live_workers_other_than_the_asking_one():
    board = ConnectionBoard()
    now = time.monotonic()
    assert board.fewest_elsewhere(0, now) is None  # alone
    board.publish(0, pid=100, connections=5, now=now)
    board.publish(1, pid=101, connections=3, now=now)
    board.publish(2, pid=102, connections=1, now=now - ConnectionBoard.STALE_SECONDS - 1)  # silent too long
    assert board.fewest_elsewhere(0, now) == 3
    assert board.fewest_elsewhere(1, now) == 5
    board.forget(1, pid=999)  # the slot went to another worker since: kept
    assert board.fewest_elsewhere(0, now) == 3
    board.forget(1, pid=101)
    assert board.fewest_elsewhere(0, now) is None
