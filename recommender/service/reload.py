"""Hot reload: each worker re-reads the config file when it changes and applies what can change live.

Every ``service.config_reload_seconds`` a thread looks at the file's (mtime, size, inode). On a change it
loads and validates the whole file with ``load_config``:

- invalid: the error (file and key path) is logged and the settings in force stay;
- valid: the settings listed in ``recommender.service_config.HOT_RELOADABLE`` are taken over. A new
  exploration setting becomes ``policy.with_exploration(...)`` (same learned weights; a change VW cannot
  make on a trained model is refused and logged). Everything is installed as one new snapshot, so no
  request sees half of it. Changes to other settings are logged as needing a restart and ignored.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from recommender.config import AppConfig, load_config
from recommender.errors import RecommenderError
from recommender.service.runtime import Runtime, Snapshot
from recommender.service_config import HOT_RELOADABLE

log = logging.getLogger(__name__)


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def merge_hot(current: AppConfig, new: AppConfig) -> tuple[AppConfig, list[str]]:
    """``current`` with the hot-reloadable settings of ``new``; and the sections whose other settings
    differ (they need a restart)."""
    updates: dict[str, BaseModel] = {}
    for section, fields in HOT_RELOADABLE.items():
        old_section: BaseModel = getattr(current, section)
        new_section: BaseModel = getattr(new, section)
        changed = {name: getattr(new_section, name) for name in fields if getattr(old_section, name) != getattr(
            new_section, name)}
        if changed:
            updates[section] = old_section.model_copy(update=changed)
    merged = current.model_copy(update=updates)
    cold = [
        f"{section}.{name}"
        for section in type(new).model_fields
        for name in type(getattr(new, section)).model_fields
        if getattr(getattr(merged, section), name) != getattr(getattr(new, section), name)
    ]
    return merged, cold


class ConfigWatcher:
    """Polls one config file and applies valid changes to a Runtime."""

    def __init__(self, path: str | Path, runtime: Runtime, interval: float) -> None:
        self.path = Path(path)
        self.runtime = runtime
        self.interval = interval
        self._seen = _signature(self.path)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> str:
        """Look once: ``unchanged``, ``applied``, ``no-op`` (valid, nothing live changed) or ``refused``."""
        signature = _signature(self.path)
        if signature == self._seen:
            return "unchanged"
        self._seen = signature
        try:
            new = load_config(self.path)
            outcome = self._apply(new)
        except (RecommenderError, ValueError) as exc:
            message = str(exc).replace("\n", "; ")
            log.error("configuration change refused, the previous settings stay: %s", message)
            self._record("refused", message)
            return "refused"
        return outcome

    def _apply(self, new: AppConfig) -> str:
        runtime = self.runtime
        current = runtime.snapshot
        merged, cold = merge_hot(current.config, new)
        if cold:
            log.warning("configuration change needs a restart to apply: %s", ", ".join(cold))
        if merged == current.config:
            self._record("no-op", None, cold)
            return "no-op"
        policy = current.policy
        if policy is not None and merged.policy.exploration != current.config.policy.exploration:
            # Raises ExplorationChangeError (a ValueError) when VW cannot keep the weights.
            policy = policy.with_exploration(merged.policy.exploration)
        runtime.swap(Snapshot.of(merged, policy))
        log.info("configuration change applied: exploration %s", runtime.snapshot.exploration())
        self._record("applied", None, cold)
        return "applied"

    def _record(self, outcome: str, error: str | None, cold: list[str] | None = None) -> None:
        self.runtime.metrics.reloads.labels(outcome).inc()
        details: dict[str, Any] = {"outcome": outcome, "error": error, "needs_restart": cold or []}
        self.runtime.last_reload = details

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # the watcher must outlive any surprise; the service keeps its settings
                log.exception("configuration check failed")

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="config-watcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
