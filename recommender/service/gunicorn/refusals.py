"""gunicorn's own refusals, in the JSON shape of every other refusal of the service.

gunicorn refuses some requests before the app sees them: a request line over ``limit_request_line`` bytes
(414), a header field over ``limit_request_field_size`` bytes or more than ``limit_request_fields`` fields
(431), a malformed request line, method, version, header or chunk (400), a transfer coding it does not
support (501, answered 400 here: nothing a client sends gets a 5xx from this service, and the message names
the coding). ``Worker.handle_error`` picks the status, logs the refusal, writes the access-log line and
sends an HTML page (``gunicorn.util.write_error``).

``InlineWorker.handle_error`` lets gunicorn do all of that, towards a ``CapturingSocket`` that keeps the bytes
instead of sending them, and then sends the client ``json_refusal(...)``: the same status line, with the
service's body ``{"error": code, "message": ..., "field": header name or null}`` (``recommender.service.errors``).
So gunicorn keeps deciding what is refused and with which status, and no page of it reaches a client.

A chunked body is parsed while the app reads it: a malformed one raises gunicorn's parse error inside the app,
which would be the app's 500. ``CheckedBody`` (the ``wsgi.input`` of chunked requests, set by InlineWorker)
turns it into the service's 400 (``ApiError``).
"""

from __future__ import annotations

import socket
from typing import Any

from gunicorn.config import Config
from gunicorn.http.body import Body
from gunicorn.http.errors import (
    InvalidHeader,
    InvalidHeaderName,
    LimitRequestHeaders,
    LimitRequestLine,
    NoMoreData,
    ParseException,
    UnsupportedTransferCoding,
)

from recommender.events.codec import to_json
from recommender.service.errors import INTERNAL_ERROR_MESSAGE, ApiError, error_body


class CapturingSocket:
    """Stands in for a client socket while gunicorn writes its error page: keeps what is sent, answers
    everything else (addresses, options) from the real socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.sent = bytearray()

    def gettimeout(self) -> float:
        return 0.0  # "non-blocking": gunicorn's write_nonblock then sends without toggling blocking mode

    def setblocking(self, flag: bool) -> None:
        pass  # the real socket's mode is left as gunicorn had it

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def send(self, data: bytes) -> int:
        self.sent += data
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _status_line(response: bytes) -> tuple[int, str] | None:
    """(status, reason) of an HTTP/1.x response's first line; None when it is not one."""
    line = response.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        return None
    return int(parts[1]), parts[2] if len(parts) == 3 else ""


def refusal_message(exc: BaseException, status: int, reason: str, cfg: Config) -> tuple[str, str | None]:
    """(message, field) for a request gunicorn refused with ``exc``: what was wrong and, for the size
    limits, which limit (gunicorn's settings, in bytes or fields)."""
    if isinstance(exc, LimitRequestLine):
        return (f"the request line (method, path and query) is longer than {cfg.limit_request_line} bytes "
                f"({exc})"), None  # fmt: skip
    if isinstance(exc, LimitRequestHeaders):
        return (f"the request headers are too large: a header field longer than {cfg.limit_request_field_size} "
                f"bytes or more than {cfg.limit_request_fields} header fields ({exc})"), None  # fmt: skip
    if isinstance(exc, UnsupportedTransferCoding):
        message = f"Transfer-Encoding: {exc} is not supported; send the body chunked or with a Content-Length"
        return message, "Transfer-Encoding"
    header = getattr(exc, "hdr", None) if isinstance(exc, InvalidHeader | InvalidHeaderName) else None
    field = header.title() if isinstance(header, str) else None  # header names are case-insensitive
    if status >= 500:
        return INTERNAL_ERROR_MESSAGE, None
    detail = str(exc)
    return (f"{reason.lower()}: {detail}" if detail else reason.lower()), field


def json_refusal(html_response: bytes, exc: BaseException, cfg: Config) -> bytes:
    """The response to send instead of gunicorn's ``html_response`` to the request it refused with ``exc``:
    the same status, a JSON body. ``html_response`` itself when it has no status line to keep."""
    status_line = _status_line(html_response)
    if status_line is None:
        return html_response
    status, reason = status_line
    if isinstance(exc, UnsupportedTransferCoding):
        status, reason = 400, "Bad Request"  # gunicorn's 501: see the module docstring
    message, field = refusal_message(exc, status, reason, cfg)
    code = "internal_error" if status >= 500 else (reason or "error").lower().replace(" ", "_")
    body = to_json(error_body(code, message, field))
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class CheckedBody:
    """A chunked request's ``wsgi.input`` (gunicorn's ``Body``), whose parse errors (a bad chunk size or
    extension, a missing terminator, the client gone mid-body) are the service's 400, not the app's 500."""

    def __init__(self, body: Body) -> None:
        self._body = body

    def _refused(self, exc: Exception) -> ApiError:
        return ApiError(400, "bad_request", f"the chunked request body is malformed: {exc}")

    def read(self, size: int | None = None) -> bytes:
        try:
            return self._body.read(size)
        except (ParseException, NoMoreData) as exc:
            raise self._refused(exc) from None

    def readline(self, size: int | None = None) -> bytes:
        try:
            return self._body.readline(size)
        except (ParseException, NoMoreData) as exc:
            raise self._refused(exc) from None

    def readlines(self, size: int | None = None) -> list[bytes]:
        try:
            return self._body.readlines(size)
        except (ParseException, NoMoreData) as exc:
            raise self._refused(exc) from None

    def __iter__(self) -> CheckedBody:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line
