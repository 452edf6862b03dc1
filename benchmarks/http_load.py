"""A light HTTP/1.1 load generator for the service benchmark: raw keep-alive sockets, pre-built requests.

``http.client`` costs the client about as much CPU per request as a small service call, and the clients
share the machine's cores with the service under test; this generator keeps its own cost to a few tens
of microseconds per request, so the service gets the cores.

Each client process drives ``connections`` keep-alive connections from one ``selectors`` loop, one
request in flight per connection (no pipelining):

- closed loop (``rate=None``): each connection sends its next request as soon as the answer is read;
- open loop (``rate`` requests/s for the process): requests are *scheduled* at evenly spaced times and
  latency is measured from the scheduled time, not the send time, so a slow answer that delays the
  next request is counted against the service (no coordinated omission, as in wrk2). A request waits
  for the first free connection.

Both modes also report the response time from each request's *send* to its answer (``p50_sent_ms``,
``p99_sent_ms``): what a paced closed-loop client (a connection sends when it is free and its request is
due) sees. In closed loop the two are the same.

Responses are read by Content-Length (the service always sends it, but on 204 and 304, which have no body);
anything else is a protocol error.
"""

from __future__ import annotations

import multiprocessing
import re
import selectors
import socket
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


def build_request(path: str, body: bytes, host: str = "127.0.0.1") -> bytes:
    """A complete keep-alive POST with a JSON body."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class _Connection:
    """One keep-alive connection: send a request, collect its response bytes."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()
        self.expected = -1  # total bytes of the response once its header is read
        self.status = 0
        self.started = 0.0  # when the request in flight was scheduled (open loop) or sent (closed loop)
        self.sent = 0.0  # when it was sent

    def send(self, request: bytes, started: float) -> None:
        self.started = started
        self.sent = time.perf_counter()
        self.buffer.clear()
        self.expected = -1
        self.sock.sendall(request)

    def receive(self) -> bool:
        """Read what is available; True when the whole response is in."""
        chunk = self.sock.recv(262_144)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk
        if self.expected < 0:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return False
            head = bytes(self.buffer[:end])
            self.status = int(head[9:12])
            length = _CONTENT_LENGTH.search(head)
            if length is None and self.status not in (204, 304):  # those two never have a body
                raise ConnectionError("a response without Content-Length")
            self.expected = end + 4 + (int(length.group(1)) if length is not None else 0)
        return len(self.buffer) >= self.expected


def _client(port: int, requests: Sequence[bytes], connections: int, rate: float | None, max_requests: int,
            seconds: float, offset: float, out: Any) -> None:  # fmt: skip
    """One client process; puts (latencies in s, response times in s, errors, elapsed s) on ``out``."""
    selector = selectors.DefaultSelector()
    idle = deque(_Connection(port) for _ in range(connections))
    latencies: list[float] = []
    response_times: list[float] = []
    errors = 0
    sent = 0
    start = time.perf_counter()
    deadline = start + seconds
    interval = 1.0 / rate if rate else 0.0
    next_due = start + offset * interval
    while True:
        now = time.perf_counter()
        # Send whatever is due on free connections.
        while idle and sent < max_requests and now < deadline and (rate is None or next_due <= now):
            connection = idle.popleft()
            connection.send(requests[sent % len(requests)], next_due if rate else now)
            selector.register(connection.sock, selectors.EVENT_READ, connection)
            sent += 1
            next_due += interval
        busy = connections - len(idle)
        if busy == 0 and (sent >= max_requests or now >= deadline):
            break
        # Wait for an answer, or until the next request is due if a connection is free to send it (never
        # spin: a due request with every connection busy waits for an answer).
        timeout = None if rate is None or sent >= max_requests or not idle else max(0.0, next_due - now)
        for key, _ in selector.select(timeout):
            connection = key.data
            if connection.receive():
                answered = time.perf_counter()
                latencies.append(answered - connection.started)
                response_times.append(answered - connection.sent)
                errors += not 200 <= connection.status < 300  # 201 (Personalizer's rank) and 204 succeed
                selector.unregister(connection.sock)
                idle.append(connection)
    elapsed = time.perf_counter() - start
    for connection in idle:
        connection.sock.close()
    out.put((latencies, response_times, errors, elapsed))


def run_load(port: int, requests: Sequence[bytes], *, processes: int, connections: int, rate: float | None,
             max_requests: int, seconds: float) -> dict[str, Any]:  # fmt: skip
    """Drive the service from ``processes`` client processes x ``connections`` each.

    ``rate``: total requests/s (open loop), or None (closed loop). Stops after ``max_requests`` in all or
    ``seconds``, whichever comes first. Returns requests, errors, rps, p50_ms, p99_ms (latency from the
    scheduled time in open loop) and p50_sent_ms, p99_sent_ms (from the send).
    """
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    per_process_rate = rate / processes if rate else None
    workers = [
        context.Process(target=_client, args=(port, requests[i::processes] or requests, connections, per_process_rate,
                                              max_requests // processes, seconds, i / processes, queue))  # fmt: skip
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=seconds + 60) for _ in workers]
    for worker in workers:
        worker.join()
    latencies = sorted(x for r in results for x in r[0])
    response_times = sorted(x for r in results for x in r[1])
    elapsed = max(r[3] for r in results)
    return {
        "requests": len(latencies),
        "errors": sum(r[2] for r in results),
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * _quantile(latencies, 0.5),
        "p99_ms": 1000 * _quantile(latencies, 0.99),
        "p50_sent_ms": 1000 * _quantile(response_times, 0.5),
        "p99_sent_ms": 1000 * _quantile(response_times, 0.99),
    }


def _quantile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted values (nearest rank)."""
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]
