"""``AppConfig``: the whole configuration, one typed section per part (each section's module in this package,
the feature store's in ``features.config``). Built by ``recommender.settings.loading``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator

from features.config import FeatureGroup, FeatureStoreConfig
from recommender.settings.events import BusConfig, JoinConfig
from recommender.settings.experiments import ExperimentsConfig
from recommender.settings.policy import PolicyConfig
from recommender.settings.service import ServiceConfig
from recommender.settings.trainer import TrainerConfig


class AppConfig(BaseModel):
    """The whole configuration. Each section is owned by the package that uses it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    features: FeatureStoreConfig
    policy: PolicyConfig = PolicyConfig()
    service: ServiceConfig = ServiceConfig()
    join: JoinConfig = JoinConfig()
    bus: BusConfig = BusConfig()
    trainer: TrainerConfig = TrainerConfig()
    experiments: ExperimentsConfig = ExperimentsConfig()

    @model_validator(mode="after")
    def _arms_fit_the_policy(self) -> AppConfig:
        # An experiment arm's own policy settings are layered on the policy section: check they combine.
        problem = self.experiments.arm_policy_problem(self.policy)
        if problem is not None:
            raise ValueError(problem)
        return self

    @property
    def user_group(self) -> FeatureGroup:
        """The feature group the policy reads users from (``features.groups[features.user_group]``)."""
        return self.features.groups[self.features.user_group]

    @property
    def item_group(self) -> FeatureGroup:
        """The feature group the policy reads candidate items from (``features.groups[features.item_group]``)."""
        return self.features.groups[self.features.item_group]
