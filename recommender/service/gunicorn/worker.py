"""The gunicorn worker class of ``recommender serve``: gthread, with a fast path for kept-alive connections.

gunicorn's ``gthread`` worker hands every request to its thread pool: the event loop unregisters the
socket, submits a future, a pool thread wakes, serves the request, and hands the connection back through
a pipe so that the loop registers it again. On the 2-core development machine those hand-offs cost about
0.1 ms of CPU per request, a fifth of a bare policy decision over 200 candidates.

``InlineWorker`` serves a request on the event loop's own thread when all of it is already in the socket
buffer of a kept-alive connection (the storefront's steady state: one request per connection at a time,
sent in one go). Reading it cannot block, so the loop only pauses for the request's own work, and the
connection stays registered. Everything else takes gthread's path unchanged: a new connection, a request
that arrived in parts or has a chunked body (it may block on a slow client, so a pool thread waits for
it), pipelined bytes already read, TLS, HTTP/2, and a worker that is stopping.

The price: while the loop serves a request, this worker accepts nothing else, as a single-threaded
worker would. Requests that wait on Redis are bounded by ``features.redis.timeout_ms`` and the bus's
budget, and more workers (``service.workers``) keep the cores busy meanwhile.

Connections are spread evenly over the workers. gunicorn leaves that to the kernel: whichever worker
wakes first accepts, and a client opening its pool of keep-alive connections at once typically lands
7 of 8 on one worker (measured), which then queues while the other idles. Every request of a kept-alive
connection goes to the worker that accepted it, so the imbalance lasts as long as the connections.
``InlineWorker`` accepts only while no other worker of its master holds fewer open connections (a
``ConnectionBoard`` in memory shared by the master's forks), so a pool opened at once splits 4 and 4.

How long a request waited for this worker is known: connections ask the kernel to stamp what they receive
(Linux's ``SO_TIMESTAMPNS``), the peek that finds a complete request also reads when its last byte
arrived, and the app gets that time in the WSGI environ under ``recommender.service.arrival.ARRIVED_AT``
(requests the pool reads themselves carry none). The app measures its queueing with it and sheds load
(``service.queue_budget_ms``).

Requests gunicorn itself refuses (a header too large, a malformed request line, ...) are answered with the
service's JSON error body and gunicorn's status (``recommender.service.gunicorn.refusals``).

``InlineWorker`` overrides and reads gthread internals, listed and checked in
``recommender.service.gunicorn.internals``: importing this module fails, naming the gunicorn version and
what is missing, on a gunicorn without them.
"""

from __future__ import annotations

import contextlib
import mmap
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any, ClassVar
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from gunicorn import util
from gunicorn.http.message import Request
from gunicorn.workers.base import Worker
from gunicorn.workers.gthread import TConn, ThreadWorker

from recommender.service.arrival import ARRIVED_AT
from recommender.service.gunicorn.internals import check_internals
from recommender.service.gunicorn.refusals import CapturingSocket, CheckedBody, json_refusal

# Before InlineWorker is defined on them: a gunicorn without the internals it relies on stops here.
check_internals()

# A complete request: its header block ended and, if it declares a Content-Length, that many body bytes
# after it. Requests larger than the peek are left to the thread pool (the scoring service's are ~12 KB).
PEEK_BYTES = 64 * 1024
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)[ \t]*(?=\r)", re.IGNORECASE)
_TRANSFER_ENCODING = re.compile(rb"\r\ntransfer-encoding:", re.IGNORECASE)
_EXPECT = re.compile(rb"\r\nexpect:", re.IGNORECASE)

# Linux stamps each received segment for a socket that set SO_TIMESTAMPNS (Python's socket module does
# not name it), and a recvmsg, a peek included, returns the stamp of the last segment it read as a
# struct timespec (two C longs).
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35) if sys.platform.startswith("linux") else None
_TIMESPEC = struct.Struct("@ll")
_ANCILLARY_BYTES = socket.CMSG_SPACE(_TIMESPEC.size)


def stamp_arrivals(sock: socket.socket) -> None:
    """Ask the kernel to stamp what ``sock`` receives (a no-op where it cannot)."""
    if SO_TIMESTAMPNS is not None:
        with contextlib.suppress(OSError):  # e.g. a socket type without stamps: the app sees "now"
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


def _arrival(ancillary: Iterable[tuple[int, int, bytes]]) -> float:
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(value)
            if seconds > 0:  # 0: a segment that arrived before any socket of the host asked for stamps
                return seconds + nanoseconds * 1e-9
    return time.time()


def complete_request_arrival(sock: socket.socket) -> float | None:
    """When the whole HTTP/1.x request with a known length waiting in ``sock``'s receive buffer finished
    arriving (epoch seconds), or None when no such request is waiting.

    The time is the kernel's stamp of the request's last segment if ``stamp_arrivals`` was called before
    it arrived, else now. Peeks without consuming or blocking. None also when unsure (chunked or
    ``Expect`` requests, several Content-Length headers, a request beyond ``PEEK_BYTES``, nothing to read,
    a closed socket): such a request takes the thread pool's path, which is always correct, only slower.
    """
    try:
        data, ancillary, _, _ = sock.recvmsg(PEEK_BYTES, _ANCILLARY_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:  # nothing yet (EAGAIN), or a reset: the pool's path reports it properly
        return None
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = data[: end + 2]  # keep the last header's CRLF for the Content-Length pattern
    if _TRANSFER_ENCODING.search(head) or _EXPECT.search(head):
        return None
    lengths = _CONTENT_LENGTH.findall(head)
    if len(lengths) > 1:
        return None
    body = int(lengths[0]) if lengths else 0
    if len(data) < end + 4 + body:
        return None
    return _arrival(ancillary)


# The arrival time of the request the current thread is handling, for the WSGI wrapper below.
_handling = threading.local()


def _with_arrival(app: WSGIApplication) -> WSGIApplication:
    """``app`` given the request's arrival time, and a chunked body whose parse errors are a 400
    (``refusals.CheckedBody``)."""

    def app_with_arrival(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        arrived = getattr(_handling, "arrived_at", None)
        if arrived is not None:
            environ[ARRIVED_AT] = arrived
        if "HTTP_TRANSFER_ENCODING" in environ:  # never on the inline path (complete requests of known length)
            environ["wsgi.input"] = CheckedBody(environ["wsgi.input"])
        return app(environ, start_response)

    return app_with_arrival


class ConnectionBoard:
    """The open connections of each worker of one gunicorn master, in memory its forks share.

    Made in the master before it forks a worker (the worker object is built there), so every worker,
    respawned ones included, maps the same pages. One slot per worker, its ``age`` modulo ``SLOTS``:
    (pid, open connections, last heartbeat in ``time.monotonic`` seconds, a clock all processes of the
    host share). A worker writes only its own slot. A slot whose heartbeat is older than
    ``STALE_SECONDS`` is ignored: a dead worker's, or a worker stuck in one request (gunicorn's timeout
    will replace it); ``forget`` clears an exited worker's slot at once (gunicorn's ``child_exit``).
    Reads are not atomic with writes; a torn read only misjudges one accept decision. Two live workers
    whose ages differ by a multiple of ``SLOTS`` (after many respawns) share a slot and do not see each
    other: they accept as plain gthread would.
    """

    SLOTS = 64
    STALE_SECONDS = 3.0
    _FIELDS = 3  # pid, connections, heartbeat

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, self.SLOTS * self._FIELDS * 8)  # anonymous, shared: inherited by forks
        self._cells = memoryview(self._map).cast("d")

    def publish(self, slot: int, pid: int, connections: int, now: float) -> None:
        """Write ``slot``: this worker's pid, open connections and heartbeat."""
        base = slot * self._FIELDS
        self._cells[base + 1] = connections
        self._cells[base + 2] = now
        self._cells[base] = pid

    def forget(self, slot: int, pid: int) -> None:
        """Clear ``slot`` if it still belongs to ``pid`` (a newer worker may have taken it)."""
        base = slot * self._FIELDS
        if self._cells[base] == pid:
            self._cells[base : base + self._FIELDS] = memoryview(bytes(self._FIELDS * 8)).cast("d")

    def fewest_elsewhere(self, slot: int, now: float) -> float | None:
        """The fewest open connections of any other live worker; None when there is none."""
        cells = self._cells.tolist()
        oldest = now - self.STALE_SECONDS
        counts = [
            cells[base + 1]
            for base in range(0, len(cells), self._FIELDS)
            if cells[base] and cells[base + 2] >= oldest and base != slot * self._FIELDS
        ]
        return min(counts) if counts else None


class InlineWorker(ThreadWorker):
    """gthread, serving complete requests of kept-alive connections on the event loop's thread, and
    accepting connections only while no other worker holds fewer (see the module docstring)."""

    # Made by the master at its first worker, before forking it; shared with every worker it forks.
    board: ClassVar[ConnectionBoard | None] = None
    # While declining connections, look at the board this often (the worker's event loop would
    # otherwise sleep up to a second with nothing to do).
    RECHECK_SECONDS = 0.01

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if InlineWorker.board is None:
            InlineWorker.board = ConnectionBoard()
        self.slot = self.age % ConnectionBoard.SLOTS
        self._declining = False  # not accepting only because another worker holds fewer connections
        self._checked_conns = -1
        self._checked_at = 0.0

    @classmethod
    def forget(cls, worker: Worker) -> None:
        """For the master's ``child_exit`` hook: the exited ``worker`` holds no connections any more."""
        if cls.board is not None and isinstance(worker, InlineWorker):
            cls.board.forget(worker.slot, worker.pid)

    def set_accept_enabled(self, enabled: bool) -> None:
        # gthread asks for accepting whenever it is below worker_connections and not accepting; while this
        # worker declines for fairness, _balance alone decides when to accept again.
        if enabled and self._declining:
            return
        if not enabled:
            self._declining = False  # gthread's own reasons (the connection limit, stopping) take over
        super().set_accept_enabled(enabled)

    def _balance(self) -> None:
        """Publish this worker's connections; accept only while no other worker holds fewer."""
        now = time.monotonic()
        self.board.publish(self.slot, self.pid, self.nr_conns, now)
        if not (self._accepting or self._declining) or not self.alive:
            return
        # Look at the others after each change of our own count, else every RECHECK_SECONDS.
        if self.nr_conns == self._checked_conns and now - self._checked_at < self.RECHECK_SECONDS:
            return
        self._checked_conns, self._checked_at = self.nr_conns, now
        fewest = self.board.fewest_elsewhere(self.slot, now)
        fair = fewest is None or self.nr_conns <= fewest
        if self._accepting and not fair:
            super().set_accept_enabled(False)
            self._declining = True
        elif self._declining and fair:
            self._declining = False
            super().set_accept_enabled(self.nr_conns < self.worker_connections)

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.served_app = self.wsgi  # the application itself, for hooks (``self.wsgi`` is the wrapper)
        self.wsgi = _with_arrival(self.served_app)

    def enqueue_req(self, conn: TConn) -> None:
        # Every connection passes here first (gthread hands new ones to the pool): stamp from then on.
        if not getattr(conn, "stamped", False):
            stamp_arrivals(conn.sock)
            conn.stamped = True
        super().enqueue_req(conn)

    def handle_error(self, req: Request | None, client: socket.socket, addr: Any, exc: BaseException) -> None:
        # gunicorn refused the request (or failed on it): its status, log and access-log line, our JSON body
        # (recommender.service.gunicorn.refusals).
        capture = CapturingSocket(client)
        super().handle_error(req, capture, addr, exc)
        if capture.sent:
            try:
                util.write_nonblock(client, json_refusal(bytes(capture.sent), exc, self.cfg))
            except Exception:  # the client went away meanwhile: gunicorn ignores this too
                self.log.debug("Failed to send error message.")

    def handle_request(self, req: Request, conn: TConn) -> bool:
        _handling.arrived_at = conn.__dict__.pop("arrived_at", None)  # one request's, not the next one's
        try:
            return super().handle_request(req, conn)
        finally:
            _handling.arrived_at = None

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        if self.board is not None:
            self._balance()
        super().wait_for_and_dispatch_events(min(timeout, self.RECHECK_SECONDS) if self._declining else timeout)

    def on_client_socket_readable(self, conn: TConn, client: socket.socket) -> None:
        if (
            not self.alive
            or conn.is_http2
            or self.cfg.is_ssl
            or conn.parser.unreader.buf.getvalue()  # bytes read ahead by the last request: the pool's path
            or (arrived := complete_request_arrival(client)) is None
        ):
            super().on_client_socket_readable(conn, client)
            return
        conn.arrived_at = arrived
        self.keepalived_conns.remove(conn)
        keep_alive = self.handle(conn)  # gthread's own request handling, errors included
        if keep_alive is True and self.alive and not conn.parser.unreader.buf.getvalue():
            # Still registered with this callback: only its place in the keep-alive queue changes.
            conn.set_timeout()
            self.keepalived_conns.append(conn)
            return
        # Closing, or pipelined bytes read ahead: gthread's bookkeeping decides, as after a pool thread.
        self.poller.unregister(client)
        done: Future = Future()
        done.set_result(keep_alive)
        self.finish_request(conn, done)
