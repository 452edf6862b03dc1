"""The policies a worker serves an experiment's arms with, rebuilt whenever the model or the experiment changes.

Per arm kind (``recommender.settings.experiments``):
- ``baseline``: no policy (None): the worker serves the first candidate with probability 1;
- ``policy`` sharing the configured policy's weights (only its ``exploration`` differs, and VW can apply it):
  the served policy, or ``policy.with_exploration(...)``: the same learned weights under that arm's
  exploration, so a new model version reaches the arm at the same swap;
- ``policy`` learned separately (``PolicyArm.learns_separately``): the current version of the arm's own
  namespace of the model store (a fresh model of its settings until its learner publishes one), swapped
  when that namespace's ``current`` moves (``ArmModels.refresh``, called by the model follower);
- ``pinned``: the named version from the model store, loaded once under the configured exploration and kept
  for the experiment's life.

Learning (``recommender.experiments.arm_learning``): every arm's decisions are logged with their exact
propensities (the baseline's with probability 1). The main trainer learns from all of them, and so does each
separately learned arm's own learner: valid off-policy data, and each learner sees all the traffic. A pinned
arm does not learn by definition.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from recommender.errors import RecommenderError
from recommender.experiments.arm_learning import arm_app_config
from recommender.experiments.assignment import Assigner
from recommender.policy.model_store import ModelStore, load_serving_model
from recommender.policy.policy import Policy
from recommender.settings.app import AppConfig
from recommender.settings.experiments import BaselineArm, Experiment, PinnedArm, PolicyArm
from recommender.settings.policy import ExplorationSettings, PolicyConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExperimentArms:
    """A running experiment as a worker serves it: the assigner and each arm's policy (None: the baseline)."""

    experiment: Experiment
    assign: Assigner
    policies: Mapping[str, Policy | None]
    served: Policy | None  # the main policy the shared ``policy`` arms were built from

    @property
    def name(self) -> str:
        return self.experiment.name

    @property
    def baselines(self) -> frozenset[str]:
        """The names of the baseline arms."""
        return frozenset(arm.name for arm in self.experiment.arms if isinstance(arm, BaselineArm))


@dataclass(frozen=True)
class _ArmModel:
    settings: PolicyConfig  # the arm's policy settings it was loaded under
    version: str | None  # None: a fresh model, nothing published in the arm's store yet
    policy: Policy


class ArmModels:
    """The models of pinned arms (loaded once per version and exploration) and of separately learned arms
    (the current version of each arm's store), shared by every snapshot the worker builds."""

    def __init__(self, store: ModelStore) -> None:
        self.store = store
        self._pinned: dict[tuple[str, str], Policy] = {}
        self._learned: dict[tuple[str, str], _ArmModel] = {}
        self._lock = threading.Lock()

    def pinned(self, version: str, exploration: ExplorationSettings) -> Policy:
        """The policy of ``version`` under ``exploration``; raises ModelStoreError when it cannot be loaded."""
        key = (version, exploration.model_dump_json())
        with self._lock:
            if key not in self._pinned:
                self._pinned[key] = self.store.load(version, exploration=exploration)
            return self._pinned[key]

    def learned(self, experiment: Experiment, arm: PolicyArm, config: AppConfig) -> Policy:
        """The separately learned arm's model: its store's current version under the arm's settings (kept
        until ``refresh`` sees a new one or the arm's settings change), or a fresh model of them."""
        key = (experiment.name, arm.name)
        arm_config = arm_app_config(config, arm)
        with self._lock:
            loaded = self._learned.get(key)
            if loaded is None or loaded.settings != arm_config.policy:
                policy, version = load_serving_model(self.store.arm_store(*key), arm_config, fresh_if_unloadable=True)
                loaded = _ArmModel(arm_config.policy, version.id if version is not None else None, policy)
                self._learned[key] = loaded
            return loaded.policy

    def version(self, experiment: str, arm: str) -> str | None:
        """The version of the arm's store this worker serves (None: a fresh model, or not a learned arm)."""
        loaded = self._learned.get((experiment, arm))
        return loaded.version if loaded is not None else None

    def refresh(self, experiment: Experiment | None) -> list[str]:
        """Load the new current versions of ``experiment``'s separately learned arms this worker serves;
        returns the names of the arms whose model changed (the caller rebuilds the snapshot's arms). A
        version that cannot be loaded is logged, not retried, and the arm keeps its model."""
        if experiment is None:
            return []
        changed = []
        for arm in experiment.arms:
            key = (experiment.name, arm.name)
            loaded = self._learned.get(key)
            if loaded is None:
                continue
            store = self.store.arm_store(*key)
            try:
                current = store.current_version()
            except RecommenderError as exc:
                log.error("experiment %s arm %s: cannot read its current model version: %s", *key, exc)
                continue
            if current is None or current == loaded.version:
                continue
            try:
                policy = store.load(current, exploration=loaded.settings.exploration)
            except RecommenderError as exc:
                log.error("experiment %s arm %s: model version %s not loaded, the arm keeps %s: %s", *key, current,
                          loaded.version or "its fresh model", exc)  # fmt: skip
                policy = loaded.policy
            with self._lock:
                self._learned[key] = _ArmModel(loaded.settings, current, policy)
            if policy is not loaded.policy:
                log.info("experiment %s arm %s: now serving model version %s", *key, current)
                changed.append(arm.name)
        return changed


def build_arms(
    config: AppConfig,
    served: Policy | None,
    models: ArmModels | None,
    previous: ExperimentArms | None = None,
) -> ExperimentArms | None:
    """The ``ExperimentArms`` of ``config.experiments.current`` around the ``served`` policy (None: no
    experiment runs).

    A shared arm's policy in ``previous`` is reused when neither the arm nor the served policy changed (no
    VW reload); learned and pinned arms come from ``models``. Raises ExplorationChangeError (an arm's
    exploration cannot apply to the served model), ModelStoreError (a pinned version cannot be loaded) or
    ValueError (there is no model store): the caller refuses the change.
    """
    experiment = config.experiments.current
    if experiment is None:
        return None
    same = previous is not None and previous.experiment == experiment and previous.served is served
    policies: dict[str, Policy | None] = {}
    for arm in experiment.arms:
        if isinstance(arm, BaselineArm):
            policies[arm.name] = None
        elif isinstance(arm, PinnedArm) or arm.learns_separately(config.policy):
            if models is None:
                raise ValueError(f"arm {arm.name!r} needs a model store and there is none")
            if isinstance(arm, PinnedArm):
                policies[arm.name] = models.pinned(arm.model_version, config.policy.exploration)
            else:
                policies[arm.name] = models.learned(experiment, arm, config)
        elif same and previous is not None:
            policies[arm.name] = previous.policies[arm.name]
        elif arm.exploration is None or served is None:
            policies[arm.name] = served
        else:
            policies[arm.name] = served.with_exploration(arm.exploration)
    if same and previous is not None and all(previous.policies[n] is p for n, p in policies.items()):
        return previous
    return ExperimentArms(experiment, Assigner.of(experiment), policies, served)
