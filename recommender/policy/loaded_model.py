"""One loaded VW model and what goes with it, shared by the Policies that serve its weights.

A ``Policy`` serves a ``LoadedModel`` under its own exploration settings. Usually one Policy holds one
LoadedModel; ``Policy.with_exploration`` of a change the policy applies to VW's pmf itself (SquareCB's
``gamma_scale``, ``recommender.policy.squarecb_scale``) gives a second Policy over the same LoadedModel: the
same workspace, weights, item cache, lock and version, so learning or saving through either is seen by both.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from recommender.policy.event_range import EventRange
from recommender.policy.item_cache import ItemCache
from recommender.policy.vw import ActionExample, VWModel
from recommender.settings.policy import ExplorationSettings, PolicyConfig


@dataclass(eq=False)
class LoadedModel:
    """A VW workspace and its state. ``exploration``: the settings VW's reduction was built with (the model's
    own; recorded with every saved version). ``lock`` guards the workspace, the cache and the counters:
    hold it for every VW call. ``holders``: the Policies not closed yet that serve it."""

    model: VWModel
    exploration: ExplorationSettings
    cache: ItemCache[ActionExample]
    base_version: str
    events_seen: EventRange | None = None
    learned_since_save: int = 0  # examples learned since ``base_version`` was loaded or saved
    lock: threading.Lock = field(default_factory=threading.Lock)
    holders: int = 1

    @classmethod
    def open(
        cls,
        config: PolicyConfig,
        exploration: ExplorationSettings,
        *,
        initial_model: str | Path | None = None,
        version: str = "",
        events_seen: EventRange | None = None,
        learned_since_save: int = 0,
    ) -> LoadedModel:
        """A new workspace whose reduction runs ``exploration`` with ``config``'s other settings: a fresh model,
        or the model file ``initial_model`` (then without ``--random_seed``: ``PolicyConfig.vw_args``). Raises
        PolicyError when VW refuses the arguments or the file."""
        config = config.model_copy(update={"exploration": exploration})
        args = config.vw_args(reload=initial_model is not None)
        model = VWModel(args, initial_model=initial_model)
        return cls(model, exploration, ItemCache(config.item_cache_size), version, events_seen, learned_since_save)

    @property
    def version(self) -> str:
        """The version id of the weights (``<id>+<n>`` after n examples learned in memory)."""
        return f"{self.base_version}+{self.learned_since_save}" if self.learned_since_save else self.base_version

    def hold(self) -> LoadedModel:
        """One more Policy serves this model (released by ``release``)."""
        with self.lock:
            self.holders += 1
        return self

    def release(self) -> None:
        """A Policy serving this model is closed; the last one closes the workspace and clears the cache."""
        with self.lock:
            self.holders -= 1
            if self.holders == 0:
                self.cache.clear()
                self.model.close()
