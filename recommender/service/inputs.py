"""What a decision is made from, once a /v1/score request is parsed and its features are read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from recommender.records import Decision, FeatureRow


@dataclass(frozen=True)
class DecisionInput:
    """The inputs every decision maker (the policy, the apprentice baseline, the uniform fallback) takes.

    Validated at the HTTP edge (``recommender.service.scoring``), so the decision makers do not check them
    again: ``event_id`` a valid record id, ``timestamp`` UTC, ``candidate_ids`` non-empty, unique and
    aligned with ``candidate_features`` (excluded items already removed), ``slots`` None for a single-slot
    page, else within the candidates and allowed by the policy in force.
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
    # The page's names of its slots (Personalizer's slot ids), recorded on the decision; () names none.
    slot_names: tuple[str, ...] = ()
    # The running experiment and the user's arm (``Runtime.decide`` sets them), recorded on the decision; None
    # outside experiments. Inputs rather than fields stamped on afterwards: the Decision is built (and its
    # outcome checked) once.
    experiment: str | None = None
    arm: str | None = None

    def decision(
        self,
        *,
        pmfs: tuple[tuple[float, ...], ...],
        chosen: tuple[int, ...],
        ranking: tuple[int, ...],
        model_version: str,
        exploration: Mapping[str, object],
        degraded: bool,
    ) -> Decision:
        """The Decision made from this input with the given outcome (its inputs are not checked again)."""
        return Decision(
            event_id=self.event_id,
            timestamp=self.timestamp,
            user_id=self.user_id,
            user_features=self.user_features,
            context=self.context,
            candidate_ids=tuple(self.candidate_ids),
            candidate_features=tuple(self.candidate_features),
            pmfs=pmfs,
            chosen=chosen,
            ranking=ranking,
            model_version=model_version,
            exploration=exploration,
            degraded=degraded,
            deferred=self.deferred,
            experiment=self.experiment,
            arm=self.arm,
            slot_names=self.slot_names,
            inputs_checked=True,  # at the HTTP edge
        )
