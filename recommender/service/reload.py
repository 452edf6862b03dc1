"""Hot reload: each worker re-reads the config file when it changes and applies what can change live.

Every ``service.config_reload_seconds`` a thread looks at the (mtime, size, inode) of the file and of any file
it extends (``config_signature``). On a change it
loads and validates the whole file with ``load_config``:

- invalid: the error (file and key path) is logged and the settings in force stay;
- valid: the settings listed in ``recommender.settings.service.HOT_RELOADABLE`` are taken over. A new
  exploration setting becomes ``policy.with_exploration(...)`` (same learned weights and model version; a
  SquareCB ``gamma_scale`` change reloads nothing, the pmf is rescaled; a change VW cannot make on a trained
  model is refused and logged). Everything is installed as one new snapshot, so no
  request sees half of it. Changes to other settings are logged as needing a restart and ignored.

New model versions are not this module's business: ``recommender.service.model_follower`` follows the
model store and swaps them in. Both change the snapshot through ``Runtime.update``, so neither undoes the
other's change. One ordering is this module's: before a change of the policy or experiments section is
installed, the follower looks at the model store once, so a model published before the file was written
(``recommender experiment promote``) is in force before the settings that go with it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from recommender.errors import RecommenderError
from recommender.service.periodic import PeriodicCheck
from recommender.service.runtime import Runtime, Snapshot
from recommender.settings.app import AppConfig
from recommender.settings.experiments import EXPERIMENTS_HOT_RELOADABLE
from recommender.settings.loading import config_signature, load_config
from recommender.settings.service import HOT_RELOADABLE
from recommender.settings.trainer import TRAINER_HOT_RELOADABLE

# What a worker applies live: the service's own list plus the learning mode (and, for the trainer this
# process may run, its interval and polling).
HOT: dict[str, tuple[str, ...]] = {
    **HOT_RELOADABLE,
    "trainer": TRAINER_HOT_RELOADABLE,
    "experiments": EXPERIMENTS_HOT_RELOADABLE,  # the experiment's arms are rebuilt by Runtime.update
}

log = logging.getLogger(__name__)


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


class ConfigWatcher(PeriodicCheck):
    """Polls one config file and applies valid changes to a Runtime."""

    thread_name = "config-watcher"
    failure_message = "configuration check failed"

    def __init__(self, path: str | Path, runtime: Runtime, interval: float) -> None:
        super().__init__(interval)
        self.path = Path(path)
        self.runtime = runtime
        self._seen = config_signature(self.path)
        # What the file said last time: restart-only changes are reported against it (not against the
        # settings in force, which command-line options may have overridden).
        self._last_file = self._read_quietly()

    def check(self) -> str:
        """Look once at the file. Returns its outcome: ``unchanged``, ``applied``, ``no-op`` (valid, nothing
        live changed) or ``refused``."""
        signature = config_signature(self.path)
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

    def _read_quietly(self) -> AppConfig | None:
        try:
            return load_config(self.path)
        except (RecommenderError, ValueError):
            return None

    def _apply(self, new: AppConfig) -> str:
        runtime = self.runtime
        current = runtime.snapshot.config  # only this thread changes the settings
        merged = merge_hot(current, new)
        cold = cold_changes(self._last_file, new) if self._last_file is not None else []
        self._last_file = new
        if cold:
            log.warning("configuration change needs a restart to apply: %s", ", ".join(cold))
        if merged == current:
            self._record("no-op", None, cold)
            return "no-op"

        follower = runtime.model_follower
        if follower is not None and (merged.experiments != current.experiments or merged.policy != current.policy):
            # A promotion publishes the arm's model, then ends the experiment in the file: swap in the newest
            # model first, so that no request is served under the new settings with the old weights.
            follower.check()

        def with_settings(snapshot: Snapshot) -> Snapshot:
            # The policy in force now: the model follower may have swapped in a new version meanwhile.
            policy = snapshot.policy
            if policy is not None and merged.policy.exploration != snapshot.config.policy.exploration:
                # Raises ExplorationChangeError (a ValueError) when VW cannot keep the weights.
                policy = policy.with_exploration(merged.policy.exploration)
            return Snapshot.of(merged, policy)

        applied = runtime.update(with_settings)
        log.info("configuration change applied: exploration %s, learning mode %s", applied.exploration(),
                 merged.trainer.mode)  # fmt: skip
        self._record("applied", None, cold)
        return "applied"

    def _record(self, outcome: str, error: str | None, cold: list[str] | None = None) -> None:
        self.runtime.metrics.reloads.labels(outcome).inc()
        details: dict[str, Any] = {"outcome": outcome, "error": error, "needs_restart": cold or []}
        self.runtime.last_reload = details
