"""Promoting a separately learned arm: its current model version becomes a new version of the main store.

``promote_arm_model`` is step 1 of ``recommender experiment promote ARM`` for an arm with its own model; the
command then writes the arm's settings into the ``policy`` section and ends the experiment (step 2), and makes
sure the promoted version is still the main store's current one (step 3). Why this order:

- While the experiment runs, the arm's own traffic is served by the arm's own store, never by the main model;
  the main model serves everyone only once the config has ended the experiment. Publishing first means that
  when a worker reloads the config, the main model it swaps to is already the arm's weights: the arm's
  settings are never served with the old main weights. Writing the config first would, for up to one model
  follow interval, serve everyone the arm's exploration on the old main weights (trained under other settings).
- The cost of this order: between the publish and the config reload (``service.config_reload_seconds``), arms
  that share the main model serve the promoted weights under their own exploration (or under the weights' own
  when VW cannot apply theirs). The promoted arm's users see no change at all.
- The version is published with the arm's checkpoint (its position in the event log, which it learned in full,
  like the main trainer): the main trainer follows the new ``current`` with that checkpoint
  (``Trainer._follow_current``) and continues learning from the arm's weights without learning an event twice.
- A main trainer's cycle that began before the publish may still publish its own lineage over it; step 3
  (``ensure_current``) re-points ``current`` at the promoted version, which that trainer then follows.
"""

from __future__ import annotations

from recommender.errors import ModelNotFoundError
from recommender.policy.model_dir import ModelVersion
from recommender.policy.model_store import ModelStore, open_model_store
from recommender.settings.app import AppConfig
from recommender.settings.experiments import PolicyArm


def arm_model_store(config: AppConfig, experiment: str, arm: str) -> ModelStore:
    """The arm's namespace of the configured model store (``<policy.model_dir>/arms/<experiment>/<arm>``)."""
    return open_model_store(config).arm_store(experiment, arm)


def promote_arm_model(config: AppConfig, experiment: str, arm: PolicyArm) -> ModelVersion:
    """Publish the arm's current model version into the main store as its current version, with the arm's
    event range and checkpoint; returns the new main version (the arm's weights; VW's save after a load is not
    byte-identical, so its id, a content hash, differs from the arm's version id).

    Raises ModelNotFoundError when the arm has published nothing yet, ModelStoreError / PolicyError when its
    version cannot be loaded (checksum, schema)."""
    store = arm_model_store(config, experiment, arm.name)
    current = store.current_version()
    if current is None:
        raise ModelNotFoundError(f"arm {arm.name!r} of experiment {experiment!r} has published no model version "
                                 f"yet (in {store.root})")  # fmt: skip
    source = store.version(current)
    policy = store.load(current)
    try:
        return open_model_store(config).publish(policy, event_range=source.event_range, checkpoint=source.checkpoint)
    finally:
        policy.close()


def ensure_current(config: AppConfig, version_id: str) -> bool:
    """Make ``version_id`` the main store's current version again if something else was published over it;
    True when it had to (a main trainer's cycle that straddled the publish)."""
    store = open_model_store(config)
    if store.current_version() == version_id:
        return False
    store.rollback(version_id)
    return True
