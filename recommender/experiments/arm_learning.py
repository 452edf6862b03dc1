"""Separately learned experiment arms: which arms learn on their own, and the settings they learn under.

A ``policy`` arm whose settings change what the weights learn (its own ``learning`` or ``interactions``, or
an exploration VW cannot run on the configured policy's weights) has its own learner
(``recommender.learning.arm_trainers``) and its own namespace of the model store (``ModelStore.arm_store``:
``<model_dir>/arms/<experiment>/<arm>``), whose versions the workers follow and swap like the main model's.

What each arm's learner learns from: **every logged event, of every arm, with its logged propensity** (the
baseline's with probability 1), not only its own arm's traffic. Each logged decision was drawn from a known
distribution, so VW's importance-weighted cb reductions learn from it without bias whatever arm chose it:
valid off-policy data. Learning only from its own traffic would give an arm with share s a fraction s of the
data, and the comparison would then measure, besides the settings, how much data each arm learned from.
Consequences: every separately learned arm learns as many events as the main model (its learner costs as
much CPU as the main trainer), and settings that count examples (SquareCB's gamma schedule, explore_first's
tau) count all logged events.
"""

from __future__ import annotations

from recommender.settings.app import AppConfig
from recommender.settings.experiments import PolicyArm


def arm_app_config(config: AppConfig, arm: PolicyArm) -> AppConfig:
    """``config`` with its ``policy`` section replaced by the arm's (``PolicyArm.policy_config``; the
    combination was validated when ``config`` was loaded)."""
    return config.model_copy(update={"policy": arm.policy_config(config.policy)})


def separately_learned_arms(config: AppConfig) -> dict[tuple[str, str], PolicyArm]:
    """(experiment, arm) -> arm, for the running experiment's arms with their own learner (empty: none)."""
    experiment = config.experiments.current
    if experiment is None:
        return {}
    return {(experiment.name, arm.name): arm for arm in experiment.separately_learned(config.policy)}
