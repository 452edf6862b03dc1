"""The learners of a running experiment's separately learned arms (``recommender.experiments.arm_learning``).

The main ``Trainer`` owns one ``ArmTrainers`` and runs it at the end of each of its cycles, in its own thread:
each separately learned arm gets a trainer of its own (the same class, the same event log, the arm's policy
settings) on the arm's namespace of the model store, with its own checkpoint, so the main trainer's exactly-
once guarantee holds per arm. Each arm learns every logged event with its propensity (the module docstring
of ``arm_learning`` says why) and publishes versions the workers' model follower swaps in per arm.

An arm that leaves the experiment (or an experiment that ends) has its learner closed; its published versions
stay in its store, and an arm of the same experiment and name that comes back continues from them. A failing
arm's cycle is logged and retried at the next cycle; it never stops the main model's learning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from recommender.errors import RecommenderError
from recommender.experiments.arm_learning import arm_app_config, separately_learned_arms
from recommender.policy.model_dir import ModelVersion
from recommender.policy.model_store import ModelStore
from recommender.settings.app import AppConfig
from recommender.settings.experiments import PolicyArm

log = logging.getLogger(__name__)

ArmKey = tuple[str, str]  # (experiment, arm)


class ArmReport(Protocol):
    @property
    def learned(self) -> int: ...

    @property
    def published(self) -> ModelVersion | None: ...


class ArmLearner(Protocol):
    """What ArmTrainers needs of a trainer (``recommender.learning.trainer.Trainer`` is one)."""

    version: str | None

    def run_once(self, *, publish: bool | None = None) -> ArmReport: ...

    def close(self) -> None: ...


# Builds an arm's learner on its store, following its settings (called with the arm's store and config).
LearnerFactory = Callable[[ModelStore, Callable[[], AppConfig]], ArmLearner]


class ArmTrainers:
    """One learner per separately learned arm of the experiment in ``settings()``, created and closed as the
    experiment changes; ``run_once`` runs a cycle of each."""

    def __init__(self, store: ModelStore, settings: Callable[[], AppConfig], make: LearnerFactory) -> None:
        self.store = store
        self.settings = settings
        self.make = make
        self.learners: dict[ArmKey, ArmLearner] = {}
        self.errors: dict[ArmKey, str] = {}
        self._arms: dict[ArmKey, PolicyArm] = {}

    def _arm_settings(self, key: ArmKey) -> Callable[[], AppConfig]:
        # The arm's settings as the experiment's are now (its exploration may be reloaded live).
        return lambda: arm_app_config(self.settings(), self._arms[key])

    def run_once(self, config: AppConfig, *, publish: bool | None = None) -> dict[ArmKey, ArmReport]:
        """A cycle of every separately learned arm of ``config`` (``publish`` as ``Trainer.run_once``)."""
        wanted = separately_learned_arms(config)
        for key in [k for k in self.learners if k not in wanted]:
            log.info("experiment %s arm %s is no longer learned separately: its learner stops", *key)
            self.learners.pop(key).close()
            self.errors.pop(key, None)
        self._arms.update(wanted)
        reports: dict[ArmKey, ArmReport] = {}
        for key in wanted:
            try:
                if key not in self.learners:
                    self.learners[key] = self.make(self.store.arm_store(*key), self._arm_settings(key))
                reports[key] = self.learners[key].run_once(publish=publish)
                self.errors.pop(key, None)
            except (RecommenderError, OSError) as exc:  # the main model and the other arms keep learning
                self.errors[key] = str(exc)
                log.error("experiment %s arm %s: learning cycle failed: %s", *key, exc)
                continue
            if (published := reports[key].published) is not None:
                log.info("experiment %s arm %s: published model version %s", *key, published.id)
        return reports

    def close(self) -> None:
        for learner in self.learners.values():
            learner.close()
        self.learners.clear()
