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
"""

from __future__ import annotations

import re
import socket
from concurrent.futures import Future
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

# A complete request: its header block ended and, if it declares a Content-Length, that many body bytes
# after it. Requests larger than the peek are left to the thread pool (the scoring service's are ~12 KB).
PEEK_BYTES = 64 * 1024
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)[ \t]*(?=\r)", re.IGNORECASE)
_TRANSFER_ENCODING = re.compile(rb"\r\ntransfer-encoding:", re.IGNORECASE)
_EXPECT = re.compile(rb"\r\nexpect:", re.IGNORECASE)


def request_is_complete(sock: socket.socket) -> bool:
    """Whether a whole HTTP/1.x request with a known length is waiting in ``sock``'s receive buffer.

    Peeks without consuming or blocking. False when unsure (chunked or ``Expect`` requests, several
    Content-Length headers, a request beyond ``PEEK_BYTES``, nothing to read, a closed socket): such a
    request takes the thread pool's path, which is always correct, only slower.
    """
    try:
        data = sock.recv(PEEK_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:  # nothing yet (EAGAIN), or a reset: the pool's path reports it properly
        return False
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = data[: end + 2]  # keep the last header's CRLF for the Content-Length pattern
    if _TRANSFER_ENCODING.search(head) or _EXPECT.search(head):
        return False
    lengths = _CONTENT_LENGTH.findall(head)
    if len(lengths) > 1:
        return False
    body = int(lengths[0]) if lengths else 0
    return len(data) >= end + 4 + body


class InlineWorker(ThreadWorker):
    """gthread, serving complete requests of kept-alive connections on the event loop's thread."""

    def on_client_socket_readable(self, conn: Any, client: socket.socket) -> None:
        if (
            not self.alive
            or conn.is_http2
            or self.cfg.is_ssl
            or conn.parser.unreader.buf.getvalue()  # bytes read ahead by the last request: the pool's path
            or not request_is_complete(client)
        ):
            super().on_client_socket_readable(conn, client)
            return
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
