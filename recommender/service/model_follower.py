"""Following the model store: each worker serves the current model version without a restart.

Every ``service.config_reload_seconds`` a thread reads the model store's current pointer
(``policy.model_dir``). When it names a new version (the trainer published one, or ops rolled back), the
worker loads it under the exploration in force and swaps it in with the settings in force, as one new
snapshot (``Runtime.update``): a request in flight finishes on the model it started with. A version that
cannot be loaded is logged and the model in force stays; the follower does not try that version again.
The running experiment's separately learned arms are followed the same way, each in its own namespace of the
store (``ArmModels.refresh``).

After a swap the follower hands the C heap's free pages back to the system (glibc's ``malloc_trim``): see
``release_free_heap``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Callable

from recommender.errors import RecommenderError
from recommender.policy.model_store import open_model_store
from recommender.service.periodic import PeriodicCheck
from recommender.service.runtime import Runtime, Snapshot

log = logging.getLogger(__name__)


def _glibc_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None under another C library (musl, macOS), where it does not exist."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (ValueError, OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM = _glibc_malloc_trim()


def release_free_heap() -> bool:
    """Return the free memory of the C heap to the system; True when glibc did (False: nothing to do here).

    Why: loading a model and rebuilding its item examples allocates tens of MB in VW's C++ heap, and the old
    model's memory, freed on the swap, stays in glibc's arenas (free, but resident) whenever a live block
    sits above it; repeated swaps left each worker's RSS rising over a soak. ``malloc_trim(0)`` gives the
    free pages of every arena back (a few ms, on the follower's thread, once per swap).
    """
    return _MALLOC_TRIM is not None and _MALLOC_TRIM(0) == 1


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
        self._checking = threading.Lock()

    def _current(self) -> str | None:
        try:
            return self.store.current_version()
        except RecommenderError as exc:
            log.error("cannot read the current model version: %s", exc)
            return None

    def check(self) -> bool:
        """Look once at the current pointers (the main one, the experiment arms'); True when a new version was
        swapped in. Called by this follower's thread and by the config watcher (before a policy or experiment
        change): one at a time, so a version is loaded once."""
        with self._checking:
            return self._check()

    def _check(self) -> bool:
        arms = self._check_arms()
        current = self._current()
        if current is None or current == self._seen:
            return arms
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
        release_free_heap()  # the old model's memory, freed by the swap (unless a request still holds it)
        return True

    def _check_arms(self) -> bool:
        """Swap in the separately learned experiment arms' new versions; True when one changed."""
        changed = self.runtime.arm_models.refresh(self.runtime.snapshot.config.experiments.current)
        if not changed:
            return False
        try:
            self.runtime.update(lambda snapshot: snapshot)  # rebuilds the arms: the changed ones get their model
        except (RecommenderError, ValueError) as exc:
            log.error("experiment arms %s: new models not installed: %s", ", ".join(changed), exc)
            return False
        release_free_heap()
        return True
