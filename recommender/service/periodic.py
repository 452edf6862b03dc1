"""A check that runs every few seconds in a daemon thread of its own (the config watcher, the model follower)."""

from __future__ import annotations

import logging
import threading
from typing import ClassVar


class PeriodicCheck:
    """Calls ``check()`` every ``interval`` seconds between ``start()`` and ``stop()``.

    A check that raises is logged (``failure_message``, on the logger of the subclass's module) and the
    next one runs on time: the thread must outlive any surprise, and the service keeps serving what it has.
    """

    thread_name: ClassVar[str] = "periodic-check"
    failure_message: ClassVar[str] = "periodic check failed"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> object:
        """Look once; what it returns is for callers of ``check`` (tests, logs), not for the loop."""
        raise NotImplementedError

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:
                logging.getLogger(type(self).__module__).exception(self.failure_message)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
