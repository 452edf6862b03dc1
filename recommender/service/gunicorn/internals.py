"""The gunicorn internals ``InlineWorker`` relies on, checked when its module is imported.

gunicorn documents how to write a worker class, not the inner workings of its gthread worker, and
``InlineWorker`` (``recommender.service.gunicorn.worker``) overrides and calls those. What it uses beyond
the documented Worker API (``alive``, ``age``, ``pid``, ``cfg``, ``load_wsgi``, ``wsgi``):

- ``gunicorn.workers.gthread.ThreadWorker``: the methods it overrides or calls, with their arity
  (``set_accept_enabled``, ``enqueue_req``, ``handle``, ``handle_request``, ``finish_request``,
  ``wait_for_and_dispatch_events``, ``on_client_socket_readable``), and the state ``__init__`` sets up
  (``_accepting``, ``nr_conns``, ``worker_connections``, ``keepalived_conns``, ``poller``);
- ``gunicorn.workers.base.Worker.handle_error`` (4 arguments), which writes its error page with
  ``gunicorn.util.write_error`` through ``util.write_nonblock``: ``InlineWorker.handle_error`` passes it a
  stand-in socket and sends the same status with a JSON body (``recommender.service.gunicorn.refusals``);
- ``gunicorn.workers.gthread.TConn``: ``sock``, ``parser``, ``is_http2`` and ``set_timeout()``;
- the HTTP/1 parser's read-ahead buffer, ``conn.parser.unreader.buf`` (``gunicorn.http.parser.Parser``,
  ``gunicorn.http.unreader.Unreader``), and ``gunicorn.config.Config.is_ssl``.

setup.cfg pins gunicorn to ``TESTED``, the range the worker was tested with. A gunicorn outside it that
lacks any of these stops ``recommender serve`` (and ``gunicorn -k ...InlineWorker``) at start with
``UnsupportedGunicornError`` naming the installed version and the missing internal, rather than letting the
worker misbehave under load.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import gunicorn
from gunicorn import util
from gunicorn.config import Config
from gunicorn.http.parser import Parser
from gunicorn.http.unreader import Unreader
from gunicorn.workers.gthread import TConn, ThreadWorker

from recommender.errors import RecommenderError

TESTED = ">=27.0.1,<28"

# Methods InlineWorker overrides or calls -> their parameter count, ``self`` included.
THREAD_WORKER_METHODS = {
    "set_accept_enabled": 2,
    "enqueue_req": 2,
    "handle": 2,
    "handle_request": 3,
    "finish_request": 3,
    "wait_for_and_dispatch_events": 2,
    "on_client_socket_readable": 3,
    "handle_error": 5,
}
# Attributes InlineWorker reads, which the class's ``__init__`` assigns.
THREAD_WORKER_STATE = ("_accepting", "nr_conns", "worker_connections", "keepalived_conns", "poller")
CONNECTION_STATE = ("sock", "parser", "is_http2")


class UnsupportedGunicornError(RecommenderError):
    """The installed gunicorn lacks an internal the serving worker relies on."""


def _assigned_in_init(cls: type) -> set[str]:
    """Attribute names ``cls.__init__`` assigns (or reads) on any object: its code's names."""
    init = cls.__dict__.get("__init__")
    return set(init.__code__.co_names) if init is not None and hasattr(init, "__code__") else set()


def _arity(function: Callable[..., object]) -> int | None:
    try:
        return len(inspect.signature(function).parameters)
    except (TypeError, ValueError):  # no signature to read
        return None


def missing_internals() -> list[str]:
    """The internals (``Class.name``) the installed gunicorn lacks; empty when all are there."""
    missing = []
    for name, arity in THREAD_WORKER_METHODS.items():
        method = getattr(ThreadWorker, name, None)
        if not callable(method) or _arity(method) != arity:
            missing.append(f"ThreadWorker.{name} (a method of {arity - 1} argument(s))")
    assigned = _assigned_in_init(ThreadWorker)
    missing += [f"ThreadWorker.{name}" for name in THREAD_WORKER_STATE if name not in assigned]
    assigned = _assigned_in_init(TConn)
    missing += [f"TConn.{name}" for name in CONNECTION_STATE if name not in assigned]
    if not callable(getattr(TConn, "set_timeout", None)):
        missing.append("TConn.set_timeout")
    if "unreader" not in _assigned_in_init(Parser):
        missing.append("Parser.unreader")
    if "buf" not in _assigned_in_init(Unreader):
        missing.append("Unreader.buf")
    if not callable(getattr(util, "write_nonblock", None)):
        missing.append("util.write_nonblock")
    if not hasattr(Config, "is_ssl"):
        missing.append("Config.is_ssl")
    return missing


def check_internals() -> None:
    """Raise UnsupportedGunicornError, naming the gunicorn version and what is missing, unless every
    internal ``InlineWorker`` relies on is there."""
    missing = missing_internals()
    if missing:
        raise UnsupportedGunicornError(
            f"gunicorn {gunicorn.__version__} lacks {', '.join(missing)}, which "
            "recommender.service.gunicorn.worker.InlineWorker relies on; it is tested with "
            f"gunicorn{TESTED} (pip install 'gunicorn{TESTED}')"
        )
