"""The policies a worker serves an experiment's arms with, rebuilt whenever the model or the experiment changes.

Per arm kind (``recommender.settings.experiments``):
- ``baseline``: no policy (None): the worker serves the first candidate with probability 1;
- ``policy``: the served policy, or, with its own ``exploration``, ``policy.with_exploration(...)``: the same
  learned weights under that arm's exploration, so a new model version reaches the arm at the same swap;
- ``pinned``: the named version from the model store, loaded once under the configured exploration and kept
  for the experiment's life (``PinnedModels`` caches it across snapshots).

Learning: every arm's decisions are logged with their exact propensities (the baseline's with probability 1),
and the one trainer learns from all of them. That is valid off-policy data for the shared model (VW's
importance-weighted cb reductions use the logged probability), and more sample-efficient than each arm learning
only from its own traffic: the ``policy`` arms share the learned weights and differ in how they explore. A
pinned arm does not learn by definition.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

from recommender.experiments.assignment import Assigner
from recommender.policy.model_store import ModelStore
from recommender.policy.policy import Policy
from recommender.settings.experiments import BaselineArm, Experiment, PinnedArm
from recommender.settings.policy import ExplorationSettings


@dataclass(frozen=True)
class ExperimentArms:
    """A running experiment as a worker serves it: the assigner and each arm's policy (None: the baseline)."""

    experiment: Experiment
    assign: Assigner
    policies: Mapping[str, Policy | None]
    served: Policy | None  # the main policy the ``policy`` arms were built from

    @property
    def name(self) -> str:
        return self.experiment.name

    @property
    def baselines(self) -> frozenset[str]:
        """The names of the baseline arms."""
        return frozenset(arm.name for arm in self.experiment.arms if isinstance(arm, BaselineArm))


class PinnedModels:
    """Pinned model versions loaded once per (version, exploration) and shared by every later snapshot."""

    def __init__(self, store: ModelStore) -> None:
        self.store = store
        self._loaded: dict[tuple[str, str], Policy] = {}
        self._lock = threading.Lock()

    def get(self, version: str, exploration: ExplorationSettings) -> Policy:
        """The policy of ``version`` under ``exploration``; raises ModelStoreError when it cannot be loaded."""
        key = (version, exploration.model_dump_json())
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = self.store.load(version, exploration=exploration)
            return self._loaded[key]


def build_arms(
    experiment: Experiment | None,
    served: Policy | None,
    exploration: ExplorationSettings,
    pinned: PinnedModels | None,
    previous: ExperimentArms | None = None,
) -> ExperimentArms | None:
    """The ``ExperimentArms`` of ``experiment`` around the ``served`` policy (None: no experiment runs).

    ``previous`` is reused as is when neither the experiment nor the served policy changed. Raises
    ExplorationChangeError (an arm's exploration cannot apply to the served model) or ModelStoreError (a pinned
    version cannot be loaded, or there is no model store): the caller refuses the change.
    """
    if experiment is None:
        return None
    if previous is not None and previous.experiment == experiment and previous.served is served:
        return previous
    policies: dict[str, Policy | None] = {}
    for arm in experiment.arms:
        if isinstance(arm, BaselineArm):
            policies[arm.name] = None
        elif isinstance(arm, PinnedArm):
            if pinned is None:
                raise ValueError(f"arm {arm.name!r} pins model {arm.model_version!r} but there is no model store")
            policies[arm.name] = pinned.get(arm.model_version, exploration)
        elif arm.exploration is None or served is None:
            policies[arm.name] = served
        else:
            policies[arm.name] = served.with_exploration(arm.exploration)
    return ExperimentArms(experiment, Assigner.of(experiment), policies, served)
