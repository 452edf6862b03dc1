"""A declared space of learning settings to search, as a grid or a random sample with a budget.

A space maps dotted keys of the ``policy`` section to the values to try, e.g.::

    mode: random          # grid (every combination) | random (``budget`` distinct combinations, seeded)
    budget: 12
    seed: 0
    space:                # one mapping, or a list of them (their grids are joined: conditional spaces)
      - exploration.algorithm: [epsilon_greedy]
        exploration.epsilon: [0.01, 0.05, 0.2]
        learning.learning_rate: [0.1, 0.5, 2.0]
      - exploration.algorithm: [squarecb]
        exploration.gamma_scale: [10, 100]
        interactions: [[[user, item]], [[user, item], [context, item]]]   # drop or add namespace pairs
        bits: [16, 18]

Keys and values are those of ``configs/*.yaml``'s policy section (exploration algorithm and parameters,
``learning.learning_rate``, ``learning.power_t``, ``learning.cb_type``, ``interactions``, ``bits``). From
the command line, ``--search KEY=V1|V2|...`` adds one key to a single grid (values read as YAML).
A combination that is not a valid policy section (say ``cb_type: ips`` with SquareCB) is skipped and
counted in ``SearchSpace.expand``'s result.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from recommender.settings.policy import PolicyConfig
from simulators.errors import TargetSpecError
from simulators.replay import ReplaySetting, make_setting

MAX_POINTS = 10_000


@dataclass(frozen=True)
class SearchSpace:
    """``grids``: mappings of dotted key -> values; ``mode`` grid or random; ``budget`` for random."""

    grids: tuple[Mapping[str, tuple[Any, ...]], ...] = ()
    mode: Literal["grid", "random"] = "grid"
    budget: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("grid", "random"):
            raise TargetSpecError(f"search mode must be grid or random, got {self.mode!r}")
        if self.mode == "random" and (self.budget is None or self.budget < 1):
            raise TargetSpecError("a random search needs a budget >= 1")
        for grid in self.grids:
            for key, values in grid.items():
                if not values:
                    raise TargetSpecError(f"search space key {key!r} has no values")

    @property
    def empty(self) -> bool:
        return not self.grids

    def points(self) -> list[dict[str, Any]]:
        """Every combination of every grid (in order), or a random ``budget`` of them."""
        points: list[dict[str, Any]] = []
        for grid in self.grids:
            keys = list(grid)
            for combo in itertools.product(*(grid[k] for k in keys)):
                points.append(dict(zip(keys, combo, strict=True)))
                if len(points) > MAX_POINTS:
                    raise TargetSpecError(f"the search space has more than {MAX_POINTS} points; use mode random")
        if self.mode == "random" and self.budget is not None and self.budget < len(points):
            rng = np.random.default_rng(self.seed)
            picked = sorted(rng.choice(len(points), size=self.budget, replace=False).tolist())
            points = [points[i] for i in picked]
        return points

    def expand(self, base: PolicyConfig) -> tuple[list[ReplaySetting], list[str]]:
        """The settings of the space over ``base``, and why invalid combinations were skipped."""
        settings, skipped = [], []
        for point in self.points():
            try:
                settings.append(make_setting(base, point))
            except TargetSpecError as exc:
                skipped.append(str(exc))
        return settings, skipped


def parse_search_flags(flags: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """``["exploration.epsilon=0.01|0.1", ...]`` -> {"exploration.epsilon": (0.01, 0.1), ...}."""
    grid: dict[str, tuple[Any, ...]] = {}
    for flag in flags:
        key, eq, values = flag.partition("=")
        if not eq or not key.strip() or not values.strip():
            raise TargetSpecError(f"--search {flag!r} is not KEY=V1|V2|...")
        try:
            grid[key.strip()] = tuple(yaml.safe_load(v.strip()) for v in values.split("|"))
        except yaml.YAMLError as exc:
            raise TargetSpecError(f"--search {flag!r}: {exc}") from exc
    return grid


def load_search_space(
    path: str | Path | None,
    flags: Sequence[str] = (),
    *,
    budget: int | None = None,
    mode: str | None = None,
    seed: int | None = None,
) -> SearchSpace:
    """A space from a YAML file (see the module docstring) and/or ``--search`` flags; the keyword arguments
    override the file's ``budget``/``mode``/``seed`` (a ``budget`` alone means a random search). Raises
    TargetSpecError naming the file and key."""
    document: dict[str, Any] = {}
    if path is not None:
        try:
            document = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise TargetSpecError(f"search space {path}: {exc}") from exc
        if not isinstance(document, dict):
            raise TargetSpecError(f"search space {path}: expected a mapping with a 'space' key")
        unknown = sorted(set(document) - {"mode", "budget", "seed", "space"})
        if unknown:
            raise TargetSpecError(f"search space {path}: unknown key {unknown[0]!r} (mode, budget, seed, space)")
    raw = document.get("space", [])
    raw = [raw] if isinstance(raw, dict) else raw
    if not isinstance(raw, list) or not all(isinstance(g, dict) for g in raw):
        raise TargetSpecError(f"search space {path}: 'space' must be a mapping or a list of mappings")
    grids: list[Mapping[str, tuple[Any, ...]]] = []
    for grid in raw:
        for key, values in grid.items():
            if not isinstance(values, list):
                raise TargetSpecError(f"search space {path}: {key}: expected a list of values")
        grids.append({str(k): tuple(v) for k, v in grid.items()})
    if flags:
        grids.append(parse_search_flags(flags))
    chosen_budget = budget if budget is not None else document.get("budget")
    # A budget given on the command line asks for a random search, whatever the file's mode.
    chosen_mode = mode or ("random" if budget is not None else None) or document.get("mode")
    chosen_mode = chosen_mode or ("random" if chosen_budget is not None else "grid")
    return SearchSpace(tuple(grids), chosen_mode, chosen_budget, seed if seed is not None else document.get("seed", 0))
