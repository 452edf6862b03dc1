"""How long a request waited for its worker: the contract between the server and the app.

A server that knows when a request finished arriving puts that time (epoch seconds, a float) in the WSGI
environ under ``ARRIVED_AT``; the gunicorn worker (``recommender.service.gunicorn.worker``) does, from the
kernel's receive timestamp. The app reads it with ``queued_seconds``. Requests without it (another server,
or a request gunicorn's thread pool read itself) are not measured and never shed.
"""

from __future__ import annotations

import time
from wsgiref.types import WSGIEnvironment

# The WSGI environ key of the time a request finished arriving (epoch seconds, float), when known.
ARRIVED_AT = "recommender.arrived_at"


def queued_seconds(environ: WSGIEnvironment) -> float | None:
    """Seconds since the request finished arriving (never negative), or None when the server did not say."""
    arrived = environ.get(ARRIVED_AT)
    if arrived is None:
        return None
    return max(0.0, time.time() - arrived)
