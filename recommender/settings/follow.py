"""Following a configuration file: re-read it when it (or a file it extends) changes, refusing invalid edits."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from recommender.errors import ConfigError
from recommender.settings.app import AppConfig
from recommender.settings.loading import config_signature, load_config

log = logging.getLogger(__name__)


class ConfigFollower:
    """The configuration in a file, re-read when the file changes (checked at most every
    ``min_interval`` seconds). A call returns the current AppConfig; an invalid edit is logged and
    refused, and the previous configuration stays. For long-running processes other than the serving
    workers (which have their own watcher): the trainer and the separate joiner.
    """

    def __init__(self, path: str | Path, config: AppConfig, *, min_interval: float = 1.0) -> None:
        self.path = Path(path)
        self.current = config
        self.min_interval = min_interval
        self._signature = self._stat()
        self._checked = time.monotonic()

    def _stat(self) -> tuple[tuple[int, int, int] | None, ...]:
        return config_signature(self.path)  # the file and any file it extends

    def __call__(self) -> AppConfig:
        now = time.monotonic()
        if now - self._checked < self.min_interval:
            return self.current
        self._checked = now
        signature = self._stat()
        if signature != self._signature:
            self._signature = signature
            try:
                self.current = load_config(self.path)
                log.info("configuration reloaded from %s", self.path)
            except ConfigError as exc:
                log.error("configuration change refused, the previous settings stay: %s", exc)
        return self.current
