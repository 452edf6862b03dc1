"""Target policies backed by Vowpal Wabbit, through the project's policy module (``recommender.policy.policy``).

- ``SavedModelTarget`` (``model:STORE[@VERSION]``): a model version from a model store (the current one
  when VERSION is left out), scored on each logged decision's context and candidates with
  ``Policy.predict_pmf``; evaluated on every row.
- ``TrainedVWTarget`` (``vw:OVERRIDES[;train_fraction=F]``): a fresh policy built from the configured
  policy section with OVERRIDES applied, trained (``Policy.learn``) on the first F of the log's decisions
  in time order and evaluated on the rest. OVERRIDES is ``default`` (the configuration as is) or
  comma-separated ``dotted.key=value`` pairs over the ``policy`` section, values read as YAML scalars, e.g.
  ``vw:exploration.epsilon=0.05,learning.learning_rate=0.1`` or
  ``vw:exploration.algorithm=softmax,exploration.lambda=10``. (A policy is built from a validated
  ``PolicyConfig``, not raw VW arguments, so the evaluated policy is exactly one the service could run.)

Both replay the raw features of our event log (``LoggedBandit.decisions``). ``predict_pmf`` gives the
slot-0 distribution, so on multi-slot logs only slot-0 rows are evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError

from features.config import FeatureGroup
from recommender.errors import ModelStoreError, PolicyError, RecommenderError
from recommender.policy.model_store import ModelStore
from recommender.policy.policy import Policy
from recommender.settings.loading import DEFAULT_CONFIG_PATH, format_validation_error, load_config
from recommender.settings.policy import PolicyConfig
from simulators.data import ActionDist, LoggedBandit
from simulators.errors import TargetSpecError, TargetUnavailableError
from simulators.targets import AppliedTarget


def _slot_zero(log: LoggedBandit, name: str) -> LoggedBandit:
    if log.decisions is None:
        raise TargetUnavailableError(
            f"target {name} re-scores logged decisions and needs their raw features, which only our event "
            f"log keeps (this log is {log.source or 'not one'})"
        )
    return log if log.n_positions == 1 else log.subset(log.position == 0)


def _score(policy: Policy, log: LoggedBandit, name: str) -> ActionDist:
    """Each row's target distribution: the policy's pmf over its decision's candidates."""
    probs = np.zeros((log.n_rounds, log.n_actions))
    cache: dict[int, np.ndarray] = {}
    for row, round_id in enumerate(log.round_id):
        key = int(round_id)
        if key not in cache:
            decision = log.decisions[key].decision  # type: ignore[index]
            try:
                cache[key] = policy.predict_pmf(
                    decision.user_features,
                    decision.context,
                    decision.candidate_features,
                    candidate_ids=decision.candidate_ids,
                )
            except RecommenderError as exc:
                raise TargetSpecError(f"target {name}: cannot score event {decision.event_id}: {exc}") from exc
        pmf = cache[key]
        probs[row, : pmf.shape[0]] = pmf
    return ActionDist(probs=probs[:, :, None], name=name, row_position=True)


@dataclass(frozen=True)
class SavedModelTarget:
    """A saved VW model: model store at ``store``, ``version`` (None: the store's current version)."""

    store: Path
    version: str | None = None

    @property
    def name(self) -> str:
        return f"model:{self.store}" + (f"@{self.version}" if self.version else "")

    def apply(self, log: LoggedBandit) -> AppliedTarget:
        rows = _slot_zero(log, self.name)
        try:
            policy = ModelStore(self.store).load(self.version)
        except ModelStoreError as exc:
            raise TargetUnavailableError(f"target {self.name}: {exc}") from exc
        try:
            return AppliedTarget(log=rows, dist=_score(policy, rows, self.name))
        finally:
            policy.close()


def parse_overrides(text: str) -> dict[str, Any]:
    """``a.b=1,c=x`` -> {"a.b": 1, "c": "x"} (values as YAML: scalars, or flow collections such as
    ``interactions=[[any, any]]``, whose commas do not separate overrides); ``default`` or empty -> {}."""
    text = text.strip()
    if text in ("", "default"):
        return {}
    out: dict[str, Any] = {}
    for part in _top_level_parts(text):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise TargetSpecError(f"policy override {part.strip()!r} is not KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(value.strip())
        except yaml.YAMLError as exc:
            raise TargetSpecError(f"policy override {part.strip()!r}: {exc}") from exc
    return out


def _top_level_parts(text: str) -> list[str]:
    """``text`` split at the commas outside brackets and braces."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += (char in "[{") - (char in "]}")
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def apply_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    document = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in base.items()}
    # An algorithm change comes first: another algorithm takes other settings, so its block starts afresh.
    for key, value in sorted(overrides.items(), key=lambda kv: kv[0] != "exploration.algorithm"):
        path = key.split(".")
        if path == ["exploration", "algorithm"]:
            document["exploration"] = {"algorithm": value}
            continue
        node = document
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise TargetSpecError(f"policy override {key!r}: {part} is not a section")
        node[path[-1]] = value
    return document


@dataclass(frozen=True)
class TrainedVWTarget:
    """A policy configuration trained on a prefix of the log and evaluated on the remainder.

    ``overrides`` (dotted keys of the ``policy`` section) apply over ``policy_config`` (None: the
    defaults); ``user_group``/``item_group`` are the feature groups examples are built with (None: the
    ones of the default configuration file).
    """

    overrides: Mapping[str, Any] = field(default_factory=dict)
    train_fraction: float = 0.5
    policy_config: PolicyConfig | None = None
    user_group: FeatureGroup | None = None
    item_group: FeatureGroup | None = None
    label: str = "default"

    def __post_init__(self) -> None:
        if not 0.0 < self.train_fraction < 1.0 or math.isnan(self.train_fraction):
            raise TargetSpecError(f"train_fraction must lie in (0, 1), got {self.train_fraction}")

    @property
    def name(self) -> str:
        return f"vw:{self.label};train_fraction={self.train_fraction:g}"

    def _build_policy(self) -> Policy:
        base = self.policy_config
        users, items = self.user_group, self.item_group
        if base is None or users is None or items is None:
            app = load_config(DEFAULT_CONFIG_PATH)
            base = base or app.policy
            users = users or app.features.groups[app.features.user_group]
            items = items or app.features.groups[app.features.item_group]
        document = apply_overrides(base.model_dump(by_alias=True), self.overrides)
        try:
            config = PolicyConfig.model_validate(document)
        except ValidationError as exc:
            raise TargetSpecError(f"target {self.name}: {format_validation_error('policy', exc)}") from exc
        try:
            return Policy.create(config, users, items)
        except PolicyError as exc:
            raise TargetSpecError(f"target {self.name}: {exc}") from exc

    def apply(self, log: LoggedBandit) -> AppliedTarget:
        rows = _slot_zero(log, self.name)
        n_decisions = len(rows.decisions)  # type: ignore[arg-type]
        cut = int(math.floor(self.train_fraction * n_decisions))
        if cut < 1 or cut >= n_decisions:
            raise TargetSpecError(f"target {self.name}: {n_decisions} decisions leave no training or test part")
        policy = self._build_policy()
        try:
            # Decisions are in time order (the reader sorts by timestamp): train on the past only.
            policy.learn(rows.decisions[:cut])  # type: ignore[index]
            held_out = rows.subset(rows.round_id >= cut)
            return AppliedTarget(log=held_out, dist=_score(policy, held_out, self.name))
        except PolicyError as exc:
            raise TargetSpecError(f"target {self.name}: {exc}") from exc
        finally:
            policy.close()
