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

Speed: the log is converted once (``simulators.replay_log.ReplayLog``, one file per partition) and each
setting runs in VW's C++ driver over those files in order (``recommender.policy.vw.run_driver``), the pmfs
read back with ``-p``: no Python per row per setting. ``replay_probs`` is a pure function of (files,
arguments): it runs the same on any worker that sees the files (``simulators.replay_tasks``).
"""

from __future__ import annotations

import math
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from recommender.errors import PolicyError
from recommender.policy.vw import read_action_probs, run_driver
from recommender.settings.loading import format_validation_error
from recommender.settings.policy import NAMESPACES, PolicyConfig
from simulators.batch_scheduling import batch_scheduling
from simulators.data import ActionDist
from simulators.errors import BanditDataError, TargetSpecError
from simulators.replay_cache import cache_bits, ensure_caches
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


def replay_probs(data: str | Path | Sequence[str | Path], counts: np.ndarray, args: list[str]) -> np.ndarray:
    """Run VW with ``args`` over the converted log ``data`` (a file, or partition files in row order):
    (n, K) progressive-validation pmfs by candidate.

    VW reads the partitions' binary caches (``simulators.replay_cache``: written once per partition and
    ``-b`` bits, by the first replay that needs one if no one built it before), in order, in one process, so
    the learner carries its state from one partition to the next exactly as over one file; the pmfs are
    those of the text, to the last digit. Arguments that change how VW parses (``cache_bits`` None), and
    partitions in a directory no cache can be written to, read the text instead (several partitions
    streamed into one VW through a named pipe). VW runs ``SCHED_BATCH`` (``simulators.batch_scheduling``:
    its two threads hand over in batches when they share a core; no effect on the output). A pure function
    of its arguments (the files are read by path), so it runs the same on any worker.
    Raises TargetSpecError when VW refuses the setting, BanditDataError when a partition cannot be read.
    """
    paths = [Path(data)] if isinstance(data, str | Path) else [Path(p) for p in data]
    if not paths:
        raise BanditDataError("no partition files to replay")
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise BanditDataError(f"partition file {missing[0]} does not exist")
    bits = cache_bits(args)
    with tempfile.TemporaryDirectory(prefix="replay-") as tmp, batch_scheduling():
        predictions = Path(tmp) / "predictions.txt"
        try:
            caches = None if bits is None else ensure_caches(paths, bits)
            if caches is not None:
                run_driver(args, None, predictions, cache_files=caches)
            elif len(paths) == 1:
                run_driver(args, paths[0], predictions)
            else:
                _run_over_partitions(args, paths, Path(tmp) / "partitions.fifo", predictions)
            return read_action_probs(predictions, counts)
        except PolicyError as exc:
            raise TargetSpecError(f"replay with {' '.join(args)!r}: {exc}") from exc


def _run_over_partitions(args: list[str], paths: list[Path], fifo: Path, predictions: Path) -> None:
    """``run_driver`` over the concatenation of ``paths``, fed through the named pipe ``fifo`` by ``cat``.

    The writer is a child process (it opens the pipe itself): VW runs in this thread holding the GIL, so a
    Python writer thread could not run while VW waits for data.
    """
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", 'exec cat "$@" > "$0"', str(fifo), *map(str, paths)])
    try:
        run_driver(args, fifo, predictions)
    except BaseException:
        # VW refusing its arguments never opens the pipe: the writer would wait on it forever.
        writer.kill()
        writer.wait()
        raise
    code = writer.wait()  # VW read to the end: the writer has closed the pipe and is exiting
    if code != 0:
        raise BanditDataError(f"reading the partitions {paths[0].parent} failed (exit {code})")


def replay_setting(log: ReplayLog, setting: ReplaySetting) -> ActionDist:
    """The setting's progressive-validation distributions on ``log``'s rows, as a row-position ActionDist."""
    probs = replay_probs(log.paths, log.counts, setting.vw_args())
    return as_action_dist(log, probs, setting.label)


def as_action_dist(log: ReplayLog, probs: np.ndarray, name: str) -> ActionDist:
    """(n, k) pmfs over each row's offered candidates (VW's action order) -> an ActionDist over the log's
    candidate axis (the offered columns of ``candidate_mask``, in order; 0 elsewhere)."""
    mask = log.bandit.candidate_mask
    full = np.zeros((log.n_rows, log.bandit.n_actions))
    full[mask] = probs[np.arange(probs.shape[1])[None, :] < log.counts[:, None]]
    return ActionDist(probs=full[:, :, None], name=name, row_position=True)


def first_candidate(log: ReplayLog) -> ActionDist:
    """The baseline: always the first candidate as sent (Personalizer's baseline), the first one the slot
    offers on a lower slot."""
    probs = np.zeros((log.n_rows, log.bandit.n_actions))
    probs[np.arange(log.n_rows), np.argmax(log.bandit.candidate_mask, axis=1)] = 1.0
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
