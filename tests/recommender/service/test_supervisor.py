"""``ProcessSupervisor``: a child that keeps exiting is restarted ever less often; stopping ends it."""

from __future__ import annotations

import sys
import time

from recommender.service.gunicorn import supervisor
from recommender.service.gunicorn.supervisor import ProcessSupervisor


def test_a_child_that_keeps_exiting_is_restarted_after_doubling_delays(monkeypatch):
    monkeypatch.setattr(supervisor, "RESTART_DELAY_SECONDS", 0.5)
    exited: list[int] = []
    child = ProcessSupervisor([sys.executable, "-c", "pass"], "probe", on_exit=exited.append)
    child.start()
    try:
        time.sleep(4.0)  # restarts after 0.5, 1 and 2 s of waiting (plus start-ups): 4 processes, not 8
    finally:
        child.stop()
    assert 3 <= child.starts <= 4, child.starts
    assert len(exited) in (child.starts - 1, child.starts)  # every exit seen was reported


def test_stop_ends_a_running_child_with_sigterm():
    child = ProcessSupervisor([sys.executable, "-c", "import time; time.sleep(60)"], "sleeper")
    child.start()
    time.sleep(0.5)
    started = time.monotonic()
    child.stop()
    assert child.process.returncode == -15 and time.monotonic() - started < 5
    assert child.starts == 1
