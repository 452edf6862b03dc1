"""What a decision is made from, once a /v1/score request is parsed and its features are read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from recommender.records import FeatureRow


@dataclass(frozen=True)
class DecisionInput:
    """The inputs every decision maker (the policy, the apprentice baseline, the uniform fallback) takes.

    ``candidate_ids`` and ``candidate_features`` are aligned, excluded items already removed; ``slots`` is
    None for a single-slot page.
    """

    event_id: str
    timestamp: datetime
    user_id: str | None
    user_features: FeatureRow
    context: FeatureRow
    candidate_ids: Sequence[str]
    candidate_features: Sequence[FeatureRow]
    slots: int | None
    deferred: bool

    def as_arguments(self) -> dict[str, Any]:
        """The fields as keyword arguments (``Policy.decide`` takes them so)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def decision_fields(self) -> dict[str, Any]:
        """The fields a ``Decision`` copies from its input (all but ``slots``), sequences as tuples."""
        return {
            "event_id": self.event_id,
            "timestamp": self.timestamp,
            "user_id": self.user_id,
            "user_features": self.user_features,
            "context": self.context,
            "candidate_ids": tuple(self.candidate_ids),
            "candidate_features": tuple(self.candidate_features),
            "deferred": self.deferred,
        }
