"""Following the model store: each worker serves the current model version without a restart.

Every ``service.config_reload_seconds`` a thread reads the model store's current pointer
(``policy.model_dir``). When it names a new version (the trainer published one, or ops rolled back), the
worker loads it under the exploration in force and swaps it in with the settings in force, as one new
snapshot (``Runtime.update``): a request in flight finishes on the model it started with. A version that
cannot be loaded is logged and the model in force stays; the follower does not try that version again.
"""

from __future__ import annotations

import logging

from recommender.errors import RecommenderError
from recommender.policy.model_store import open_model_store
from recommender.service.periodic import PeriodicCheck
from recommender.service.runtime import Runtime, Snapshot

log = logging.getLogger(__name__)


class ModelFollower(PeriodicCheck):
    """Swaps each new current version of the runtime's model store into the runtime."""

    thread_name = "model-follower"
    failure_message = "model check failed"

    def __init__(self, runtime: Runtime, interval: float) -> None:
        super().__init__(interval)
        self.runtime = runtime
        # policy.model_dir and the feature groups need a restart to change: the store stays the same.
        self.store = open_model_store(runtime.snapshot.config)
        self._seen = self._current()

    def _current(self) -> str | None:
        try:
            return self.store.current_version()
        except RecommenderError as exc:
            log.error("cannot read the current model version: %s", exc)
            return None

    def check(self) -> bool:
        """Look once at the current pointer; True when a new version was swapped in."""
        current = self._current()
        if current is None or current == self._seen:
            return False
        self._seen = current

        def with_model(snapshot: Snapshot) -> Snapshot:
            # Under the exploration in force now: the config watcher may have changed it meanwhile.
            policy = self.store.load(current, exploration=snapshot.config.policy.exploration)
            return Snapshot.of(snapshot.config, policy)

        try:
            self.runtime.update(with_model)
        except (RecommenderError, ValueError) as exc:
            log.error("new model version %s not loaded, still serving %s: %s", current,
                      self.runtime.snapshot.model_version, exc)  # fmt: skip
            return False
        log.info("now serving model version %s", current)
        return True
