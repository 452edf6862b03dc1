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


class ProcessSupervisor:
    """Keeps one ``recommender --config <file> <command>`` process running (restarting it if it dies), and
    stops it with SIGTERM (then SIGKILL after ``stop_timeout`` seconds)."""

    def __init__(self, config_path: Path, command: str, role: str, *, on_exit: Callable[[int], None] | None = None,
                 stop_timeout: float = 30.0) -> None:  # fmt: skip
        self.name = role  # what the log calls the child: "joiner", "trainer"
        self.command = [sys.executable, "-m", "recommender.cli.main", "--config", str(config_path), command]
        self.on_exit = on_exit  # called with the pid of a child that ended (its metrics leave /metrics)
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def _spawn(self) -> subprocess.Popen:
        environment = {**os.environ, SUPERVISOR_PID: str(os.getpid())}
        return subprocess.Popen(self.command, env=environment, start_new_session=True)

    def start(self) -> None:
        self.process = self._spawn()
        self._thread = threading.Thread(target=self._watch, name=f"{self.name}-supervisor", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stopping.wait(1.0):
            if self.process is not None and self.process.poll() is not None:
                # No exit status: gunicorn's master reaps every child (waitpid(-1)), this one too, so Popen
                # sees only that it is gone (returncode 0 whatever happened); the child logs its own errors.
                log.error("the %s process %d exited; restarting it", self.name, self.process.pid)
                if self.on_exit is not None:
                    self.on_exit(self.process.pid)
                time.sleep(1.0)
                if not self._stopping.is_set():
                    self.process = self._spawn()

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
