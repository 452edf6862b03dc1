"""Replay of learning settings over a log: counterfactual progressive validation.

For a setting (a ``PolicyConfig``), a fresh learner goes through the logged decisions in time order. At
each decision, before learning from it, it scores the logged candidates under the setting's exploration
and records the probability it gives each one; then it learns from the decision (the logged action, cost
``cost_from_reward(reward)``, the logged probability). The recorded distributions are a target policy
``pi_t`` for each row t, and the usual off-policy estimators (``simulators.estimators``: one ``OPEInputs``,
per-row terms) estimate

    V(setting) = (1/n) sum_t E_{a ~ pi_t(.|x_t)} [ r(x_t, a) ],

the value of serving the setting's successive policies over the log's period while it learns from the
logged stream. ``pi_t`` depends on rows before t only, so the IPS terms w_t r_t are a martingale-difference
sequence around V and the normal interval applies (the tests check its coverage against the exact V of a
synthetic world).

Speed: the log is converted once (``simulators.replay_log.ReplayLog``) and each setting runs in VW's C++
driver over that file (``recommender.policy.vw.run_driver``), the pmfs read back with ``-p``: no Python per
row per setting. ``replay_setting`` is a pure function of (file, arguments): it can run on any worker that
sees the file (``simulators.dask_backend.replay_on_cluster``).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from recommender.errors import PolicyError
from recommender.policy.vw import read_action_probs, run_driver
from recommender.settings.loading import format_validation_error
from recommender.settings.policy import NAMESPACES, PolicyConfig
from simulators.data import ActionDist
from simulators.errors import TargetSpecError
from simulators.replay_log import ReplayLog
from simulators.vw_targets import apply_overrides, parse_overrides


@dataclass(frozen=True)
class ReplaySetting:
    """A learning setting to replay: ``label`` names it in reports; ``config`` is the policy section it runs
    (always as ``cb_explore_adf``: a ``ccb`` configuration is replayed as ``cb`` on the replayed slot);
    ``overrides`` are the dotted keys that made it from the base configuration (empty: the base itself);
    ``ignore`` lists namespaces VW drops (``user``, ``context``, ``item``; feature importance)."""

    label: str
    config: PolicyConfig
    overrides: Mapping[str, Any] = field(default_factory=dict)
    ignore: tuple[str, ...] = ()

    def vw_args(self) -> list[str]:
        args = self.config.model_copy(update={"mode": "cb"}).vw_args()
        for namespace in self.ignore:
            args += ["--ignore", NAMESPACES[namespace][0]]
        return args


def make_setting(base: PolicyConfig, overrides: Mapping[str, Any] | str, label: str | None = None) -> ReplaySetting:
    """``base`` with ``overrides`` applied (a mapping of dotted keys, or the ``vw:`` target syntax
    ``a.b=1,c=x``). Raises TargetSpecError naming the key when the result is not a valid policy section."""
    text = overrides if isinstance(overrides, str) else None
    parsed = parse_overrides(overrides) if isinstance(overrides, str) else dict(overrides)
    name = label or (text.strip() if text and text.strip() else None) or _label(parsed)
    document = apply_overrides(base.model_dump(by_alias=True), parsed)
    if document.get("mode") == "ccb":
        # A ccb section is replayed as cb on one slot: its slot crosses have no slot namespace to act on.
        document["interactions"] = [i for i in document.get("interactions", ()) if "slot" not in i]
    document["mode"] = "cb"
    try:
        config = PolicyConfig.model_validate(document)
    except ValidationError as exc:
        raise TargetSpecError(f"setting {name!r}: {format_validation_error('policy', exc)}") from exc
    return ReplaySetting(label=name, config=config, overrides=parsed)


def _label(overrides: Mapping[str, Any]) -> str:
    if not overrides:
        return "default"
    return ",".join(f"{k}={_scalar(v)}" for k, v in overrides.items())


def _scalar(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ",".join(_scalar(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def replay_probs(data: str | Path, counts: np.ndarray, args: list[str]) -> np.ndarray:
    """Run VW with ``args`` over the converted log ``data``: (n, K) progressive-validation pmfs by candidate.

    A pure function of its arguments (the file is read by path), so it runs the same on any worker.
    Raises TargetSpecError when VW refuses the setting.
    """
    with tempfile.TemporaryDirectory(prefix="replay-") as tmp:
        predictions = Path(tmp) / "predictions.txt"
        try:
            run_driver(args, data, predictions)
            return read_action_probs(predictions, counts)
        except PolicyError as exc:
            raise TargetSpecError(f"replay with {' '.join(args)!r}: {exc}") from exc


def replay_setting(log: ReplayLog, setting: ReplaySetting) -> ActionDist:
    """The setting's progressive-validation distributions on ``log``'s rows, as a row-position ActionDist."""
    probs = replay_probs(log.path, log.counts, setting.vw_args())
    return as_action_dist(log, probs, setting.label)


def as_action_dist(log: ReplayLog, probs: np.ndarray, name: str) -> ActionDist:
    """(n, k) pmfs over each row's candidates -> an ActionDist over the log's candidate axis."""
    full = np.zeros((log.n_rows, log.bandit.n_actions))
    full[:, : probs.shape[1]] = probs
    return ActionDist(probs=full[:, :, None], name=name, row_position=True)


def first_candidate(log: ReplayLog) -> ActionDist:
    """The baseline: always the first candidate as sent (Personalizer's baseline)."""
    probs = np.zeros((log.n_rows, log.bandit.n_actions))
    probs[:, 0] = 1.0
    return ActionDist(probs=probs[:, :, None], name="baseline", row_position=True)


def uniform(log: ReplayLog) -> ActionDist:
    """Every candidate of the row equally likely."""
    mask = log.bandit.candidate_mask.astype(np.float64)
    return ActionDist(probs=(mask / mask.sum(axis=1, keepdims=True))[:, :, None], name="uniform", row_position=True)


def time_bins(n: int, bins: int) -> list[np.ndarray]:
    """Row indices of ``bins`` consecutive, near-equal chunks of 0..n-1 (fewer when n is small)."""
    bins = max(1, min(bins, n // 20 if n >= 40 else 1))
    return [chunk for chunk in np.array_split(np.arange(n), bins) if chunk.size]


def chunk_means(values: np.ndarray, chunks: list[np.ndarray]) -> list[float]:
    """Mean of ``values`` over each chunk (NaN for an empty one)."""
    return [float(np.mean(values[c])) if c.size else math.nan for c in chunks]
