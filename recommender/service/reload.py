"""Hot reload: each worker re-reads the config file when it changes and applies what can change live.

Every ``service.config_reload_seconds`` a thread looks at the file's (mtime, size, inode). On a change it
loads and validates the whole file with ``load_config``:

- invalid: the error (file and key path) is logged and the settings in force stay;
- valid: the settings listed in ``recommender.settings.service.HOT_RELOADABLE`` are taken over. A new
  exploration setting becomes ``policy.with_exploration(...)`` (same learned weights; a change VW cannot
  make on a trained model is refused and logged). Everything is installed as one new snapshot, so no
  request sees half of it. Changes to other settings are logged as needing a restart and ignored.

The same thread follows the model store (``policy.model_dir``): when the trainer publishes a new current
version, the worker loads it (under the exploration in force) and swaps it in the same way.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from recommender.errors import RecommenderError
from recommender.service.runtime import Runtime, Snapshot
from recommender.settings.loading import AppConfig, load_config
from recommender.settings.service import HOT_RELOADABLE
from recommender.settings.trainer import TRAINER_HOT_RELOADABLE

# What a worker applies live: the service's own list plus the learning mode (and, for the trainer this
# process may run, its interval and polling).
HOT: dict[str, tuple[str, ...]] = {**HOT_RELOADABLE, "trainer": TRAINER_HOT_RELOADABLE}

log = logging.getLogger(__name__)


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def merge_hot(current: AppConfig, new: AppConfig) -> AppConfig:
    """``current`` with the hot-reloadable settings of ``new``."""
    updates: dict[str, BaseModel] = {}
    for section, fields in HOT.items():
        old_section: BaseModel = getattr(current, section)
        new_section: BaseModel = getattr(new, section)
        changed = {name: getattr(new_section, name) for name in fields}
        if any(getattr(old_section, name) != value for name, value in changed.items()):
            updates[section] = old_section.model_copy(update=changed)
    return current.model_copy(update=updates)


def cold_changes(old: AppConfig, new: AppConfig) -> list[str]:
    """Settings (``section.key``) that differ between two file versions and cannot change live."""
    return [
        f"{section}.{name}"
        for section in type(new).model_fields
        for name in type(getattr(new, section)).model_fields
        if name not in HOT.get(section, ())
        and getattr(getattr(old, section), name) != getattr(getattr(new, section), name)
    ]


class ConfigWatcher:
    """Polls one config file and applies valid changes to a Runtime."""

    def __init__(self, path: str | Path, runtime: Runtime, interval: float) -> None:
        self.path = Path(path)
        self.runtime = runtime
        self.interval = interval
        self._seen = _signature(self.path)
        # What the file said last time: restart-only changes are reported against it (not against the
        # settings in force, which command-line options may have overridden).
        self._last_file = self._read_quietly()
        # Follow the model store only when serving a real policy (not uniform, not one injected by a test).
        self.follow_models = runtime.snapshot.policy is not None
        self._model_seen = self._current_model() if self.follow_models else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> str:
        """Look once at the file, then at the model store. Returns the file's outcome: ``unchanged``,
        ``applied``, ``no-op`` (valid, nothing live changed) or ``refused``."""
        outcome = self._check_file()
        if self.follow_models:
            self._check_model()
        return outcome

    def _read_quietly(self) -> AppConfig | None:
        try:
            return load_config(self.path)
        except (RecommenderError, ValueError):
            return None

    def _model_store(self) -> Any:
        from recommender.policy.model_store import ModelStore

        features = self.runtime.snapshot.config.features
        return ModelStore(
            self.runtime.snapshot.config.policy.model_dir,
            user_group=features.groups[features.user_group],
            item_group=features.groups[features.item_group],
        )

    def _current_model(self) -> str | None:
        try:
            return self._model_store().current_version()
        except RecommenderError as exc:
            log.error("cannot read the current model version: %s", exc)
            return None

    def _check_model(self) -> None:
        current = self._current_model()
        if current is None or current == self._model_seen:
            return
        self._model_seen = current
        snapshot = self.runtime.snapshot
        try:
            policy = self._model_store().load(current, exploration=snapshot.config.policy.exploration)
        except (RecommenderError, ValueError) as exc:
            log.error("new model version %s not loaded, still serving %s: %s", current, snapshot.model_version, exc)
            return
        self.runtime.swap(Snapshot.of(snapshot.config, policy))
        log.info("now serving model version %s", current)

    def _check_file(self) -> str:
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
        merged = merge_hot(current.config, new)
        cold = cold_changes(self._last_file, new) if self._last_file is not None else []
        self._last_file = new
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
        log.info("configuration change applied: exploration %s, learning mode %s", runtime.snapshot.exploration(),
                 merged.trainer.mode)  # fmt: skip
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
