"""Background processes ``recommender serve`` keeps running beside gunicorn's workers.

With the bus on Redis that is one ``recommender join`` (joining a batch holds the GIL for a while, which must
not land on the serving threads); on the embedded default it is one ``recommender train`` (learning holds the
GIL for each example's VW call: in the worker it took a fifth of the one core the requests have, docs/learning.md,
"Where the trainer runs").

Each child runs in a session of its own, so a terminal's Ctrl-C (SIGINT to the foreground process group)
reaches only gunicorn's master, which stops the workers first and the children after them: the trainer then
learns what the worker's joiner wrote on its way out, and the joiner joins what the workers published last.
A child whose supervisor is gone (the master killed with SIGKILL) exits by itself (``exit_with_supervisor``).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

# Set in a supervised child's environment: the pid of the process that started it.
SUPERVISOR_PID = "RECOMMENDER_SUPERVISOR_PID"


# A child that exited is started again after RESTART_DELAY_SECONDS, doubled after each exit that came sooner
# than STEADY_SECONDS after its start, up to MAX_RESTART_DELAY_SECONDS: a child that cannot start (a model store
# it cannot write, say) costs a Python start-up with VW now and then, not a core.
RESTART_DELAY_SECONDS = 1.0
MAX_RESTART_DELAY_SECONDS = 60.0
STEADY_SECONDS = 30.0


def recommender_command(config_path: Path, command: str) -> list[str]:
    """``recommender --config <config_path> <command>`` as this interpreter runs it."""
    return [sys.executable, "-m", "recommender.cli.main", "--config", str(config_path), command]


class ProcessSupervisor:
    """Keeps one ``argv`` process running (restarting it if it dies, see ``RESTART_DELAY_SECONDS``), and stops
    it with SIGTERM (then SIGKILL after ``stop_timeout`` seconds)."""

    def __init__(self, argv: list[str], role: str, *, on_exit: Callable[[int], None] | None = None,
                 stop_timeout: float = 30.0) -> None:  # fmt: skip
        self.name = role  # what the log calls the child: "joiner", "trainer"
        self.command = argv
        self.on_exit = on_exit  # called with the pid of a child that ended (its metrics leave /metrics)
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen | None = None
        self.starts = 0  # processes started, the first included
        self._started_at = 0.0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def _spawn(self) -> subprocess.Popen:
        environment = {**os.environ, SUPERVISOR_PID: str(os.getpid())}
        self.starts += 1
        self._started_at = time.monotonic()
        return subprocess.Popen(self.command, env=environment, start_new_session=True)

    def start(self) -> None:
        self.process = self._spawn()
        self._thread = threading.Thread(target=self._watch, name=f"{self.name}-supervisor", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        delay = RESTART_DELAY_SECONDS
        while not self._stopping.wait(0.2):
            if self.process is not None and self.process.poll() is not None:
                # No exit status: gunicorn's master reaps every child (waitpid(-1)), this one too, so Popen
                # sees only that it is gone (returncode 0 whatever happened); the child logs its own errors.
                lived = time.monotonic() - self._started_at
                delay = RESTART_DELAY_SECONDS if lived >= STEADY_SECONDS else delay
                log.error("the %s process %d exited after %.0f s; restarting it in %.0f s", self.name,
                          self.process.pid, lived, delay)  # fmt: skip
                if self.on_exit is not None:
                    self.on_exit(self.process.pid)
                if self._stopping.wait(delay):
                    return
                self.process = self._spawn()
                delay = min(2 * delay, MAX_RESTART_DELAY_SECONDS)

    def stop(self) -> None:
        self._stopping.set()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                log.error("the %s process %d did not stop in %.0f s; killing it", self.name, self.process.pid,
                          self.stop_timeout)  # fmt: skip
                self.process.kill()


def exit_with_supervisor(stop: threading.Event, poll_seconds: float = 1.0) -> None:
    """Wait until ``stop`` is set, or, in a supervised child, until its supervisor is gone (then set ``stop``).

    A supervised child is not in its supervisor's process group (see the module docstring), so nothing else
    ends it when the supervisor dies without stopping it; its parent pid then changes (to init or a
    subreaper)."""
    supervisor = os.environ.get(SUPERVISOR_PID)
    if supervisor is None or not supervisor.isdigit():
        stop.wait()
        return
    while not stop.wait(poll_seconds):
        if os.getppid() != int(supervisor):
            log.error("the process that started this one (%s) is gone; stopping", supervisor)
            stop.set()
