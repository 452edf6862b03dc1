"""The gthread internals the serving worker relies on: present in the installed gunicorn, and a gunicorn
without one of them is refused at start with an error naming its version and the missing internal."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import gunicorn
import pytest
from gunicorn.http.unreader import Unreader
from gunicorn.workers.gthread import TConn, ThreadWorker

from recommender.service.gunicorn.internals import (
    TESTED,
    UnsupportedGunicornError,
    check_internals,
    missing_internals,
)

ROOT = Path(__file__).resolve().parents[3]
VERSION = re.escape(gunicorn.__version__)


def test_the_installed_gunicorn_has_every_internal_the_worker_relies_on():
    assert missing_internals() == []
    check_internals()


def test_the_installed_gunicorn_is_in_the_pinned_range():
    major, minor, patch = (int(part) for part in gunicorn.__version__.split(".")[:3])
    assert TESTED == ">=27.0.1,<28"
    assert (27, 0, 1) <= (major, minor, patch) < (28, 0, 0)
    assert f"gunicorn{TESTED}" in (ROOT / "setup.cfg").read_text()


@pytest.mark.parametrize(
    ("owner", "name", "value", "missing"),
    [
        (ThreadWorker, "finish_request", None, r"ThreadWorker\.finish_request"),  # removed or renamed
        (ThreadWorker, "handle_request", lambda self, req: True, r"ThreadWorker\.handle_request"),  # other arity
        (ThreadWorker, "__init__", lambda self, *args: None, r"ThreadWorker\._accepting, ThreadWorker\.nr_conns"),
        (TConn, "__init__", lambda self, *args: None, r"TConn\.sock, TConn\.parser, TConn\.is_http2"),
        (TConn, "set_timeout", None, r"TConn\.set_timeout"),
        (Unreader, "__init__", lambda self: None, r"Unreader\.buf"),
    ],
)
def test_a_gunicorn_without_an_internal_is_refused_naming_version_and_internal(monkeypatch, owner, name, value,
                                                                                missing):
    monkeypatch.setattr(owner, name, value)  # what a gunicorn release that changed it would look like
    assert missing_internals()
    with pytest.raises(UnsupportedGunicornError, match=rf"^gunicorn {VERSION} lacks .*{missing}.*tested with "
                       rf"gunicorn{re.escape(TESTED)}"):  # fmt: skip
        check_internals()


def test_the_check_runs_when_the_worker_class_is_loaded():
    # A fresh interpreter loading the worker module as gunicorn does, on a gunicorn lacking an internal.
    script = (
        "from gunicorn.workers import gthread\n"
        "del gthread.ThreadWorker.finish_request\n"
        "import recommender.service.gunicorn.worker\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert re.search(rf"UnsupportedGunicornError: gunicorn {VERSION} lacks ThreadWorker\.finish_request",
                     result.stderr), result.stderr  # fmt: skip
