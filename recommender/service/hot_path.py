"""The usual ``POST /v1/score``, answered in front of Flask.

Flask's request machinery (contexts, routing, hooks, the request and response objects) cost about a fifth of
the app's CPU per score request on the project's 2-core machine: 256-272 us at 20 candidates, 390-664 at 200
(docs/service.md, ``POST /v1/score``; docs/benchmarks.md, "Where a score request's CPU goes").
``HotScorePath`` wraps the app's WSGI callable and answers the usual score request itself, through the same
``scoring.answer_score`` as the Flask view, with the same metrics and error bodies. The usual request:
``POST /v1/score`` with ``Content-Type: application/json`` exactly, a ``Content-Length`` within
``service.max_body_bytes``, no ``Content-Encoding`` or ``Transfer-Encoding``, and ``service.protect_score``
off. Every other request goes to Flask unchanged, so its refusals (415, 413, 401, 405, ...) stay where they
are written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from http import HTTPStatus
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from recommender.events.codec import to_json
from recommender.service.arrival import queued_seconds
from recommender.service.errors import ACCEPTED_MEDIA_TYPE, INTERNAL_ERROR_MESSAGE, ApiError, error_body
from recommender.service.runtime import Runtime
from recommender.service.scoring import answer_score
from recommender.settings.service import ServiceConfig

log = logging.getLogger(__name__)

ENDPOINT = "scoring.score"  # Flask's name of the score view: the metrics' endpoint label for both entries
_STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


class HotScorePath:
    """WSGI middleware: ``HotScorePath(app.wsgi_app, runtime)`` answers the usual score request (module
    docstring) and passes every other request to ``flask_wsgi``."""

    def __init__(self, flask_wsgi: WSGIApplication, runtime: Runtime) -> None:
        self.flask_wsgi = flask_wsgi
        self.runtime = runtime

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        rt = self.runtime
        snapshot = rt.snapshot  # one for the whole request, as a Flask view reads it once
        length = _usual_length(environ, snapshot.config.service)
        if length is None:
            return self.flask_wsgi(environ, start_response)
        started = time.perf_counter()
        queued = queued_seconds(environ)  # known under InlineWorker, when the kernel stamped the request
        if queued is not None:
            rt.metrics.queue_wait.observe(queued)
        headers: dict[str, str] = {}
        try:
            status, body = 200, answer_score(rt, snapshot, environ["wsgi.input"].read(length), queued)
        except ApiError as error:
            status, body, headers = error.status, error.body(), error.headers
        except Exception:
            log.exception("unhandled error while serving a request")
            status, body = 500, error_body("internal_error", INTERNAL_ERROR_MESSAGE)
        data = to_json(body)
        start_response(_STATUS_LINES[status], [("Content-Type", ACCEPTED_MEDIA_TYPE),
                                               ("Content-Length", str(len(data))), *headers.items()])  # fmt: skip
        rt.metrics.observe_response(ENDPOINT, time.perf_counter() - started, status)
        return [data]


def _usual_length(environ: WSGIEnvironment, service: ServiceConfig) -> int | None:
    """The body's length when ``environ`` is the usual score request (module docstring) under ``service``, else
    None."""
    if (
        environ.get("PATH_INFO") != "/v1/score"
        or environ.get("REQUEST_METHOD") != "POST"
        or environ.get("CONTENT_TYPE") != ACCEPTED_MEDIA_TYPE
        or "HTTP_CONTENT_ENCODING" in environ
        or "HTTP_TRANSFER_ENCODING" in environ
    ):
        return None
    declared = environ.get("CONTENT_LENGTH", "")
    # ASCII digits only: str.isdigit() also takes digits int() refuses (e.g. "²", a latin-1 header byte).
    if not (declared.isascii() and declared.isdigit()) or int(declared) > service.max_body_bytes \
            or service.protect_score:
        return None
    return int(declared)
