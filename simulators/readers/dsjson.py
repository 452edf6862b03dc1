"""Reading Vowpal Wabbit DSJSON decision logs (what Azure Personalizer and VW's online services write).

One JSON object per line. Two kinds of decision are read:

CB (``--cb_explore_adf``)::

    {"_label_cost": -1, "_label_probability": 0.8, "_label_Action": 2, "_labelIndex": 1,
     "Timestamp": "2019-08-13T20:40:28.788Z", "EventId": "13c3...", "a": [2, 1, 3], "p": [0.8, 0.1, 0.1],
     "c": {"User": {...}, "_multi": [{...}, {...}, {...}]}, "o": [...]}

- ``c._multi`` lists the candidate actions (their features); everything else in ``c`` is the shared
  context (keys starting with ``_`` are metadata, not features).
- ``a`` lists 1-based action ids in ranking order (``a[0]`` is the chosen one) and ``p`` their
  probabilities in the same order, so the logging pmf over ``_multi`` is pmf[a[j] - 1] = p[j].
- ``_labelIndex`` is the chosen action's 0-based index (``_label_Action`` = ``_labelIndex`` + 1),
  ``_label_probability`` its probability, ``_label_cost`` its cost: reward = -cost (VW minimizes cost).

CCB (``--ccb_explore_adf``)::

    {"c": {..., "_multi": [...], "_slots": [{...}, ...]},
     "_outcomes": [{"_id": "...", "_label_cost": 0, "_a": [0, 1, 2, 3], "_p": [0.25, ...]}, ...]}

- one ``_outcomes`` entry per slot: ``_a`` the 0-based indices into ``_multi`` of the actions that were
  available at the slot, chosen first; ``_p`` their probabilities; ``_label_cost`` the slot's cost.

Lines without a decision (outcome-only "dangling reward" lines, blank lines) are counted as skipped.
Bad decisions (missing probability, probability outside (0, 1], chosen index outside ``_multi``, missing
cost, pmf that does not sum to 1) are excluded and reported with their line numbers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from simulators.errors import LogReadError
from simulators.readers.bad_rows import (
    BAD_DISTRIBUTION,
    MALFORMED,
    MISSING_PROPENSITY,
    MISSING_REWARD,
    UNKNOWN_ACTION,
    BadRowCollector,
    LoadedLog,
)
from simulators.readers.common import ParsedDecision, ParsedSlot, build_bandit, check_slot
from simulators.readers.features import flatten_features

FORMAT = "dsjson"


def _get(obj: Mapping[str, Any], *names: str) -> Any:
    """First present key among ``names``, case-insensitively (VW accepts ``_label_cost`` and ``_label_Cost``)."""
    lowered = {k.lower(): v for k, v in obj.items()}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        return None
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.tz_convert("UTC").to_pydatetime().astimezone(UTC)


def _item_key(features: Mapping[str, Any]) -> tuple[str, str]:
    """(key, display name) of an action: identical features are the same item."""
    flat = flatten_features(features)
    key = json.dumps(flat, sort_keys=True)
    tag = features.get("_tag") if isinstance(features, Mapping) else None
    return key, str(tag) if tag is not None else (key if len(key) <= 60 else key[:57] + "...")


def _cb_slot(event: Mapping[str, Any], n: int) -> ParsedSlot | tuple[str, str]:
    ids, probs = event.get("a"), event.get("p")
    index = _get(event, "_labelIndex")
    pscore = _number(_get(event, "_label_probability"))
    cost = _number(_get(event, "_label_cost"))
    if not isinstance(ids, list) or not isinstance(probs, list) or len(ids) != len(probs):
        return BAD_DISTRIBUTION, "'a' and 'p' must be lists of equal length"
    if ids and isinstance(ids[0], int):
        if index is None:
            index = ids[0] - 1
        elif index != ids[0] - 1:
            return BAD_DISTRIBUTION, f"_labelIndex {index} disagrees with the first action id a[0] = {ids[0]}"
    if pscore is None and _get(event, "_label_probability") is None:
        return MISSING_PROPENSITY, "no _label_probability"
    dist = [0.0] * n
    for action_id, p in zip(ids, probs, strict=True):
        if not isinstance(action_id, int) or isinstance(action_id, bool) or not 1 <= action_id <= n:
            return UNKNOWN_ACTION, f"action id {action_id!r} in 'a' is not one of the {n} actions (1-based)"
        if _number(p) is None:
            return MISSING_PROPENSITY, f"probability {p!r} of action {action_id} is not a number"
        dist[action_id - 1] = float(p)
    problem = check_slot(index, pscore if pscore is not None else math.nan, dist, n)
    if problem:
        return problem
    if cost is None:
        return MISSING_REWARD, "no _label_cost"
    available = tuple(True for _ in range(n))
    return ParsedSlot(int(index), float(pscore), tuple(dist), available, -cost)  # type: ignore[arg-type]


def _ccb_slots(event: Mapping[str, Any], n: int) -> list[ParsedSlot] | tuple[str, str]:
    outcomes = event.get("_outcomes")
    if not isinstance(outcomes, list) or not outcomes:
        return MISSING_REWARD, "no _outcomes"
    slots = []
    for s, outcome in enumerate(outcomes):
        if not isinstance(outcome, Mapping):
            return MALFORMED, f"slot {s}: outcome is not an object"
        actions, probs = outcome.get("_a"), outcome.get("_p")
        if not isinstance(actions, list) or not actions:
            return MISSING_PROPENSITY if actions is None else BAD_DISTRIBUTION, f"slot {s}: no _a list"
        if not isinstance(probs, list) or not probs:
            return MISSING_PROPENSITY, f"slot {s}: no _p list"
        if len(actions) != len(probs):
            return BAD_DISTRIBUTION, f"slot {s}: {len(actions)} actions with {len(probs)} probabilities"
        dist = [0.0] * n
        available = [False] * n
        for action, p in zip(actions, probs, strict=True):
            if not isinstance(action, int) or isinstance(action, bool) or not 0 <= action < n:
                return UNKNOWN_ACTION, f"slot {s}: action {action!r} is not one of the {n} actions"
            if _number(p) is None:
                return MISSING_PROPENSITY, f"slot {s}: probability {p!r} of action {action} is not a number"
            dist[action] = float(p)
            available[action] = True
        problem = check_slot(actions[0], _number(probs[0]), dist, n)
        if problem:
            return problem[0], f"slot {s}: {problem[1]}"
        cost = _number(_get(outcome, "_label_cost"))
        if cost is None:
            return MISSING_REWARD, f"slot {s}: no _label_cost"
        slots.append(ParsedSlot(actions[0], float(probs[0]), tuple(dist), tuple(available), -cost))
    return slots


def _parse_event(event: Mapping[str, Any], items: dict[str, dict[str, float]], names: dict[str, str]):
    context = event.get("c")
    if not isinstance(context, Mapping):
        return MALFORMED, "no context object 'c'"
    multi = context.get("_multi")
    if not isinstance(multi, list) or not multi or not all(isinstance(m, Mapping) for m in multi):
        return MALFORMED, "no action list c._multi"
    n = len(multi)
    if "_outcomes" in event or "_slots" in context:
        slots = _ccb_slots(event, n)
    else:
        slot = _cb_slot(event, n)
        slots = slot if isinstance(slot, tuple) else [slot]
    if isinstance(slots, tuple):
        return slots
    keys = []
    for features in multi:
        key, name = _item_key(features)
        if key not in items:
            items[key] = flatten_features(features)
            names[key] = name
        keys.append(key)
    if len(set(keys)) != len(keys):
        # Two actions with identical features: keep them apart so the candidate axis stays one-to-one.
        keys = [f"{key}#{j}" if keys.count(key) > 1 else key for j, key in enumerate(keys)]
        for j, key in enumerate(keys):
            if key not in items:
                items[key] = flatten_features(multi[j])
                names[key] = f"{_item_key(multi[j])[1]}#{j}"
    shared = {k: v for k, v in context.items() if k not in ("_multi", "_slots")}
    event_id = _get(event, "EventId")
    return ParsedDecision(
        event_id=str(event_id) if event_id is not None else "",
        timestamp=_timestamp(_get(event, "Timestamp")),
        context=flatten_features(shared),
        item_keys=tuple(keys),
        slots=tuple(slots),
    )


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".json", ".jsonl", ".dsjson"))
        if not files:
            raise LogReadError(f"{path}: no .json/.jsonl/.dsjson files")
        return files
    if not path.exists():
        raise LogReadError(f"DSJSON log {path} does not exist")
    return [path]


def read_dsjson(path: str | Path, *, strict: bool = False) -> LoadedLog:
    """Read a DSJSON file (or a directory of them) into a ``LoadedLog``. See the module docstring."""
    path = Path(path)
    bad = BadRowCollector()
    items: dict[str, dict[str, float]] = {}
    names: dict[str, str] = {}
    decisions: list[ParsedDecision] = []
    read = skipped = 0
    for file in _files(path):
        with file.open(encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                location = f"{file.name} line {line_no}"
                try:
                    event = json.loads(line)
                except json.JSONDecodeError as exc:
                    read += 1
                    bad.add(location, MALFORMED, f"not JSON: {exc.msg}")
                    continue
                if not isinstance(event, Mapping) or ("c" not in event and "_outcomes" not in event):
                    skipped += 1  # an outcome-only or service line, not a decision
                    continue
                if event.get("_skipLearn") is True:
                    skipped += 1  # an inactive event: the application never showed it, so no reward
                    continue
                read += 1
                parsed = _parse_event(event, items, names)
                if isinstance(parsed, tuple):
                    bad.add(location, parsed[0], parsed[1])
                    continue
                if not parsed.event_id:
                    parsed = ParsedDecision(location, parsed.timestamp, parsed.context, parsed.item_keys, parsed.slots)
                decisions.append(parsed)
    notes = (f"skipped {skipped} lines that carry no decision or an inactive one (_skipLearn)",) if skipped else ()
    report = bad.report(str(path), FORMAT, read, len(decisions), strict=strict, notes=notes)
    if any(d.timestamp is None for d in decisions):
        decisions = [ParsedDecision(d.event_id, None, d.context, d.item_keys, d.slots) for d in decisions]
    bandit = build_bandit(decisions, items, names, source=f"{FORMAT}:{path}")
    return LoadedLog(bandit=bandit, report=report)
